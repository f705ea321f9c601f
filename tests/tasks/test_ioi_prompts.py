"""The IOI prompt generator (tasks/ioi_prompts.py) and the toy IOI task (tasks/ioi.py)."""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tasks.base import make_task
from interp_pipeline.tasks.ioi_prompts import (
    ABBA_TEMPLATES,
    BABA_TEMPLATES,
    NAMES,
    OBJECTS,
    PLACES,
    generate_ioi,
    toy_vocabulary,
)


def _span(text: str, span: tuple[int, int]) -> str:
    return text[span[0]:span[1]]


def test_templates_are_wang_et_al_s_fifteen_and_their_abba_versions():
    assert len(BABA_TEMPLATES) == len(ABBA_TEMPLATES) == 15
    assert BABA_TEMPLATES[0] == "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]"
    assert ABBA_TEMPLATES[0] == "Then, [A] and [B] went to the [PLACE]. [B] gave a [OBJECT] to [A]"
    for baba, abba in zip(BABA_TEMPLATES, ABBA_TEMPLATES):
        assert baba.endswith(" [A]") and abba.endswith(" [A]")
        assert baba.index("[B]") < baba.index("[A]") and abba.index("[A]") < abba.index("[B]")
        assert baba.count("[A]") == abba.count("[A]") == 2 and baba.count("[B]") == abba.count("[B]") == 2
    assert len(set(NAMES)) == len(NAMES) >= 40 and all(" " not in n for n in NAMES)


def test_generator_is_seeded_and_deterministic():
    first = generate_ioi(50, 7)
    assert first == generate_ioi(50, 7)
    assert first != generate_ioi(50, 8)
    # The clean prompts do not depend on the corruption (C is drawn for both).
    assert [p.clean for p in first] == [p.clean for p in generate_ioi(50, 7, corruption="s2_swap")]
    assert {p.template for p in generate_ioi(300, 0)} == set(range(15))
    assert {p.template for p in generate_ioi(50, 0, templates=[2, 5])} == {2, 5}


@pytest.mark.parametrize("order", ["ABBA", "BABA"])
def test_role_spans_and_order(order):
    for p in generate_ioi(100, 1, orders=[order]):
        spans = p.clean_spans
        assert list(spans) == ["io", "s1", "s2", "end"]
        assert _span(p.clean, spans["io"]) == p.io and p.answer == " " + p.io
        assert _span(p.clean, spans["s1"]) == _span(p.clean, spans["s2"]) == p.s and p.wrong == " " + p.s
        assert p.io != p.s and p.order == order
        # ABBA: IO is mentioned first; BABA: S is
        assert (spans["io"][0] < spans["s1"][0]) == (order == "ABBA")
        assert spans["s1"][0] < spans["s2"][0]
        assert _span(p.clean, spans["end"]) == p.clean.split()[-1] == "to"
        assert spans["end"][1] == len(p.clean) and not p.clean.endswith(p.io)
        assert p.clean[spans["io"][0] - 1] == " " or spans["io"][0] == 0  # names are whole words
        assert p.place in p.clean or "[PLACE]" not in BABA_TEMPLATES[p.template]


def test_abc_corruption_puts_a_third_name_at_s2_only():
    for p in generate_ioi(200, 2, corruption="abc"):
        c = p.corrupted_s2
        assert c not in (p.io, p.s) and c in NAMES
        assert _span(p.corrupted, p.corrupted_spans["s2"]) == c
        assert _span(p.corrupted, p.corrupted_spans["io"]) == p.io
        assert _span(p.corrupted, p.corrupted_spans["s1"]) == p.s
        # everything else is the clean text
        start, end = p.clean_spans["s2"]
        assert p.corrupted == p.clean[:start] + c + p.clean[end:]
        assert (p.answer, p.wrong) == (" " + p.io, " " + p.s)


def test_s2_swap_corruption_is_transformer_lens_s_demo_corruption():
    for p in generate_ioi(200, 3, corruption="s2_swap"):
        start, end = p.clean_spans["s2"]
        assert p.corrupted == p.clean[:start] + p.io + p.clean[end:]
        assert _span(p.corrupted, p.corrupted_spans["s2"]) == p.io
        assert (p.answer, p.wrong) == (" " + p.io, " " + p.s)  # answers stay the clean ones
    p = generate_ioi(1, 0, templates=[5], orders=["ABBA"], corruption="s2_swap", names=["John", "Mary", "Tom"],
                     places=["shops"], objects=["bag"])[0]
    clean = f"After {p.io} and {p.s} went to the shops, {p.s} gave a bag to"
    assert p.clean == clean and p.corrupted == clean.replace(f", {p.s}", f", {p.io}")


