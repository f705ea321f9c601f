"""Patching a TransformerBridge (the hf model source): a Bridge of each architecture the fast path knows
(GPT-2, GPT-NeoX, Llama, Gemma 3, Qwen2, Qwen3, Mistral: its blocks run from the patched layer,
models/bridge_blocks.py, also after a cache of the earlier positions) gives the generic path's numbers, a GPT-2 Bridge a HookedTransformer's, and any other architecture falls back."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.patching.engine import hook_names_for, prepare, run_grid  # noqa: E402
from interp_pipeline.patching.grids import ALL_NAMES, key_value_heads  # noqa: E402
from interp_pipeline.patching.forward import supports_fast_path  # noqa: E402
from tests.support.models import random_pairs  # noqa: E402
from tests.support.tiny_bridges import ARCHITECTURES, WINDOWED_ROTARY, save_tiny  # noqa: E402
from tests.support.tiny_gpt2 import VOCAB, save_tiny_gpt2  # noqa: E402


def _hooked_transformer_of(directory):
    """A HookedTransformer with the same weights, by TransformerLens's own loading path."""
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer
    from transformers import AutoModelForCausalLM

    cfg = loading.get_pretrained_model_config(str(directory), fold_ln=True, device="cpu", dtype=torch.float32)
    model = HookedTransformer(cfg, move_to_device=False)
    hf_model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()
    model.load_and_process_state_dict(
        loading.get_pretrained_state_dict(str(directory), cfg, hf_model),
        fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True,
    )
    model.eval()
    return model


@pytest.fixture(scope="module")
def tiny_directory(tmp_path_factory):
    return save_tiny_gpt2(tmp_path_factory.mktemp("bridge") / "tiny_gpt2")


@pytest.fixture(scope="module", params=ARCHITECTURES + WINDOWED_ROTARY)
def checkpoint(request, tmp_path_factory):
    """(architecture, directory) of each tiny checkpoint the fast path knows."""
    return request.param, save_tiny(request.param, tmp_path_factory.mktemp("bridge") / request.param)


def _bridge(directory, monkeypatch, **kwargs):
    from interp_pipeline.models import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub.load_hugging_face(str(directory), revision=None, device="cpu", dtype="float32", **kwargs)


# Compatibility mode (folded, centred weights) or the HF weights. Qwen and Mistral process their weights as
# Llama does (what differs is their masks), so they run on the HF weights only: CI time, not coverage.
@pytest.mark.parametrize(("checkpoint", "processed"),
                         [(a, p) for a in ARCHITECTURES for p in (True, False)] + [(a, False) for a in WINDOWED_ROTARY],
                         indirect=["checkpoint"])
def test_the_bridge_fast_path_equals_its_generic_path_on_every_grid(checkpoint, monkeypatch, processed):
    from interp_pipeline.patching import path as path_patching

    bridge = _bridge(checkpoint[1], monkeypatch, compatibility_mode=processed)
    assert supports_fast_path(bridge)
    pairs = random_pairs(3, 8, d_vocab=VOCAB)
    # A parallel block (GPT-NeoX) has no stream between its attention and its MLP.
    names = [name for name in ALL_NAMES if not (name == "resid_mid" and bridge.cfg.parallel_attn_mlp)]
    hooks = hook_names_for(names, 2) | path_patching.hook_names(2)
    setups = {fast: prepare(bridge, pairs, "logit_diff", normalize=False, batch_size_prompts=7, hook_names=hooks,
                            corrupted_hook_names=path_patching.hook_names(2), fast=fast) for fast in (True, False)}
    assert setups[True].forward.fast and not setups[False].forward.fast
    for name in names:
        fast = run_grid(name, setups[True])
        assert fast.abs().max() > 1e-3, name  # the patches change the metric
        torch.testing.assert_close(fast, run_grid(name, setups[False]), atol=1e-5, rtol=0, msg=name)
    # Path patching runs through the same forward (senders frozen from their layer on, receivers from theirs);
    # key and value receivers by key/value head (Llama's 4 query heads share 2, Gemma 3's share 1): the last one.
    last = key_value_heads(bridge.cfg) - 1
    for receivers in (path_patching.Receivers(None), path_patching.Receivers(((1, 0), (1, 3)), "q"),
                      path_patching.Receivers(((1, 0),), "k"), path_patching.Receivers(((1, last),), "v")):
        torch.testing.assert_close(path_patching.path_patch(receivers, setups[True]),
                                   path_patching.path_patch(receivers, setups[False]), atol=1e-5, rtol=0,
                                   msg=receivers.label)


