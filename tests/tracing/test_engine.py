"""Causal tracing (interp_pipeline/tracing/engine.py) against a plain TransformerLens hook loop
(tests/support/tracing.py), on random tiny models: a HookedTransformer and a TransformerBridge of each
architecture the Bridge fast path knows (GPT-2, GPT-NeoX, Llama, Gemma 3, Qwen2, Qwen3, Mistral: started at the restored layer,
with the corrupted run's keys and values for the positions before the restored one or without them; the
Bridge's generic path too), to 1e-5."""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.tracing.average import AverageEffects, class_columns
from interp_pipeline.tracing.engine import CausalTracer, PromptTrace, default_window, embedding_std, window_layers
from tests.support.models import tiny_model
from tests.support.tiny_bridges import ARCHITECTURES, WINDOWED_ROTARY
from tests.support.tracing import reference_trace

def random_facts(d_vocab: int, n_ctx: int = 9) -> dict[str, torch.Tensor]:
    """Five prompts of different lengths and subject spans (one-token subjects included)."""
    tokens = torch.randint(2, d_vocab, (5, n_ctx), generator=torch.Generator().manual_seed(0))
    facts = {"tokens": tokens, "length": torch.tensor([9, 7, 9, 6, 4]),
             "subject_first": torch.tensor([1, 2, 1, 3, 1]), "subject_last": torch.tensor([3, 2, 2, 4, 1]),
             "object": torch.tensor([5, 7, 9, 11, 3])}
    facts["last"] = facts["length"] - 1
    return facts


KINDS = ("hidden", "mlp", "attn")
SETTINGS = dict(noise_std=0.7, samples=3, seed=2)


def references(model, facts, window):
    """The hook loop's scores per prompt (computed once per model: they are the slow part)."""
    return [reference_trace(model, facts, prompt, window=window, kinds=KINDS, **SETTINGS)
            for prompt in range(len(facts["tokens"]))]


def run_lengths(model, tracer, rows):
    """``tracer.trace(rows)`` and the numbers of positions its runs computed in the last block."""
    lengths = []
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    with model.hooks(fwd_hooks=[(last, lambda activation, hook: lengths.append(activation.shape[1]))]):
        trace = tracer.trace(rows)
    return trace, set(lengths)


def assert_matches(model, facts, expected, *, batch_size_prompts, window, prefix=None):
    tracer = CausalTracer(model, facts, window=window, kinds=KINDS, batch_size_prompts=batch_size_prompts, **SETTINGS)
    seen = []
    for rows in tracer.groups():
        trace, lengths = run_lengths(model, tracer, rows)
        width = int(facts["length"][rows].max())
        # Following the cached prefix (the fast path's default), restoring the last position computes
        # that position alone; otherwise every run computes every position.
        assert min(lengths) == (1 if (tracer.fast if prefix is None else prefix) else width) and max(lengths) == width
        for g, prompt in enumerate(rows.tolist()):
            reference, clean, corrupted = expected[prompt]
            length = int(facts["length"][prompt])
            for kind in KINDS:
                torch.testing.assert_close(trace.scores[kind][g, :, :length], reference[kind], atol=1e-5, rtol=0)
                assert trace.scores[kind][g, :, length:].isnan().all()
            assert trace.clean[g].item() == pytest.approx(clean, abs=1e-6)
            assert trace.corrupted[g].item() == pytest.approx(corrupted, abs=1e-6)
            seen.append(prompt)
    assert sorted(seen) == list(range(len(facts["tokens"])))
    return tracer


@pytest.fixture(scope="module")
def hooked():
    model, facts = tiny_model(n_layers=3, d_vocab=50), random_facts(50)
    return model, facts, references(model, facts, window=2)


@pytest.mark.parametrize("batch_size_prompts", [512, 10])  # every prompt in one group; one prompt, positions split
@pytest.mark.hooked_transformer
def test_hooked_transformer_fast_path_matches_the_hook_loop(hooked, batch_size_prompts):
    model, facts, expected = hooked
    assert assert_matches(model, facts, expected, batch_size_prompts=batch_size_prompts, window=2).fast


@pytest.mark.hooked_transformer(reason="prefix reuse on a config-built model is HookedTransformer's fast path: "
                                       "TransformerLens 4's native Bridge takes the generic path")
def test_prefix_reuse_matches_the_engine_without_it_on_a_rotary_grouped_query_model():
    """Keys cached before rotary (TransformerLens's layout), offset queries, two query heads per key head."""
    model = tiny_model(n_layers=3, d_vocab=50, positional_embedding_type="rotary", rotary_dim=8, n_key_value_heads=2)
    facts = random_facts(50)
    settings = dict(window=2, kinds=KINDS, batch_size_prompts=512, **SETTINGS)
    reused, plain = (CausalTracer(model, facts, reuse_prefix=flag, **settings) for flag in (True, False))
    rows = next(reused.groups())
    (ours, lengths), theirs = run_lengths(model, reused, rows), plain.trace(rows)
    assert reused.fast and min(lengths) == 1
    for kind in KINDS:
        torch.testing.assert_close(ours.scores[kind], theirs.scores[kind], atol=1e-5, rtol=0, equal_nan=True)
    assert ours.scores["hidden"][:, :, 1:].isfinite().any()  # restored positions were compared, not only NaNs


