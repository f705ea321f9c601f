"""The seed tutorials' snippets (/work/shared/seeds: TransformerLens lesson 1 in 000_*.txt, the logit
lens in 001_*.txt), run as written on a tiny GPT-2 checkpoint loaded as HookedTransformer.from_pretrained
loads GPT-2 small, against what the inspect_model and logit_lens stages compute on the same prompt.

Where the definitions differ, the test says so: lesson 1 prints ``cache["resid_post", L].norm()``, the
norm of the whole [1, pos, d_model] tensor (it grows with the prompt), where inspect_model logs the mean
per-position norm (tests/analysis/test_logit_lens.py checks that against the cache); 001's logit lens
renormalises the top-5 logits among themselves (``values.softmax(0)``), where ours are probabilities
over the vocabulary, so only its tokens are compared. SAELens lesson 1 (002_*.txt: encode, L0 per
token, top-5 features, MSE) is tests/analysis/test_sae_features.py's direct computations; the
activation-patching lesson is TransformerLens's patching functions (tests/patching/test_engine.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.tiny_gpt2 import load_tiny_gpt2, save_tiny_gpt2

PROMPT = "the quick brown fox jumps over the lazy"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield load_tiny_gpt2(save_tiny_gpt2(tmp_path_factory.mktemp("seeds") / "tiny_gpt2"), "hooked", True, monkeypatch)
    finally:
        monkeypatch.undo()


def test_lesson_1_tokens_patterns_and_top_predictions(model):
    from interp_pipeline.analysis.first_look import inspect_prompts
    from interp_pipeline.analysis.prompt_set import from_prompts

    # The tutorial, steps 2-6 (printing aside).
    tokens = model.to_tokens(PROMPT)
    str_tokens = model.to_str_tokens(PROMPT)
    logits, cache = model.run_with_cache(tokens)
    attn = cache["pattern", 0]
    probs = torch.softmax(logits[0, -1], dim=-1)
    top_tokens = probs.topk(5)
    tutorial = [(model.to_string(t.unsqueeze(0)), p.item()) for t, p in zip(top_tokens.indices, top_tokens.values)]

    prompts = from_prompts(model, [PROMPT], answer=None, prepend_bos=True)
    assert prompts.tokens[0].tolist() == tokens[0].tolist() and prompts.str_tokens[0] == str_tokens
    found = inspect_prompts(model, prompts, layers=[0], heads=list(range(model.cfg.n_heads)), positions="last",
                            top_k=5, show=0, exclude_bos=False, batch_size_prompts=1)
    np.testing.assert_allclose(found.patterns[0], attn[0].detach().numpy(), atol=1e-6)
    ours = [(row["prediction"], row["prob"]) for row in found.predictions]
    assert [t for t, _ in ours] == [t for t, _ in tutorial]
    assert [p for _, p in ours] == pytest.approx([p for _, p in tutorial], abs=1e-6)


def test_logit_lens_snippet_top_tokens_per_layer(model):
    from interp_pipeline.analysis.logit_lens import run_logit_lens
    from interp_pipeline.analysis.prompt_set import from_prompts

    tokens = model.to_tokens(PROMPT)
    _, cache = model.run_with_cache(tokens)

    def logit_lens(cache, model, layer_idx):  # 001_*.txt, as written
        resid = cache["resid_post", layer_idx]
        logits = model.unembed(model.ln_final(resid))
        top_tokens = logits[0, -1].topk(5)
        return [(model.to_string([t]), p.item()) for t, p in zip(top_tokens.indices, top_tokens.values.softmax(0))]

    result = run_logit_lens(model, from_prompts(model, [PROMPT], answer=None, prepend_bos=True), top_k=5,
                            batch_size_prompts=1)
    lens = result.sequences[0]
    for layer in range(model.cfg.n_layers):
        state = layer + 1  # resid_post of layer L is the stream entering L + 1 (the last: final_post)
        ours = [model.to_string([int(t)]) for t in lens.top_ids[state, -1]]
        assert ours == [token for token, _ in logit_lens(cache, model, layer)], layer