def test_key_value_receivers_on_a_bridge_equal_a_hook_loop(checkpoint, monkeypatch):
    """A k/v receiver names a head of hook_k/hook_v: on Llama and Gemma 3 a key/value head shared by a group
    of query heads (n_key_value_heads of them, as on a HookedTransformer); receivers beyond are refused."""
    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.patching import path as path_patching
    from tests.support.path_reference import path_patch_by_hand

    bridge = _bridge(checkpoint[1], monkeypatch)
    n_kv = key_value_heads(bridge.cfg)
    assert n_kv == {"gpt2": 4, "neox": 4, "gemma3": 1}.get(checkpoint[0], 2)
    pairs = random_pairs(3, 8, d_vocab=VOCAB)
    frozen = path_patching.hook_names(2)
    setup = prepare(bridge, pairs, "logit_diff", normalize=False, batch_size_prompts=8, hook_names=frozen,
                    corrupted_hook_names=frozen)
    assert setup.forward.fast
    for receiver_input in ("k", "v"):
        entry = {"receivers": [[1, n_kv - 1]], "input": receiver_input}
        receivers = path_patching.parse_receivers(entry, bridge.cfg, "path[0]")
        torch.testing.assert_close(path_patching.path_patch(receivers, setup),
                                   path_patch_by_hand(bridge, pairs, [(1, n_kv - 1)], receiver_input),
                                   atol=1e-5, rtol=0, msg=receiver_input)
        with pytest.raises(ConfigError, match=rf"^path\[0\]\.receivers\[0\]: expected \[layer, head\] with layer < 2 "
                                              rf"and head < {n_kv}"):
            path_patching.parse_receivers({**entry, "receivers": [[1, n_kv]]}, bridge.cfg, "path[0]")


def test_resid_mid_on_parallel_blocks_is_refused(checkpoint, monkeypatch):
    """GPT-NeoX's blocks are parallel (attention and MLP both read resid_pre): no hook_resid_mid on the Bridge,
    so the grids that patch it are refused with the key named; every other architecture has one."""
    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.patching.grids import check_model_supports

    bridge = _bridge(checkpoint[1], monkeypatch)
    assert ("blocks.0.hook_resid_mid" in bridge.hook_dict) != (checkpoint[0] == "neox")
    check_model_supports(["resid_pre", "block_every", "mlp_out"], bridge.cfg, key="grids")
    if checkpoint[0] == "neox":
        with pytest.raises(ConfigError, match=r"^grids\[1\]: 'resid_mid' patches resid_mid, and this model's blocks "
                                              r"are parallel"):
            check_model_supports(["resid_pre", "resid_mid"], bridge.cfg, key="grids")
    else:
        check_model_supports(["resid_mid"], bridge.cfg, key="grids")


