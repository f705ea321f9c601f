"""Path patching against a hand calculation, and attribution patching where it is exact."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.patching import path as path_patching  # noqa: E402
from interp_pipeline.patching.attribution import attribution_grid, prepare_attribution  # noqa: E402
from interp_pipeline.patching.engine import hook_names_for, prepare, run_grid  # noqa: E402
from tests.support.models import random_pairs, tiny_model  # noqa: E402
from tests.support.path_reference import path_patch_by_hand  # noqa: E402


def _path_setup(model, pairs, batch_size_prompts=64):
    names = path_patching.hook_names(model.cfg.n_layers)
    return prepare(model, pairs, "logit_diff", normalize=False, batch_size_prompts=batch_size_prompts, hook_names=names,
                   corrupted_hook_names=names)


def _logit_diff_change(delta_resid_end, model, pairs):
    """How much an END residual-stream change moves the logit difference (no final LayerNorm)."""
    direction = model.W_U[:, pairs["answer"]] - model.W_U[:, pairs["wrong"]]  # [d_model, batch]
    return (delta_resid_end * direction.T).sum(-1)


@pytest.mark.parametrize("batch_size_prompts", [64, 5])
def test_path_to_final_is_the_senders_direct_effect(batch_size_prompts):
    # Attention-only, no LayerNorm, every other head frozen: the final residual stream
    # changes by exactly the sender's output difference, so the logit difference
    # changes by that vector dotted with the unembedding direction.
    model = tiny_model(n_layers=2, n_heads=3, attn_only=True, normalization_type=None)
    pairs = random_pairs(4, 7)
    setup = _path_setup(model, pairs, batch_size_prompts)
    result = path_patching.path_patch(path_patching.Receivers(None), setup)

    _, clean = model.run_with_cache(pairs["clean"])
    corrupted_logits, corrupted = model.run_with_cache(pairs["corrupted"])
    rows = torch.arange(4)
    end = pairs["end"]
    base = corrupted_logits[rows, end, pairs["answer"]] - corrupted_logits[rows, end, pairs["wrong"]]
    for layer in range(2):
        for head in range(3):
            name = f"blocks.{layer}.attn.hook_z"
            delta_z = (clean[name] - corrupted[name])[rows, end, head]  # [batch, d_head]
            delta_resid = delta_z @ model.W_O[layer, head]
            expected = (base + _logit_diff_change(delta_resid, model, pairs)).mean()
            assert result[layer, head].item() == pytest.approx(expected.item(), abs=1e-4)


def test_path_to_value_input_goes_through_the_receiver_only():
    model = tiny_model(n_layers=2, n_heads=3, attn_only=True, normalization_type=None)
    pairs = random_pairs(3, 6)
    setup = _path_setup(model, pairs)
    receiver = (1, 2)
    result = path_patching.path_patch(path_patching.Receivers(((1, 2),), "v"), setup)

    _, clean = model.run_with_cache(pairs["clean"])
    _, corrupted = model.run_with_cache(pairs["corrupted"])
    rows = torch.arange(3)
    end = pairs["end"]
    corrupted_value = setup.metric.corrupted_value
    for head in range(3):
        name = "blocks.0.attn.hook_z"
        delta_resid = torch.einsum("bpd,dm->bpm", (clean[name] - corrupted[name])[:, :, head], model.W_O[0, head])
        # The receiver's values move by delta_resid @ W_V; its pattern is the corrupted one.
        delta_v = delta_resid @ model.W_V[1, receiver[1]]
        pattern = corrupted["blocks.1.attn.hook_pattern"][:, receiver[1]]  # [batch, dest, src]
        delta_z_end = torch.einsum("bs,bsd->bd", pattern[rows, end], delta_v)
        delta_end = delta_z_end @ model.W_O[1, receiver[1]]
        expected = corrupted_value + _logit_diff_change(delta_end, model, pairs).mean().item()
        assert result[0, head].item() == pytest.approx(expected, abs=1e-4)
    # Senders in the receiver's layer or later have no path to it: the corrupted value.
    torch.testing.assert_close(result[1], torch.full((3,), corrupted_value), atol=1e-6, rtol=0)


def _path_setups(model, pairs):
    """The setup of the engine the model takes (fast from the patched layer where it has a fast path) and
    the generic engine's (full runs)."""
    names = path_patching.hook_names(model.cfg.n_layers)
    return [prepare(model, pairs, "logit_diff", normalize=False, batch_size_prompts=64, hook_names=names,
                    corrupted_hook_names=names, fast=fast) for fast in (None, False)]


@pytest.mark.parametrize("receiver_input", ["k", "v"])
def test_key_and_value_receivers_on_grouped_query_attention_are_key_value_heads(receiver_input):
    # Four query heads share two key/value heads: hook_k and hook_v hold two heads, and a receiver
    # names one of them (key/value head 1 is query heads 2 and 3's). A hook loop agrees, on both engines.
    model = tiny_model(n_layers=2, n_heads=4, n_key_value_heads=2)
    pairs = random_pairs(3, 7)
    receivers = path_patching.parse_receivers({"receivers": [[1, 1]], "input": receiver_input}, model.cfg, "path[0]")
    expected = path_patch_by_hand(model, pairs, [(1, 1)], receiver_input)
    assert (expected[0] - expected[1, 0]).abs().max() > 1e-3  # senders of layer 0 move it
    for setup in _path_setups(model, pairs):
        torch.testing.assert_close(path_patching.path_patch(receivers, setup), expected, atol=1e-5, rtol=0)
    # Query head 3 is no key/value head: one line naming the entry, before anything runs.
    with pytest.raises(ConfigError, match=r"^path\[0\]\.receivers\[0\]: expected \[layer, head\] with layer < 2 and "
                                          r"head < 2 \(a key/value head: this model has n_key_value_heads=2\), "
                                          r"found \[1, 3\]$"):
        path_patching.parse_receivers({"receivers": [[1, 3]], "input": receiver_input}, model.cfg, "path[0]")
    assert path_patching.parse_receivers({"receivers": [[1, 3]], "input": "q"}, model.cfg, "path[0]").heads == ((1, 3),)