@pytest.mark.parametrize("architecture", ARCHITECTURES + WINDOWED_ROTARY)
def test_bridge_fast_and_generic_paths_match_the_hook_loop(tmp_path, monkeypatch, architecture):
    from interp_pipeline.models import hub
    from tests.support.tiny_bridges import save_tiny
    from tests.support.tiny_gpt2 import VOCAB

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = hub.load_hugging_face(str(save_tiny(architecture, tmp_path / architecture)), revision=None,
                                   device="cpu", dtype="float32")
    facts = random_facts(VOCAB)
    expected = references(bridge, facts, window=1)
    # Restored runs follow the corrupted run's cached prefix (the 3-token windows are shorter than the prompts).
    assert assert_matches(bridge, facts, expected, batch_size_prompts=40, window=1, prefix=True).fast
    # an architecture whose blocks are not given the positions' offset starts at the layer, every position run
    monkeypatch.setattr("interp_pipeline.models.bridge_blocks._OFFSET_ARGUMENTS", set())
    assert assert_matches(bridge, facts, expected, batch_size_prompts=40, window=1, prefix=False).fast
    monkeypatch.setattr("interp_pipeline.patching.forward.supports_fast_path", lambda model: False)
    assert not assert_matches(bridge, facts, expected, batch_size_prompts=40, window=1).fast


def test_window_is_the_papers_scaled_and_centred():
    assert default_window(48) == 10 and default_window(12) == 2 and default_window(4) == 1
    assert list(window_layers(20, 10, 48)) == list(range(15, 25))  # the paper's L-5 .. L+4
    assert list(window_layers(1, 10, 48)) == list(range(0, 6)) and list(window_layers(47, 10, 48)) == [42, 43, 44, 45, 46, 47]


def test_embedding_std_is_the_std_of_the_subject_tokens_embeddings():
    """With no tokenizer, the prompts' own subject tokens, once per prompt (with one: ROME's, in
    tests/tracing/test_rome_reference.py)."""
    model = tiny_model(n_layers=1, d_vocab=50)
    model.tokenizer = None
    facts = random_facts(50)
    rows = [model.W_E[facts["tokens"][i, int(facts["subject_first"][i]):int(facts["subject_last"][i]) + 1]]
            for i in range(5)]
    expected = torch.cat(rows).detach().double().std().item()
    assert embedding_std(model, facts) == pytest.approx(expected, rel=1e-9)


def test_per_prompt_average_aligns_prompts_on_the_papers_position_classes():
    """The per_prompt option (ROME's pooled default: tests/tracing/test_rome_reference.py)."""
    assert class_columns(1, 3, 8) == {"first_subject": [1], "middle_subject": [2], "last_subject": [3],
                                      "first_subsequent": [4], "further": [5, 6, 7], "last": [8]}
    # a one-token subject right before the last token: no middle, no subsequent or further tokens
    assert class_columns(2, 2, 3, "per_prompt") == {"first_subject": [2], "middle_subject": [], "last_subject": [2],
                                                    "first_subsequent": [], "further": [], "last": [3]}
    # ROME's notebook counts the first token after the subject even when it is the last one
    assert class_columns(2, 2, 3)["first_subsequent"] == [3]
    facts = {"subject_first": torch.tensor([1, 2]), "subject_last": torch.tensor([3, 2]), "last": torch.tensor([5, 3])}
    scores = torch.arange(2 * 2 * 6, dtype=torch.float32).view(2, 2, 6)  # [prompt, layer, position]
    trace = PromptTrace(torch.tensor([0, 1]), {"hidden": scores}, torch.tensor([0.9, 0.8]), torch.tensor([1.0, 2.0]),
                        torch.tensor([True, True]))
    average = AverageEffects(("hidden",), 2, "per_prompt")
    average.add(trace, facts)
    aie = average.averages()
    assert aie["counts"].tolist() == [2, 1, 2, 1, 0, 2]
    # last subject token: prompt 0 position 3 (minus 1.0), prompt 1 position 2 (minus 2.0), averaged
    expected = ((scores[0, :, 3] - 1.0) + (scores[1, :, 2] - 2.0)) / 2
    torch.testing.assert_close(aie["hidden"][2], expected)
    torch.testing.assert_close(aie["hidden"][1], scores[0, :, 2] - 1.0)  # middle: prompt 0 only
    assert aie["hidden"][4].isnan().all()  # no prompt has further tokens
