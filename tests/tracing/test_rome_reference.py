"""Causal tracing against ROME's own arithmetic (tests/support/rome_reference.py, restated from
github.com/kmeng01/rome: experiments/causal_trace.py and notebooks/average_causal_effects.ipynb)
on the same weights (a tiny GPT-2 checkpoint) and the same noise draws:

- the noise unit is ROME's ``collect_embedding_std`` on the Hugging Face model's ``wte``, on a
  HookedTransformer and a TransformerBridge, with TransformerLens's weight processing on or off
  (issue 27: it was the std of the centred ``W_E``);
- the traced scores are ``trace_with_patch``'s (hidden states, MLP and attention windows);
- the default average is the notebook's (tokens pooled across prompts, the mean low score subtracted).
"""

from __future__ import annotations

import numpy
import pytest
import torch

from interp_pipeline.tracing.average import POSITION_CLASSES, AverageEffects
from interp_pipeline.tracing.engine import CausalTracer, PromptTrace, embedding_std, noise_for
from tests.support import rome_reference as rome
from tests.support.tiny_gpt2 import load_tiny_gpt2 as load

# Prompts over the tiny tokenizer's words: a 3-token subject (a middle token, further tokens), a
# one-token subject, and a subject right before the last token (ROME's first_a is then the last token).
RECORDS = [("the quick brown fox jumps over the lazy", "quick brown fox", " dog"),
           ("a dog ran in the", "dog", " park"),
           ("induction heads copy the token that", "token", " followed"),
           ("the cat sat on the", "cat sat", " mat")]
SAMPLES, SEED, WINDOW, NOISE = 3, 4, 1, 3.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp_pipeline.facts.prompts import FactRecord, tokenize_facts
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    directory = save_tiny_gpt2(tmp_path_factory.mktemp("rome") / "tiny_gpt2")
    hf_model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    facts = tokenize_facts(tokenizer, [FactRecord(*r) for r in RECORDS], prepend_bos=True)
    std = rome.collect_embedding_std(hf_model, tokenizer, [subject for _, subject, _ in RECORDS])
    return directory, hf_model, facts, std


@pytest.mark.parametrize("kind", [pytest.param("hooked", marks=pytest.mark.hooked_transformer), "bridge"])
@pytest.mark.parametrize("processed", [True, False])
def test_noise_unit_is_romes_collect_embedding_std(checkpoint, kind, processed, monkeypatch):
    directory, _, facts, std = checkpoint
    model = load(directory, kind, processed, monkeypatch)
    if processed:  # the case issue 27 found: W_E is centred, its std is not the checkpoint's
        assert model.W_E.mean(-1).abs().max() < 1e-5
        assert abs(model.W_E.detach().double().std().item() - std) > 1e-4
    assert embedding_std(model, facts) == pytest.approx(std, rel=1e-6)


def reference_traces(hf_model, facts, noise_std):
    out = []
    for prompt in range(len(facts["tokens"])):
        length = int(facts["length"][prompt])
        tokens = facts["tokens"][prompt, :length]
        first, last = int(facts["subject_first"][prompt]), int(facts["subject_last"][prompt])
        noise = noise_for(prompt, SEED, SAMPLES, last - first + 1, hf_model.config.n_embd) * noise_std
        out.append({kind: rome.calculate_hidden_flow(hf_model, tokens, int(facts["object"][prompt]),
                                                     (first, last + 1), noise, kind, WINDOW)
                    for kind in (None, "mlp", "attn")})
    return out


