"""inspect_model and logit_lens stop before any work (status 2, one line naming the key) on a prompt
longer than the context, a layer or head out of range, an answer of several tokens, and prompts
given to a pipeline whose data stage already brings the sequences."""

from __future__ import annotations

import pytest

from tests.pipeline.test_preflight_before_work import run_and_capture

LONG = " ".join(["the cat sat on the mat"] * 12)  # 72 words, each one token: past tiny GPT-2's n_ctx of 64

CASES = {
    "attention layer out of range": (
        ["+experiment=inspect_model", "model=toy_induction", "inspect.layers=[0,2]"],
        "inspect.layers[1]: expected a layer in 0..1, found 2"),
    "attention head out of range": (
        ["+experiment=inspect_model", "model=toy_induction", "inspect.heads=[4]"],
        "inspect.heads[0]: expected a head in 0..3, found 4"),
    "prompts where the data stage brings the sequences": (
        ["+experiment=logit_lens", "model=toy_induction", "logit_lens.prompts=[t1 t2 t3]"],
        "logit_lens.prompts: expected none: this pipeline feeds the stage its sequences (the tokens input)"),
    "an answer where the data stage brings the targets": (
        ["+experiment=logit_lens", "model=toy_ioi", "logit_lens.answer=Mary"],
        "logit_lens.answer: expected none: the pairs input brings every sequence's next tokens"),
    "positions outside the probe": (
        ["+experiment=logit_lens", "model=toy_induction", "logit_lens.positions=[41]"],
        "logit_lens.positions: expected positions in -41..40"),
    "the sequence to draw is not there": (
        ["+experiment=inspect_model", "model=toy_induction", "inspect.show_prompt=16"],
        "inspect.show_prompt: expected a sequence index below 16, found 16"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_look_mistake_stops_before_the_model_trains(case, outputs, caplog):
    overrides, start = CASES[case]
    line = run_and_capture(outputs, caplog, overrides)
    assert line.removeprefix("error: ").startswith(start), line


# Pre-flight knows a hub or local model's shape through HookedTransformer's config conversion, which
# TransformerLens 4 removed (and a Bridge cannot be built on the meta device there: it splits GPT-2's
# fused QKV at boot); README "TransformerLens 4".
HUB_SHAPE = pytest.mark.hooked_transformer(reason="pre-flight's shape of a hub or local model needs "
                                                  "HookedTransformer's config conversion (README 'TransformerLens 4')")


@pytest.fixture
def tiny_gpt2(tmp_path, monkeypatch):
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return save_tiny_gpt2(tmp_path / "tiny_gpt2")


@HUB_SHAPE
@pytest.mark.parametrize("experiment, group", [("inspect_model", "inspect"), ("logit_lens", "logit_lens")])
def test_a_prompt_longer_than_the_context_is_refused(experiment, group, tiny_gpt2, outputs, caplog):
    line = run_and_capture(outputs, caplog, [f"+experiment={experiment}", "model=hf", f"model.name_or_path={tiny_gpt2}",
                                             f"{group}.prompts=[the cat sat,{LONG}]"])
    assert line == f"error: {group}.prompts[1]: expected at most n_ctx=64 tokens, found 73", line


@HUB_SHAPE
def test_an_answer_of_several_tokens_is_refused(tiny_gpt2, outputs, caplog):
    line = run_and_capture(outputs, caplog, ["+experiment=logit_lens", "model=hf", f"model.name_or_path={tiny_gpt2}",
                                             "logit_lens.prompts=[the cat sat on the]", "logit_lens.answer=mat dog"])
    assert line.startswith("error: logit_lens.answer: expected one token under the model's tokenizer, found 'mat dog'"
                           " = 2 tokens"), line


@HUB_SHAPE
def test_a_prompt_the_tokenizer_cannot_encode_is_refused(tiny_gpt2, outputs, caplog):
    # The default (GPT-2's) prompt, on a word-level tokenizer that knows none of its words.
    line = run_and_capture(outputs, caplog, ["+experiment=logit_lens", "model=hf", f"model.name_or_path={tiny_gpt2}"])
    assert line.startswith("error: logit_lens.prompts[0]: expected words the model's tokenizer knows"), line
