"""The exact engine against transformer_lens.patching, and the properties patching must have."""

from __future__ import annotations

from functools import partial

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.patching.engine import count_forwards, hook_names_for, prepare, run_grid  # noqa: E402
from interp_pipeline.patching.grids import ALL_NAMES, COMPOSITES, parts  # noqa: E402
from tests.support.models import random_pairs, tiny_model  # noqa: E402

EVERY_FUNCTIONS = {
    "block_every": "get_act_patch_block_every",
    "head_all_pos_every": "get_act_patch_attn_head_all_pos_every",
    "head_by_pos_every": "get_act_patch_attn_head_by_pos_every",
}


def transformer_lens_grid(name, model, pairs, metric):
    from transformer_lens import patching

    _, clean_cache = model.run_with_cache(pairs["clean"])
    grid = parts(name)[0]
    if name in COMPOSITES:
        function = getattr(patching, EVERY_FUNCTIONS[name])
    elif grid.tl_function is not None:
        function = getattr(patching, grid.tl_function)
    else:  # resid_post: TransformerLens's generic function with the same setter
        function = partial(patching.generic_activation_patch, patch_setter=grid.patch_setter(),
                           activation_name=grid.act, index_axis_names=grid.axes)
    with torch.no_grad():
        return function(model, pairs["corrupted"], clean_cache, metric.full_logits_metric)


# The fast path on a config-built model is HookedTransformer's; TransformerLens 4's (a boot_native Bridge)
# is no architecture models/bridge_blocks.py runs block by block, so its sweeps take the generic path.
FAST = pytest.mark.hooked_transformer(reason="the fast path on a config-built model needs HookedTransformer: "
                                             "TransformerLens 4's native Bridge takes the generic path")


@pytest.mark.parametrize(("metric", "normalize", "n_prompts", "batch_size_prompts", "fast"), [
    pytest.param("logit_diff", True, 3, 5, True, marks=FAST),  # one patched copy per pass (5 // 3)
    pytest.param("logit_diff", False, 2, 64, True, marks=FAST),  # many patches per pass
    pytest.param("kl", False, 4, 3, True, marks=FAST),  # the prompts themselves split over passes
    pytest.param("loss", True, 3, 12, True, marks=FAST),
    ("answer_prob", False, 3, 9, False),  # the generic path (full forwards)
])
def test_every_grid_equals_transformer_lens(metric, normalize, n_prompts, batch_size_prompts, fast):
    model = tiny_model()
    pairs = random_pairs(n_prompts, 7)
    # Every grid under one metric; the others check a sample (TransformerLens's side is slow).
    names = ALL_NAMES if metric == "logit_diff" and normalize else ("resid_mid", "head_k", "head_pattern_by_pos")
    setup = prepare(model, pairs, metric, normalize=normalize, batch_size_prompts=batch_size_prompts,
                    hook_names=hook_names_for(names, 2), fast=fast)
    for name in names:
        ours = run_grid(name, setup)
        theirs = transformer_lens_grid(name, model, pairs, setup.metric)
        assert ours.shape == theirs.shape, name
        torch.testing.assert_close(ours, theirs.float(), atol=1e-4, rtol=0, msg=name)


@pytest.mark.parametrize("shape", [
    {"n_layers": 1, "n_heads": 2, "attn_only": True, "normalization_type": None},
    {"n_layers": 3, "n_heads": 3, "positional_embedding_type": "rotary", "rotary_dim": 8},
    pytest.param({"n_layers": 2, "n_heads": 4, "positional_embedding_type": "shortformer", "attn_only": True},
                 marks=pytest.mark.hooked_transformer(reason="TransformerLens 4's native model has no shortformer "
                                                             "positional embeddings")),  # generic path
])
def test_other_shapes_equal_transformer_lens(shape):
    model = tiny_model(**shape)
    pairs = random_pairs(5, 9, differing=(1, 3, 6))
    names = ["resid_pre", "attn_out", "head_out", "head_v_by_pos", "head_pattern_by_pos"]
    setup = prepare(model, pairs, "logit_diff", normalize=True, batch_size_prompts=16,
                    hook_names=hook_names_for(names, model.cfg.n_layers))
    for name in names:
        torch.testing.assert_close(run_grid(name, setup), transformer_lens_grid(name, model, pairs, setup.metric).float(),
                                   atol=1e-4, rtol=0, msg=name)


def test_patching_every_head_recovers_clean_and_nothing_gives_corrupted():
    # Attention-only, and clean and corrupted share the END token: the END residual
    # stream is its embedding plus every head's output, so patching all heads in
    # every layer at once restores the clean logits exactly.
    model = tiny_model(n_layers=2, attn_only=True)
    pairs = random_pairs(4, 8)
    setup = prepare(model, pairs, "logit_diff", normalize=True, batch_size_prompts=32,
                    hook_names=hook_names_for(["head_out", "resid_pre"], 2))
    rows = torch.arange(4)
    positions = setup.metric.readout_positions(rows)

    def every_head(z, hook, name):
        return setup.clean_cache[name]  # by the name hooked: a Bridge's hook.name is its own, not the alias

    def run(hooks):
        with torch.inference_mode():
            logits = setup.forward.run(0, rows, 1, hooks, positions)
        return float(setup.metric.finish(setup.metric.per_prompt(logits, rows).mean()))

    assert run([(f"blocks.{layer}.attn.hook_z", partial(every_head, name=f"blocks.{layer}.attn.hook_z"))
                for layer in range(2)]) == pytest.approx(1.0, abs=1e-5)
    assert run([]) == pytest.approx(0.0, abs=1e-5)
    # A position before the first difference changes nothing; the grid's values are finite.
    resid = run_grid("resid_pre", setup)
    torch.testing.assert_close(resid[:, :2], torch.zeros(2, 2), atol=1e-5, rtol=0)
    assert torch.isfinite(resid).all()


def test_split_grids_match_one_pass_and_count_forwards():
    model = tiny_model()
    pairs = random_pairs(6, 7)
    names = hook_names_for(["head_out_by_pos"], 2)
    wide = prepare(model, pairs, "logit_diff", normalize=False, batch_size_prompts=1000, hook_names=names)
    narrow = prepare(model, pairs, "logit_diff", normalize=False, batch_size_prompts=4, hook_names=names)
    grid = parts("head_out_by_pos")[0]
    assert count_forwards(grid, wide) == 2  # one pass per layer
    # Prompt groups of 4 (one patch per pass) and 2 (two per pass), 28 patches per layer.
    assert count_forwards(grid, narrow) == 2 * 28 + 2 * 14
    calls = []
    narrow_result = run_grid("head_out_by_pos", narrow, on_forward=lambda: calls.append(1))
    assert len(calls) == count_forwards(grid, narrow)
    torch.testing.assert_close(run_grid("head_out_by_pos", wide), narrow_result, atol=1e-5, rtol=0)
