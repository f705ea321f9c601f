"""Patching a TransformerBridge (the hf model source): the generic path, same numbers as the fast one."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.patching.engine import hook_names_for, prepare, run_grid  # noqa: E402
from interp_pipeline.patching.forward import supports_fast_path  # noqa: E402
from tests.support.models import random_pairs  # noqa: E402
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


def test_a_bridge_takes_the_generic_path_and_agrees_with_the_fast_one(tmp_path, monkeypatch):
    from interp_pipeline.models import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = save_tiny_gpt2(tmp_path / "tiny_gpt2")
    bridge = hub.load_hugging_face(str(directory), revision=None, device="cpu", dtype="float32")
    reference = _hooked_transformer_of(directory)
    assert not supports_fast_path(bridge) and supports_fast_path(reference)

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
