"""The logit lens and the attention patterns against TransformerLens's own run_with_cache values, on a
HookedTransformer and on a TransformerBridge built from a saved tiny GPT-2 (compatibility mode)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.analysis.first_look import inspect_prompts  # noqa: E402
from interp_pipeline.analysis.logit_lens import lens_metrics, run_logit_lens, state_labels  # noqa: E402
from interp_pipeline.analysis.prompt_set import from_tokens  # noqa: E402
from tests.support.models import tiny_model  # noqa: E402
from tests.support.tiny_gpt2 import VOCAB, save_tiny_gpt2  # noqa: E402

ATOL = 1e-5


def _reference(model, tokens):
    """TransformerLens's logit lens: accumulated_resid(apply_ln=True), then W_U and b_U."""
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
        stack = cache.accumulated_resid(apply_ln=True)  # [state, batch, pos, d_model]
        lens = stack @ model.W_U + model.b_U
    return logits, lens.log_softmax(dim=-1), cache


def _check_lens_matches(model, tokens):
    sequences = from_tokens(model, tokens)
    result = run_logit_lens(model, sequences, top_k=3, batch_size_prompts=2)
    logits, ref_logprobs, _ = _reference(model, tokens)
    final = logits.log_softmax(dim=-1)
    for i, seq in enumerate(result.sequences):
        ref = ref_logprobs[:, i]  # [state, pos, vocab]
        np.testing.assert_allclose(seq.top_probs, ref.exp().topk(3, dim=-1).values.numpy(), atol=ATOL)
        targets = tokens[i, 1:]
        ref_target = ref[:, :-1].gather(-1, targets.expand(ref.shape[0], -1).unsqueeze(-1)).squeeze(-1).exp()
        np.testing.assert_allclose(seq.target_prob[:, :-1], ref_target.numpy(), atol=ATOL)
        assert np.isnan(seq.target_prob[:, -1]).all()  # the last position has no next token
        ref_kl = (final[i].exp() * (final[i] - ref)).sum(-1)
        np.testing.assert_allclose(seq.kl_to_final, ref_kl.clamp(min=0).numpy(), atol=ATOL)
        # The last state is the model's own readout: the same distribution, top-1 everywhere.
        np.testing.assert_allclose(ref[-1].exp().numpy(), final[i].exp().numpy(), atol=ATOL)
        assert seq.agrees[-1].all() and np.abs(seq.kl_to_final[-1]).max() < ATOL
    return result, sequences


def _check_patterns_match(model, tokens, layers, heads):
    sequences = from_tokens(model, tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    for show in range(len(tokens)):
        found = inspect_prompts(model, sequences, layers=layers, heads=heads, positions="last", top_k=2, show=show,
                                exclude_bos=True, batch_size_prompts=16)
        expected = np.stack([cache["pattern", layer][show, heads].numpy() for layer in layers])
        np.testing.assert_allclose(found.patterns, expected, atol=ATOL)
    # Norms: the mean over positions (BOS is not token 0's role here: no tokenizer) of each hook's L2 norm.
    for layer in range(model.cfg.n_layers):
        np.testing.assert_allclose(found.norms["resid_post"][:, layer],
                                   cache["resid_post", layer].norm(dim=-1).mean(-1).numpy(), atol=1e-4)


def test_lens_and_patterns_equal_transformer_lens_on_a_random_hooked_transformer():
    model = tiny_model(n_layers=3, d_vocab=50)
    tokens = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(1))
    result, sequences = _check_lens_matches(model, tokens)
    assert result.labels == state_labels(3) == ["0_pre", "1_pre", "2_pre", "final_post"]
    metrics = lens_metrics(result, sequences, "all")
    assert metrics["agreement"][-1] == 1.0 and metrics["kl_to_final"][-1] < ATOL
    _check_patterns_match(model, tokens, layers=[0, 2], heads=[1, 3])


@pytest.mark.hooked_transformer
def test_lens_and_patterns_equal_transformer_lens_on_a_bridge_and_on_the_same_weights_hooked(tmp_path, monkeypatch):
    from interp_pipeline.models import hub
    from tests.patching.test_bridge import _hooked_transformer_of

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = save_tiny_gpt2(tmp_path / "tiny_gpt2")
    bridge = hub.load_hugging_face(str(directory), revision=None, device="cpu", dtype="float32")
    hooked = _hooked_transformer_of(directory)
    tokens = torch.randint(2, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    on_bridge, _ = _check_lens_matches(bridge, tokens)
    on_hooked, _ = _check_lens_matches(hooked, tokens)
    for a, b in zip(on_bridge.sequences, on_hooked.sequences):
        np.testing.assert_allclose(a.top_probs, b.top_probs, atol=ATOL)
        np.testing.assert_allclose(a.kl_to_final, b.kl_to_final, atol=ATOL)
    _check_patterns_match(bridge, tokens, layers=[0, 1], heads=[0, 2])
    _check_patterns_match(hooked, tokens, layers=[0, 1], heads=[0, 2])


def test_metrics_read_only_the_chosen_positions():
    model = tiny_model(n_layers=2, d_vocab=50)
    tokens = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(2))
    sequences = from_tokens(model, tokens)
    result = run_logit_lens(model, sequences, top_k=2, batch_size_prompts=16)
    metrics = lens_metrics(result, sequences, "2:4")
    expected = np.mean([s.target_prob[:, 2:4] for s in result.sequences], axis=(0, 2))
    np.testing.assert_allclose(metrics["answer_prob"], expected, atol=1e-7)
    # "last" has no next token in a token dataset: no answer metrics, only KL and agreement.
    assert set(lens_metrics(result, sequences, "last")) == {"kl_to_final", "agreement"}