@pytest.mark.parametrize("kind", [pytest.param("hooked", marks=pytest.mark.hooked_transformer), "bridge"])
def test_traces_and_pooled_average_are_romes(checkpoint, kind, monkeypatch):
    directory, hf_model, facts, std = checkpoint
    model = load(directory, kind, True, monkeypatch)
    noise_std = NOISE * embedding_std(model, facts)
    assert noise_std == pytest.approx(NOISE * std, rel=1e-6)
    expected = reference_traces(hf_model, facts, noise_std)

    tracer = CausalTracer(model, facts, noise_std=noise_std, samples=SAMPLES, window=WINDOW, seed=SEED,
                          batch_size_prompts=64)
    average = AverageEffects(("hidden", "mlp", "attn"), model.cfg.n_layers)
    for rows in tracer.groups():
        trace = tracer.trace(rows)
        average.add(trace, facts)
        for g, prompt in enumerate(rows.tolist()):
            length = int(facts["length"][prompt])
            reference = expected[prompt]
            assert trace.corrupted[g].item() == pytest.approx(reference[None]["low_score"], abs=1e-6)
            assert trace.clean[g].item() == pytest.approx(reference[None]["high_score"], abs=1e-6)
            for ours, theirs in (("hidden", None), ("mlp", "mlp"), ("attn", "attn")):
                numpy.testing.assert_allclose(trace.scores[ours][g, :, :length].T.numpy(),
                                              reference[theirs]["scores"], atol=1e-5, rtol=0)

    aie = average.averages()
    for ours, theirs in (("hidden", None), ("mlp", "mlp"), ("attn", "attn")):
        notebook = rome.read_knowledge([reference[theirs] for reference in expected])
        numpy.testing.assert_allclose(aie[ours].numpy(), notebook["result"], atol=1e-5, rtol=0)
        assert aie["counts"].tolist() == notebook["counts"]


def test_pooled_average_is_the_notebooks_and_per_prompt_differs_where_issue_27_says():
    """Synthetic scores: the notebook's arithmetic exactly, and the per-prompt option's three differences."""
    generator = torch.Generator().manual_seed(0)
    # (subject_first, subject_last, last): long subject; one-token subject right before the last token
    spans = [(1, 4, 9), (2, 2, 3), (1, 2, 7)]
    n_layers, width = 3, 10
    scores = torch.rand(len(spans), n_layers, width, generator=generator)
    corrupted = torch.tensor([0.1, 0.3, 0.2])
    facts = {"subject_first": torch.tensor([s[0] for s in spans]), "subject_last": torch.tensor([s[1] for s in spans]),
             "last": torch.tensor([s[2] for s in spans])}
    trace = PromptTrace(torch.arange(3), {"hidden": scores}, torch.ones(3), corrupted, torch.ones(3, dtype=torch.bool))
    pooled, per_prompt = AverageEffects(("hidden",), n_layers), AverageEffects(("hidden",), n_layers, "per_prompt")
    pooled.add(trace, facts)
    per_prompt.add(trace, facts)

    notebook = rome.read_knowledge([{"scores": scores[i, :, :last + 1].T.double().numpy(), "subject_range": (first, sl + 1),
                                     "low_score": float(corrupted[i])} for i, (first, sl, last) in enumerate(spans)])
    numpy.testing.assert_allclose(pooled.averages()["hidden"].numpy(), notebook["result"], atol=1e-6)
    assert pooled.averages()["counts"].tolist() == notebook["counts"] == [3, 2, 3, 3, 6, 3]

    ours = per_prompt.averages()
    middle = POSITION_CLASSES.index("middle_subject")
    # per prompt: only prompt 0 has middle tokens, against its own corrupted score
    torch.testing.assert_close(ours["hidden"][middle], scores[0, :, 2:4].mean(1) - 0.1)
    assert ours["counts"][POSITION_CLASSES.index("first_subsequent")] == 2  # prompt 1's is its last token
    assert not numpy.allclose(ours["hidden"].numpy(), notebook["result"], atol=1e-3)
    for name in ("first_subject", "last_subject", "last"):  # one row per prompt: only the baselines differ
        c = POSITION_CLASSES.index(name)
        torch.testing.assert_close(ours["hidden"][c], pooled.averages()["hidden"][c], atol=1e-6, rtol=0)