def test_spaced_punctuation_splits_cleanly_on_whitespace():
    vocabulary = set(toy_vocabulary())
    assert {",", "."} <= vocabulary and set(NAMES) | set(PLACES) | set(OBJECTS) <= vocabulary
    for p in generate_ioi(300, 4, spaced_punctuation=True):
        assert set(p.clean.split()) <= vocabulary and set(p.corrupted.split()) <= vocabulary
        assert "," not in p.clean.replace(" ,", "") and "." not in p.clean.replace(" .", "")
        assert _span(p.clean, p.clean_spans["io"]) == p.io
    assert toy_vocabulary() == toy_vocabulary()  # a fixed order: token ids do not move


@pytest.mark.parametrize(
    ("options", "key", "hint"),
    [
        ({"corruption": "abd"}, "corruption", "did you mean 'abc'?"),
        ({"corruption": "s2swap"}, "corruption", "did you mean 's2_swap'?"),
        ({"orders": ["ABBA", "BABa"]}, "orders[1]", "did you mean 'BABA'?"),
        ({"orders": []}, "orders", "non-empty"),
        ({"templates": [0, 15]}, "templates[1]", "0..14"),
        ({"names": ["John", "Mary"]}, "names", "at least 3"),
        ({"names": ["John", " Mary", "Tom"]}, "names[1]", "one word"),
    ],
)
def test_bad_options_name_the_option(options, key, hint):
    with pytest.raises(ConfigError) as caught:
        generate_ioi(4, 0, **options)
    assert caught.value.key == key and hint in str(caught.value)


# ---------------------------------------------------------------- the toy task


@pytest.fixture(scope="module")
def task():
    return make_task({"name": "ioi", "eval_prompts": 64})


def test_ioi_task_batches_are_padded_sentences_with_the_answer_last(task):
    tokenizer = task.tokenizer()
    config = task.model_config()
    assert config["d_vocab"] == len(tokenizer) == len(task.vocabulary())
    batch = task.train_batch(torch.Generator().manual_seed(0), 32)
    assert batch.shape == (32, config["n_ctx"]) and (batch[:, 0] == 0).all()
    assert torch.equal(batch, task.train_batch(torch.Generator().manual_seed(0), 32))
    pad = tokenizer.pad_token_id
    lengths = (batch != pad).sum(1)
    assert lengths.min() < config["n_ctx"]  # templates differ in length: right padding
    for row, length in zip(batch, lengths):
        assert (row[length:] == pad).all() and (row[:length] != pad).all()
        words = tokenizer.decode(row[1:length]).split()
        assert words[-2] == "to" and words[-1] in NAMES and words.count(words[-1]) == 2  # IO: once + answer
    # GPT-2-style text gives the spaced text's tokens: the toy tokenizer splits off "," and "."
    assert tokenizer("Then, John and Mary went to the store.")["input_ids"] == \
        tokenizer("Then , John and Mary went to the store .")["input_ids"]


def test_ioi_task_loss_skips_padding_and_weights_the_answer(task):
    batch = task.train_batch(torch.Generator().manual_seed(1), 8)
    logits = torch.randn(*batch.shape, task.model_config()["d_vocab"], generator=torch.Generator().manual_seed(2))
    pad = task.tokenizer().pad_token_id
    changed = logits.clone()
    changed[batch == pad] += 100 * torch.randn_like(changed[batch == pad])  # logits predicting padding
    changed[:, -1] += 5  # the last position predicts nothing
    assert torch.allclose(task.loss(logits, batch), task.loss(changed, batch))
    heavier = make_task({"name": "ioi", "answer_weight": 50.0})
    assert not torch.allclose(task.loss(logits, batch), heavier.loss(logits, batch))


def test_ioi_task_holds_out_name_pairs(task):
    train = {frozenset((p.io, p.s)) for p in task.prompts(500, 0, held_out=False)}
    held_out = {frozenset((p.io, p.s)) for p in task.prompts(200, 0, held_out=True)}
    assert train and held_out and not train & held_out
    metrics = task.evaluate(_model(task))
    assert set(metrics) >= {"accuracy", "logit_diff", "loss"}
    assert 0 <= metrics["accuracy"] <= 1


def _model(task, **cfg):
    from tests.support.models import task_model

    config = {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_head": 16, "attn_only": True, "seed": 0, **cfg}
    return task_model(task, **config, device="cpu")


@pytest.mark.parametrize(
    ("config", "key", "hint"),
    [
        ({"name": "ioi", "orders": ["ABAB"]}, "task", "orders[0]"),
        ({"name": "ioi", "held_out_pair": 0.1}, "task.held_out_pair", "did you mean 'held_out_pairs'?"),
        ({"name": "ioi", "held_out_pairs": 1.0}, "task", "held_out_pairs"),
    ],
)
def test_ioi_task_config_errors_name_the_key(config, key, hint):
    with pytest.raises(ConfigError) as caught:
        make_task(config)
    assert caught.value.key == key and hint in str(caught.value)


# conf/model/toy_ioi.yaml trained to held-out accuracy >= 0.95 and logit difference >= 2: its expect:
# (conf/ioi/toy_ioi.yaml, model.eval/accuracy and model.eval/logit_diff), met by the README's
# `+experiment=ioi_patching model=toy_ioi` (tests/test_readme.py) and the offline suite's toy_ioi entry.
