"""Gemma Scope 2's transcoders on Gemma 3 (conf/attribution_setup/gemma3_270m.yaml): the hooks they read
and write, on a tiny random Gemma-3-shaped model saved with save_pretrained and loaded offline as a
TransformerBridge without compatibility mode (as the config loads google/gemma-3-270m).

SAELens's gemma_3 loader names their input ``blocks.L.hook_mlp_in`` but reads HF's
``pre_feedforward_layernorm`` output (after the norm and its weight); the config maps it to the Bridge's
``blocks.L.ln2.hook_out``. These tests hold the mapping to HF's own modules."""

from __future__ import annotations

import pytest
import torch

from tests.support.transcoders import direct_effects_of, random_transcoders

HOOK_IN, HOOK_OUT = "blocks.{layer}.ln2.hook_out", "blocks.{layer}.hook_mlp_out"  # as the config sets them


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """(the HF model, the Bridge of its saved copy): 2 layers, one local and one global, d_model 64,
    norms' weights random so that reading before or after them differs."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from interp_pipeline.models import hub

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                              sliding_window=4, layer_types=["sliding_attention", "full_attention"])
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("tiny_gemma3")
    model.save_pretrained(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        bridge = hub.load_hugging_face(str(folder), revision=None, device="cpu", dtype="float32",
                                       compatibility_mode=False)
    return model, bridge


def test_the_mapped_hooks_are_what_gemma_scope_2_reads_and_writes(gemma):
    """ln2.hook_out is HF's pre_feedforward_layernorm output (the MLP's input), hook_mlp_out its
    post_feedforward_layernorm output; the residual before the norm (HookedTransformer's hook_mlp_in) is not."""
    model, bridge = gemma
    tokens = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(2))
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for layer, block in enumerate(model.model.layers):
        handles.append(block.mlp.register_forward_pre_hook(
            lambda module, args, layer=layer: seen.__setitem__(f"in{layer}", args[0])))
        handles.append(block.post_feedforward_layernorm.register_forward_hook(
            lambda module, args, out, layer=layer: seen.__setitem__(f"out{layer}", out)))
    with torch.no_grad():
        reference = model(tokens).logits
    for handle in handles:
        handle.remove()
    logits, cache = bridge.run_with_cache(tokens)
    assert torch.allclose(logits, reference, atol=1e-4)
    for layer in range(2):
        assert torch.allclose(cache[HOOK_IN.format(layer=layer)], seen[f"in{layer}"], atol=1e-5)
        assert torch.allclose(cache[HOOK_OUT.format(layer=layer)], seen[f"out{layer}"], atol=1e-5)
        # what HookedTransformer calls hook_mlp_in (the residual before ln2) is not it
        assert not torch.allclose(cache[f"blocks.{layer}.ln2.hook_in"], seen[f"in{layer}"], atol=1e-2)


def test_the_replacement_model_is_exact_on_gemma3(gemma):
    """With the mapped hooks, the frozen replacement model (local and global attention, q/k norms, the
    norms after attention and MLP all frozen) reproduces the Bridge's logits."""
    from interp_pipeline.transcoders.replacement import replacement_logits, run_prompt

    _, bridge = gemma
    transcoders = random_transcoders(bridge, 32, skip=True, seed=1, scale=0.05, bias=-0.05,
                                     hook_in=HOOK_IN, hook_out=HOOK_OUT)
    tokens = torch.tensor([2, 5, 9, 3, 12, 7, 4, 30])
    run = run_prompt(bridge, transcoders, tokens)
    logits, _ = replacement_logits(bridge, transcoders, run)
    assert torch.allclose(logits, run.logits, atol=1e-5)
    assert run.errors[:, 1:].abs().max() > 1e-3


def test_edges_are_direct_effects_on_gemma3(gemma):
    """Frozen patterns and every norm's scale leave the model linear in the features: each edge into a
    feature equals the change of its pre-activation when the source moves (direct paths only)."""
    from interp_pipeline.transcoders.attribution import attribute
    from interp_pipeline.transcoders.replacement import replacement_logits, run_prompt

    _, bridge = gemma
    transcoders = random_transcoders(bridge, 32, seed=4, scale=0.05, bias=-0.05, hook_in=HOOK_IN, hook_out=HOOK_OUT)
    tokens = torch.tensor([2, 5, 9, 3, 12, 7, 4, 30])
    graph = attribute(bridge, transcoders, tokens, batch_size=8)
    run = run_prompt(bridge, transcoders, tokens)
    _, base = replacement_logits(bridge, transcoders, run, direct_only=True)
    checked = 0
    for source in range(0, graph.n_features, max(1, graph.n_features // 5)):
        _, measured = direct_effects_of(bridge, transcoders, run, graph, source, base)
        assert torch.allclose(measured, graph.adjacency[:graph.n_features, source], atol=1e-5, rtol=0)
        checked += int((measured.abs() > 1e-3).sum())
    assert checked > 5


def test_token_edges_use_the_scaled_embeddings(gemma):
    """Gemma scales its embeddings by sqrt(d_model) before hook_embed: an edge from a token into a feature
    is the feature's pre-activation change when that token's embedding is removed (direct paths only)."""
    from interp_pipeline.transcoders.attribution import attribute

    _, bridge = gemma
    transcoders = random_transcoders(bridge, 32, seed=5, scale=0.05, bias=-0.05, hook_in=HOOK_IN, hook_out=HOOK_OUT)
    tokens = torch.tensor([2, 5, 9, 3, 12, 7])
    graph = attribute(bridge, transcoders, tokens, batch_size=8)
    layer0 = (graph.active_features[:, 0] == 0).nonzero()[:, 0]
    assert len(layer0) > 0
    _, cache = bridge.run_with_cache(tokens[None], names_filter=lambda name: name == "hook_embed")
    assert not torch.allclose(cache["hook_embed"][0], bridge.W_E[tokens])  # the scale is there
    # Into layer 0 only attention (patterns and scales frozen: linear) lies between embeddings and features,
    # so each feature's pre-activation is the sum of its edges from the tokens plus the part from biases.
    _, cache = bridge.run_with_cache(tokens[None])
    hooks = [(name, lambda a, hook: cache[hook.name]) for name in bridge.hook_dict
             if name.endswith(("hook_scale", "attn.hook_pattern"))]
    with bridge.hooks(fwd_hooks=hooks + [("hook_embed", lambda a, hook: a * 0)]):
        _, without = bridge.run_with_cache(tokens[None], names_filter=lambda name: name == HOOK_IN.format(layer=0))
    tokens_slice = graph.slices()["tokens"]
    for row in layer0.tolist():
        _, pos, feature = graph.active_features[row].tolist()
        w = transcoders[0].W_enc[:, feature]
        moved = float((cache[HOOK_IN.format(layer=0)][0, pos] - without[HOOK_IN.format(layer=0)][0, pos]) @ w)
        assert moved == pytest.approx(float(graph.adjacency[row, tokens_slice].sum()), rel=1e-3, abs=1e-4)