@pytest.mark.filterwarnings(r"ignore:hooks\(\). filter matched gated-off hook name")  # the use_* flags are off
def test_a_run_from_block_0_fires_every_hook_a_full_run_fires_after_the_embedding(checkpoint, monkeypatch):
    """The blocks, the final norm, the unembedding and the rotary embedding's own hooks (hook_cos, hook_sin)
    fire as often and with the same values as in a full run: models/bridge_blocks.py calls the same modules."""
    from collections import defaultdict

    from interp_pipeline.models import bridge_blocks

    bridge = _bridge(checkpoint[1], monkeypatch)
    tokens = random_pairs(2, 8, d_vocab=VOCAB)["clean"]

    def fired(run):
        seen = defaultdict(list)

        def record(activation, hook):
            seen[hook.name].append(activation.clone())
            return activation

        with torch.inference_mode(), bridge.hooks(fwd_hooks=[(lambda name: True, record)]):
            run()
        return seen

    full = fired(lambda: bridge(tokens))
    start = full["blocks.0.hook_in"][0]
    fast = fired(lambda: bridge_blocks.unembed(bridge, bridge_blocks.run_blocks(bridge, 0, start)))
    assert {name.split(".")[0] for name in set(full) - set(fast)} <= {"embed", "hook_embed", "pos_embed", "hook_pos_embed"}
    assert {"ln_final.hook_out", "hook_unembed", "blocks.1.hook_out"} <= set(fast)  # a hook's own name
    if checkpoint[0] != "gpt2":
        assert {"rotary_emb.hook_cos", "rotary_emb.hook_sin"} <= set(fast)
    for name, values in fast.items():
        assert len(values) == len(full[name]), name
        for value, expected in zip(values, full[name]):
            torch.testing.assert_close(value, expected, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("layer", [0, 1])
def test_blocks_after_a_cached_prefix_give_a_full_runs_logits(checkpoint, monkeypatch, layer):
    """A full run of the first positions, given ``recording_kwargs``, fills an HF cache (every layer);
    blocks ``layer``.. on the later positions' stream, after that cache, give the full run's logits at
    those positions and append their own keys (rotary angles, masks and the 3-token windows of Gemma 3,
    Qwen and Mistral all count from the cache's length: the prompt is three windows long)."""
    from transformers import DynamicCache

    from interp_pipeline.models import bridge_blocks

    bridge = _bridge(checkpoint[1], monkeypatch)
    assert bridge_blocks.can_follow_a_prefix(bridge)
    tokens, split = random_pairs(2, 9, d_vocab=VOCAB)["clean"], 4
    with torch.inference_mode():
        logits, cache = bridge.run_with_cache(tokens, names_filter=f"blocks.{layer}.hook_resid_pre")
        past = DynamicCache()
        bridge(tokens[:, :split], **bridge_blocks.recording_kwargs(bridge, past))
        assert [entry.keys.shape[2] for entry in past.layers] == [split] * bridge.cfg.n_layers
        resid = bridge_blocks.run_blocks(bridge, layer, cache[f"blocks.{layer}.hook_resid_pre"][:, split:], past)
        torch.testing.assert_close(bridge_blocks.unembed(bridge, resid), logits[:, split:], atol=1e-5, rtol=0)
    assert [entry.keys.shape[2] for entry in past.layers[layer:]] == [9] * (bridge.cfg.n_layers - layer)


def test_another_architecture_falls_back_and_says_so_once(tiny_directory, monkeypatch, caplog):
    from interp_pipeline.models import bridge_blocks

    bridge = _bridge(tiny_directory, monkeypatch)
    monkeypatch.setattr(bridge_blocks, "_WARNED", set())
    monkeypatch.setattr(bridge_blocks, "_SAID_FAST", set())
    with caplog.at_level("INFO", logger=bridge_blocks.__name__):
        assert supports_fast_path(bridge) and supports_fast_path(bridge)
        monkeypatch.setattr(bridge.cfg, "architecture", "NotGPT2ForCausalLM")  # what the fast path keys on
        assert not supports_fast_path(bridge) and not supports_fast_path(bridge)
        pairs = random_pairs(2, 6, d_vocab=VOCAB)
        setup = prepare(bridge, pairs, "logit_diff", normalize=True, batch_size_prompts=8,
                        hook_names=hook_names_for(["resid_pre"], 2))
        with pytest.raises(ValueError, match="fast=True, but this TransformerBridge has no fast path"):
            prepare(bridge, pairs, "logit_diff", normalize=True, batch_size_prompts=8,
                    hook_names=hook_names_for(["resid_pre"], 2), fast=True)
    assert not setup.forward.fast
    warnings = [r for r in caplog.records if "NotGPT2ForCausalLM" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING" and "no fast path" in warnings[0].getMessage()
    # The architecture it knows says so once too (the GPT-2 rehearsal's log is checked for this line).
    assert [r.getMessage() for r in caplog.records if "GPT2LMHeadModel:" in r.getMessage()] == [
        "TransformerBridge of architecture GPT2LMHeadModel: fast path (its blocks run from the patched layer)"]


@pytest.mark.hooked_transformer
def test_a_bridge_agrees_with_a_hooked_transformer(tiny_directory, monkeypatch):
    directory = tiny_directory
    bridge = _bridge(directory, monkeypatch)
    reference = _hooked_transformer_of(directory)
    assert supports_fast_path(bridge) and supports_fast_path(reference)

    pairs = random_pairs(3, 8, d_vocab=VOCAB)
    names = ["resid_pre", "head_out", "head_v_by_pos", "mlp_out"]
    hooks = hook_names_for(names, 2)
    generic = prepare(bridge, pairs, "logit_diff", normalize=True, batch_size_prompts=8, hook_names=hooks)
    fast = prepare(reference, pairs, "logit_diff", normalize=True, batch_size_prompts=8, hook_names=hooks)
    assert generic.metric.clean_value == pytest.approx(fast.metric.clean_value, abs=1e-4)
    for name in names:
        torch.testing.assert_close(run_grid(name, generic), run_grid(name, fast), atol=1e-4, rtol=0, msg=name)

    # Attribution patching takes the same hooks and gradients through the bridge.
    from interp_pipeline.patching.attribution import attribution_grid, prepare_attribution

    through_bridge = prepare_attribution(bridge, pairs, generic.metric, ["head_out", "resid_pre"], batch_size_prompts=8)
    direct = prepare_attribution(reference, pairs, fast.metric, ["head_out", "resid_pre"], batch_size_prompts=8)
    for name in ("head_out", "resid_pre"):
        torch.testing.assert_close(attribution_grid(name, through_bridge), attribution_grid(name, direct),
                                   atol=1e-4, rtol=0, msg=name)

    # Path patching too (hooks on the bridge may report their own names; the engine does not rely on them).
    from interp_pipeline.patching import path as path_patching

    frozen = path_patching.hook_names(2)
    generic = prepare(bridge, pairs, "logit_diff", normalize=True, batch_size_prompts=8, hook_names=frozen,
                      corrupted_hook_names=frozen)
    fast = prepare(reference, pairs, "logit_diff", normalize=True, batch_size_prompts=8, hook_names=frozen,
                   corrupted_hook_names=frozen)
    for receivers in (path_patching.Receivers(None), path_patching.Receivers(((1, 0), (1, 3)), "k")):
        torch.testing.assert_close(path_patching.path_patch(receivers, generic), path_patching.path_patch(receivers, fast),
                                   atol=1e-4, rtol=0, msg=receivers.label)


@pytest.mark.hooked_transformer
def test_key_value_receivers_mean_the_same_head_on_a_bridge_and_a_hooked_transformer(tmp_path_factory, monkeypatch):
    """A Llama Bridge and the HookedTransformer TransformerLens loads from the same weights both hold
    n_key_value_heads heads in hook_k / hook_v, so a k receiver is the same key/value head on both."""
    from interp_pipeline.patching import path as path_patching

    # Not "llama" in the path: TransformerLens 3.9 takes such a name for Meta's and never reads its config.json.
    directory = save_tiny("llama", tmp_path_factory.mktemp("bridge") / "grouped_query")
    bridge, reference = _bridge(directory, monkeypatch), _hooked_transformer_of(directory)
    assert key_value_heads(bridge.cfg) == key_value_heads(reference.cfg) == 2
    pairs = random_pairs(3, 8, d_vocab=VOCAB)
    frozen = path_patching.hook_names(2)
    results = [path_patching.path_patch(path_patching.Receivers(((1, 1),), "k"), prepare(
        model, pairs, "logit_diff", normalize=False, batch_size_prompts=8, hook_names=frozen,
        corrupted_hook_names=frozen)) for model in (bridge, reference)]
    assert (results[0][0] - results[0][1, 0]).abs().max() > 1e-3  # senders of layer 0 move it
    torch.testing.assert_close(results[0], results[1], atol=1e-5, rtol=0)
