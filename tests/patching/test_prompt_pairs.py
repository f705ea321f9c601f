"""Tokenizing and aligning prompt pairs (patching/prompt_pairs.py) with a word-level and a BPE tokenizer."""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.patching.prompt_pairs import tokenize_pairs
from interp_pipeline.tasks.base import make_task
from interp_pipeline.tasks.ioi_prompts import generate_ioi
from tests.support.models import byte_level_bpe, tiny_hooked_transformer

NAMES = ["John", "Mary", "Tom", "James", "Amy", "Sid", "Dan", "Martin"]
RARE = "Zebulon"  # never in the BPE tokenizer's training text: several tokens


@pytest.fixture(scope="module")
def bpe():
    texts = [p.clean + p.answer for p in generate_ioi(600, 0, names=NAMES)]
    return byte_level_bpe(texts + ["When John and Mary went to the shops, John gave the bag to Mary"])


@pytest.fixture(scope="module")
def toy():
    return make_task({"name": "ioi"}).tokenizer()


def _decode(tokenizer, token) -> str:
    return tokenizer.decode([int(token)])


@pytest.mark.parametrize("corruption", ["abc", "s2_swap"])
@pytest.mark.parametrize("prepend_bos", [True, False])
def test_role_positions_point_at_the_names(bpe, corruption, prepend_bos):
    records = generate_ioi(40, 0, names=NAMES, corruption=corruption)
    pairs, dropped = tokenize_pairs(bpe, records, prepend_bos=prepend_bos, min_pairs=40, key="min_pairs")
    assert dropped == 0
    assert set(pairs) == {"clean", "corrupted", "answer", "wrong", "end", "length", "targets", "loss_mask",
                          "io_pos", "s1_pos", "s2_pos"}
    for name, value in pairs.items():
        assert value.device.type == "cpu" and value.shape[0] == 40
        assert value.dtype == (torch.bool if name == "loss_mask" else torch.int64)
    assert pairs["clean"].shape == pairs["corrupted"].shape == pairs["targets"].shape == pairs["loss_mask"].shape
    bos = bpe.bos_token_id
    for row, p in enumerate(records):
        clean, corrupted = pairs["clean"][row], pairs["corrupted"][row]
        assert (clean[0] == bos) == prepend_bos
        assert _decode(bpe, clean[pairs["io_pos"][row]]) == " " + p.io
        assert _decode(bpe, clean[pairs["s1_pos"][row]]) == " " + p.s
        assert _decode(bpe, clean[pairs["s2_pos"][row]]) == " " + p.s
        assert _decode(bpe, corrupted[pairs["s2_pos"][row]]) == " " + p.corrupted_s2
        assert _decode(bpe, corrupted[pairs["io_pos"][row]]) == " " + p.io
        end = int(pairs["end"][row])
        assert end == int(pairs["length"][row]) - 1 and _decode(bpe, clean[end]) == " to"
        assert (_decode(bpe, pairs["answer"][row]), _decode(bpe, pairs["wrong"][row])) == (p.answer, p.wrong)
        # the prompts differ at S2 only
        assert (clean != corrupted).nonzero().flatten().tolist() == [int(pairs["s2_pos"][row])]
        # next-token targets, the answer at END, only END counted by the loss
        assert torch.equal(pairs["targets"][row, :end], clean[1:end + 1])
        assert pairs["targets"][row, end] == pairs["answer"][row]
        assert pairs["loss_mask"][row].nonzero().flatten().tolist() == [end]


def test_word_level_tokenizer_places_roles_in_gpt2_style_and_spaced_text(toy):
    for spaced in (False, True):
        records = generate_ioi(30, 1, spaced_punctuation=spaced)
        pairs, dropped = tokenize_pairs(toy, records, prepend_bos=True, key="min_pairs")
        assert dropped == 0
        for row, p in enumerate(records):
            assert toy.decode([int(pairs["clean"][row, pairs["io_pos"][row]])]) == p.io
            assert toy.decode([int(pairs["corrupted"][row, pairs["s2_pos"][row]])]) == p.corrupted_s2
    spaced_pairs = tokenize_pairs(toy, generate_ioi(30, 1, spaced_punctuation=True), prepend_bos=True)[0]
    plain_pairs = tokenize_pairs(toy, generate_ioi(30, 1), prepend_bos=True)[0]
    assert all(torch.equal(spaced_pairs[k], plain_pairs[k]) for k in plain_pairs)


def test_misaligned_pairs_are_dropped_and_counted(bpe):
    names = [*NAMES, RARE]
    records = generate_ioi(200, 3, names=names, corruption="abc")
    involved = [RARE in (p.io, p.s, p.corrupted_s2) for p in records]
    pairs, dropped = tokenize_pairs(bpe, records, prepend_bos=True, min_pairs=1, key="min_pairs")
    assert dropped == sum(involved) > 0
    assert len(pairs["clean"]) == 200 - dropped
    kept = [p for p, bad in zip(records, involved) if not bad]
    for row, p in enumerate(kept):
        assert _decode(bpe, pairs["clean"][row, pairs["io_pos"][row]]) == " " + p.io


