"""GPT-2's real tokenizer, offline (whisper's gpt2.tiktoken through transformers' TikTokenConverter),
and the project's GPT-2 prompts under it: the TransformerLens IOI demo's 8 prompts, Wang et al.'s
names and templates, the seed tutorial's Eiffel Tower / Colosseum pair.

The tokenizer file comes from scripts/setup.sh; without it these tests fail (FileNotFoundError
naming setup.sh), they do not skip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from interp_pipeline.common.paths import conf_dir
from interp_pipeline.patching.prompt_pairs import tokenize_pairs
from interp_pipeline.rehearsal import gpt2_tokenizer as module
from interp_pipeline.tasks.ioi_prompts import BABA_TEMPLATES, NAMES, OBJECTS, PLACES, generate_ioi



def test_a_missing_tokenizer_file_fails_naming_setup_sh(tmp_path, monkeypatch):
    monkeypatch.setenv(module.TIKTOKEN_ENV, str(tmp_path / "gpt2.tiktoken"))
    with pytest.raises(FileNotFoundError, match="scripts/setup.sh"):
        module.gpt2_tokenizer()


def test_a_tokenizer_file_with_another_checksum_is_refused(tmp_path, monkeypatch):
    wrong = tmp_path / "gpt2.tiktoken"
    wrong.write_text("VGhl 0\n")
    monkeypatch.setenv(module.TIKTOKEN_ENV, str(wrong))
    with pytest.raises(ValueError, match="sha256"):
        module.gpt2_tokenizer()


def test_the_ranks_are_gpt2s(gpt2_tokenizer):
    assert len(gpt2_tokenizer) == 50257
    assert gpt2_tokenizer.convert_tokens_to_ids(["The", "ĠParis", "ĠJohn"]) == [464, 6342, 1757]
    assert gpt2_tokenizer.bos_token_id == gpt2_tokenizer.eos_token_id == 50256
    assert gpt2_tokenizer.is_fast


def test_it_encodes_as_tiktokens_reference_gpt2_encoder(gpt2_tokenizer):
    """tiktoken's own BPE over the same ranks and GPT-2's split pattern is the reference: the converted
    tokenizer gives the same ids on English prose, code, whitespace runs and Chinese."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    reference = tiktoken.Encoding("gpt2", pat_str=module.GPT2_PATTERN,
                                  mergeable_ranks=load_tiktoken_bpe(str(module.tiktoken_path())),
                                  special_tokens={module.END_OF_TEXT: 50256})
    texts = [(Path(__file__).parents[2] / "README.md").read_text(), "Hello world's   123456 don't\n\n\tok  ",
             "GPT-2 的分词器: 字节级 BPE, 在所有语言上都可以使用 🙂"]
    for text in texts:
        assert gpt2_tokenizer(text).input_ids == reference.encode(text)


def _demo_pairs() -> list[dict[str, str]]:
    return yaml.safe_load((conf_dir() / "data" / "ioi_demo_prompts.yaml").read_text())["params"]["pairs"]


def test_the_demo_ioi_prompts_tokenize_as_in_the_demo(gpt2_tokenizer):
    """TransformerLens's Exploratory_Analysis_Demo: 8 prompts of 15 tokens with BOS, every name one
    token (John 1757, Mary 5335, ...), clean and corrupted aligned, S2 the only position that differs."""
    pairs, dropped = tokenize_pairs(gpt2_tokenizer, _demo_pairs(), prepend_bos=True, min_pairs=8)
    assert dropped == 0
    assert pairs["clean"].shape == (8, 15) and (pairs["length"] == 15).all()
    names = {n: gpt2_tokenizer.convert_tokens_to_ids("Ġ" + n)
             for n in ("John", "Mary", "Tom", "James", "Dan", "Sid", "Martin", "Amy")}
    assert names["John"] == 1757 and names["Mary"] == 5335
    assert pairs["answer"].tolist() == [names[n] for n in ("John", "Mary", "Tom", "James", "Dan", "Sid", "Martin", "Amy")]
    assert pairs["wrong"].tolist() == [names[n] for n in ("Mary", "John", "James", "Tom", "Sid", "Dan", "Amy", "Martin")]
    differs = pairs["clean"] != pairs["corrupted"]
    assert (differs.sum(dim=1) == 1).all() and differs[:, 10].all()  # S2 at position 10 (BOS at 0)


def test_wang_et_al_names_and_templates_align_with_nothing_dropped(gpt2_tokenizer):
    for word in [*NAMES, *PLACES, *OBJECTS]:
        assert len(gpt2_tokenizer(" " + word).input_ids) == 1, word
    for corruption in ("abc", "s2_swap"):
        records = generate_ioi(600, seed=0, corruption=corruption)
        assert {r.template for r in records} == set(range(len(BABA_TEMPLATES)))
        pairs, dropped = tokenize_pairs(gpt2_tokenizer, records, prepend_bos=True, min_pairs=600, max_len=1024)
        assert dropped == 0
        # The roles the IOI analyses read, placed in every pair: IO, S1, S2 (and END, the last token).
        for role in ("io_pos", "s1_pos", "s2_pos"):
            assert role in pairs
        rows = range(len(records))
        assert all(pairs["clean"][i, pairs["io_pos"][i]] == pairs["answer"][i] for i in rows)
        assert all(pairs["clean"][i, pairs["s2_pos"][i]] == pairs["wrong"][i] for i in rows)


def test_the_seed_tutorials_eiffel_tower_and_colosseum_pair_aligns(gpt2_tokenizer):
    # The activation-patching tutorial in shared/seeds (000_c84df3900fc7df45.txt): clean_prompt,
    # corrupted_prompt, and logit_diff = logit(" Paris") - logit(" Rome").
    clean, corrupted = "The Eiffel Tower is in the city of", "The Colosseum is in the city of"
    record = {"clean": clean, "corrupted": corrupted, "answer": " Paris", "wrong": " Rome"}
    pairs, dropped = tokenize_pairs(gpt2_tokenizer, [record], prepend_bos=True)
    assert dropped == 0 and pairs["clean"].shape == (1, 11)  # BOS + 10 on both sides
    assert pairs["answer"].tolist() == [6342]