@pytest.mark.hooked_transformer  # ungroup_grouped_query_attention is a HookedTransformer's (TransformerLens 4 has none)
def test_ungrouped_key_value_hooks_are_indexed_by_query_head():
    # With ungroup_grouped_query_attention each query head has its own copy of its group's keys, and
    # the hooks hold n_heads heads: receivers, grids and attribution index those copies. Patching both
    # copies of key/value head 1 is patching that head on the grouped model (same weights).
    grouped = tiny_model(n_layers=2, n_heads=4, n_key_value_heads=2)
    ungrouped = tiny_model(n_layers=2, n_heads=4, n_key_value_heads=2, ungroup_grouped_query_attention=True)
    pairs = random_pairs(3, 7)
    copies = path_patching.parse_receivers({"receivers": [[1, 2], [1, 3]], "input": "k"}, ungrouped.cfg, "path[0]")
    setup = _path_setups(ungrouped, pairs)[0]
    torch.testing.assert_close(path_patching.path_patch(copies, setup),
                               path_patch_by_hand(grouped, pairs, [(1, 1)], "k"), atol=1e-5, rtol=0)
    one_copy = path_patching.Receivers(((1, 3),), "k")
    torch.testing.assert_close(path_patching.path_patch(one_copy, setup),
                               path_patch_by_hand(ungrouped, pairs, [(1, 3)], "k"), atol=1e-5, rtol=0)
    grid_setup = prepare(ungrouped, pairs, "logit_diff", normalize=False, batch_size_prompts=64,
                         hook_names=hook_names_for(["head_k"], 2))
    data = prepare_attribution(ungrouped, pairs, grid_setup.metric, ["head_k"], batch_size_prompts=64)
    assert run_grid("head_k", grid_setup).shape == attribution_grid("head_k", data).shape == (2, 4)


def test_path_entries_are_checked():
    assert path_patching.check_path_entries([{"receivers": "final"}])[0].label == "path_to_final"
    receivers = path_patching.check_path_entries([{"receivers": [[9, 9], [10, 0]], "input": "q"}])[0]
    assert receivers.label == "path_to_q_L9H9_L10H0"
    with pytest.raises(ConfigError, match=r"patching.path\[0\].input"):
        path_patching.check_path_entries([{"receivers": [[1, 0]], "input": "z"}])
    with pytest.raises(ConfigError, match=r"patching.path\[0\].receivers\[1\]: expected \[layer, head\] with layer < 2"):
        path_patching.parse_receivers({"receivers": [[1, 0], [5, 0]]}, tiny_model().cfg, "patching.path[0]")


@pytest.mark.parametrize("normalize", [False, True])
def test_attribution_is_exact_where_the_metric_is_linear(normalize):
    # One attention-only layer, no LayerNorm: the logits are linear in every head's
    # output and value vectors and in the layer's output, so the first-order
    # estimate is the exact patched metric.
    model = tiny_model(n_layers=1, n_heads=3, attn_only=True, normalization_type=None)
    pairs = random_pairs(4, 7)
    linear = ["head_out", "head_out_by_pos", "head_v", "head_v_by_pos", "attn_out", "resid_post"]
    setup = prepare(model, pairs, "logit_diff", normalize=normalize, batch_size_prompts=64,
                    hook_names=hook_names_for(linear, 1))
    data = prepare_attribution(model, pairs, setup.metric, linear, batch_size_prompts=3)
    for name in linear:
        torch.testing.assert_close(attribution_grid(name, data), run_grid(name, setup), atol=1e-4, rtol=0, msg=name)
    # Where it is not linear (the residual stream feeds the attention pattern) it is an
    # estimate; sharpened attention makes the curvature visible.
    with torch.no_grad():
        model.blocks[0].attn.W_Q.mul_(6)
        model.blocks[0].attn.W_K.mul_(6)
    setup = prepare(model, pairs, "logit_diff", normalize=normalize, batch_size_prompts=64,
                    hook_names=hook_names_for(["resid_pre", "head_k"], 1))
    data = prepare_attribution(model, pairs, setup.metric, ["resid_pre", "head_k"], batch_size_prompts=64)
    for name in ("resid_pre", "head_k"):
        estimate, exact = attribution_grid(name, data), run_grid(name, setup)
        assert estimate.shape == exact.shape
        assert (estimate - exact).abs().max() > 1e-3, name


def test_attribution_correlates_with_exact_on_a_deeper_model():
    model = tiny_model(n_layers=2, n_heads=4)
    pairs = random_pairs(6, 8)
    names = ["block_every", "head_all_pos_every"]
    setup = prepare(model, pairs, "logit_diff", normalize=True, batch_size_prompts=64,
                    hook_names=hook_names_for(names, 2))
    data = prepare_attribution(model, pairs, setup.metric, names, batch_size_prompts=64)
    for name in names:
        estimate, exact = attribution_grid(name, data), run_grid(name, setup)
        assert estimate.shape == exact.shape
        correlation = torch.corrcoef(torch.stack([estimate.flatten(), exact.flatten()]))[0, 1]
        assert correlation > 0.5, name