def test_too_few_aligned_pairs_is_an_error_with_the_counts(bpe):
    records = generate_ioi(50, 4, names=["John", "Mary", RARE], corruption="abc")  # every pair has RARE
    with pytest.raises(ConfigError) as caught:
        tokenize_pairs(bpe, records, prepend_bos=True, min_pairs=10, key="min_pairs")
    message = str(caught.value)
    assert caught.value.key == "min_pairs"
    assert "expected at least 10 aligned prompt pairs, found 0 of 50 (50 dropped:" in message
    assert "multi-token answer" in message or "not one token" in message or "different lengths" in message


def test_a_role_at_different_positions_is_dropped(toy):
    good = generate_ioi(3, 5)
    clean = "Then , John and Mary went to the store . John gave a ring to"
    corrupted = "Then , Mary and John went to the store . John gave a ring to"  # same length, IO moved
    moved = {
        "clean": clean, "corrupted": corrupted, "answer": " Mary", "wrong": " John",
        "clean_spans": {"io": (clean.index("Mary"), clean.index("Mary") + 4)},
        "corrupted_spans": {"io": (corrupted.index("Mary"), corrupted.index("Mary") + 4)},
    }
    pairs, dropped = tokenize_pairs(toy, [*good, moved], prepend_bos=True, min_pairs=3)
    assert dropped == 1 and len(pairs["clean"]) == 3
    with pytest.raises(ConfigError, match=r"1 with io at different positions"):
        tokenize_pairs(toy, [moved], prepend_bos=True, min_pairs=1, key="min_pairs")


# ---------------------------------------------------------------- pairs written by hand


def _pair(clean="When John and Mary went to the shops, John gave the bag to", corrupted=None,
          answer=" Mary", wrong=" John"):
    if corrupted is None:
        corrupted = clean.replace("shops, John", "shops, Mary")
    return {"clean": clean, "corrupted": corrupted, "answer": answer, "wrong": wrong}


@pytest.mark.parametrize(
    ("bad", "key", "message"),
    [
        ({"corrupted": "When John and Mary went to the shops, then Mary gave the bag to"}, "pairs[2].corrupted",
         "expected as many tokens as the clean prompt (14), found 16"),
        ({"answer": " " + RARE}, "pairs[2].answer", "expected a single token, found"),
        ({"wrong": " " + RARE}, "pairs[2].wrong", "expected a single token, found"),
        ({"wrong": " Mary"}, "pairs[2].wrong", "expected a token other than the answer's"),
    ],
)
def test_yaml_pair_errors_name_the_pair(bpe, bad, key, message):
    pairs = [_pair(), _pair(), _pair(**bad)]
    with pytest.raises(ConfigError) as caught:
        tokenize_pairs(bpe, pairs, prepend_bos=True, key="pairs")
    assert caught.value.key == key and message in caught.value.message


def test_multi_token_answer_lists_its_tokens(bpe):
    with pytest.raises(ConfigError) as caught:
        tokenize_pairs(bpe, [_pair(answer=" " + RARE)], prepend_bos=True, key="pairs")
    pieces = [bpe.decode([t]) for t in bpe(" " + RARE, add_special_tokens=False)["input_ids"]]
    assert str(caught.value) == f"pairs[0].answer: expected a single token, found {len(pieces)} tokens {pieces}"


def test_unknown_word_and_too_long_prompt_name_the_pair(toy, bpe):
    with pytest.raises(ConfigError) as caught:  # "shops" and "bag" are not toy words
        tokenize_pairs(toy, [_pair()], prepend_bos=True, key="pairs")
    assert caught.value.key == "pairs[0].clean" and "cannot encode" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        tokenize_pairs(bpe, [_pair()], prepend_bos=True, key="pairs", max_len=10)
    assert caught.value.key == "pairs[0].clean" and "n_ctx=10" in caught.value.message


def test_right_padding_to_the_longest_prompt(bpe):
    short = _pair(clean="When John and Mary went to the shops, John gave", corrupted=None, answer=" the")
    short["corrupted"] = short["clean"].replace("shops, John", "shops, Mary")
    pairs, dropped = tokenize_pairs(bpe, [_pair(), short], prepend_bos=True, key="pairs", loss_positions="all")
    assert dropped == 0 and "io_pos" not in pairs  # no roles for pairs written by hand
    length = pairs["length"].tolist()
    assert length == [15, 12] and pairs["clean"].shape == (2, 15)
    pad = bpe.eos_token_id  # GPT-2 has no pad token: EOS pads
    for name in ("clean", "corrupted", "targets"):
        assert (pairs[name][1, 12:] == pad).all()
    assert pairs["end"].tolist() == [14, 11]
    assert pairs["targets"][1, 11] == pairs["answer"][1] == bpe(" the", add_special_tokens=False)["input_ids"][0]
    # "all": every prompt position counts, padding does not
    assert pairs["loss_mask"].sum(1).tolist() == [15, 12] and not pairs["loss_mask"][1, 12:].any()


def test_right_padding_is_exact_for_a_causal_model(bpe):
    model = tiny_hooked_transformer(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=32,
                                    d_vocab=len(bpe), act_fn="gelu", seed=0, device="cpu")
    short = _pair(clean="When John and Mary went to the shops, John gave", answer=" the", wrong=" a")
    short["corrupted"] = short["clean"]
    pairs, _ = tokenize_pairs(bpe, [_pair(), short], prepend_bos=True, key="pairs")
    with torch.inference_mode():
        batch = model(pairs["clean"])
        alone = model(pairs["clean"][1:, :int(pairs["length"][1])])
    torch.testing.assert_close(batch[1, int(pairs["end"][1])], alone[0, -1], rtol=0, atol=1e-5)
