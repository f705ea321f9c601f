"""Token dataset stages on a tiny model with a word-level tokenizer built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages
from interp_pipeline.stages.token_datasets import prompt_tokens, repeated_tokens, task_tokens
from interp_pipeline.stages.text_datasets import hf_dataset_tokens, text_file_tokens
from interp_pipeline.text.hub_datasets import check_hf_dataset_available
from tests.support.models import tiny_hooked_transformer

WORDS = "the cat sat on mat a dog ran far away and then came back home big small red".split()
# Specials last, so BOS is not token 0 (which is the no-tokenizer fallback).
SPECIALS = ["[BOS]", "[EOS]", "[PAD]", "[UNK]"]
DOCS = [
    "the cat sat on the mat",
    "a dog ran far away",
    "and then came back home",
    "the big red dog sat",
    "a small cat ran home",
    "then the dog came back",
    "the mat",
    "a big small red cat sat on a mat and ran far away then came back home",
    "dog",
    "the cat and the dog",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(WORDS + SPECIALS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    built = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="[BOS]", eos_token="[EOS]",
                                    pad_token="[PAD]", unk_token="[UNK]")
    # set_tokenizer reloads the tokenizer by name_or_path (with add_bos_token=True), so it
    # must come from a directory: an in-memory one has no name_or_path (KeyError).
    folder = tmp_path_factory.mktemp("tokenizer")
    built.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def _tiny_model(d_vocab: int):
    return tiny_hooked_transformer(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=64, d_vocab=d_vocab,
                                   act_fn="relu", device="cpu", seed=0)


@pytest.fixture(scope="module")
def model(tokenizer):
    tiny = _tiny_model(len(tokenizer))
    tiny.set_tokenizer(tokenizer)
    return tiny


@pytest.fixture(scope="module")
def bare_model():
    return _tiny_model(50)


def _ids(model, text: str) -> list[int]:
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def _key(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    return excinfo.value.key


def _preflight(stage_fn, params: dict) -> None:
    """What pre-flight does with a stage's params: resolve them against its schema, then its own checks."""
    definition = stage_fn.stage_def
    definition.preflight(definition.settings(params))


# ---------------------------------------------------------------- repeated_tokens


def test_repeated_tokens_repeat_and_no_specials(model) -> None:
    tokens = repeated_tokens(model, n_sequences=6, half_len=20, seed=1)
    assert tokens.dtype == torch.int64 and tokens.device.type == "cpu"
    assert tokens.shape == (6, 41)
    assert (tokens[:, 0] == model.tokenizer.bos_token_id).all()
    first, second = tokens[:, 1:21], tokens[:, 21:]
    assert torch.equal(first, second)
    specials = torch.tensor(model.tokenizer.all_special_ids)
    assert not torch.isin(first, specials).any()
    assert len(first.unique()) > 5  # spread over the vocabulary, not one token


def test_repeated_tokens_seeded_without_global_rng(model) -> None:
    state = torch.get_rng_state()
    a = repeated_tokens(model, n_sequences=4, half_len=10, seed=7)
    b = repeated_tokens(model, n_sequences=4, half_len=10, seed=7)
    c = repeated_tokens(model, n_sequences=4, half_len=10, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    without = repeated_tokens(model, n_sequences=4, half_len=10, seed=7, prepend_bos=False)
    assert torch.equal(without, a[:, 1:])


def test_repeated_tokens_without_tokenizer_uses_token_0_as_bos(bare_model) -> None:
    tokens = repeated_tokens(bare_model, n_sequences=8, half_len=30, seed=0)
    assert (tokens[:, 0] == 0).all()
    assert tokens[:, 1:].min() >= 1 and tokens.max() < bare_model.cfg.d_vocab


def test_repeated_tokens_checks_n_ctx_and_counts(model) -> None:
    repeated_tokens(model, n_sequences=1, half_len=32, seed=0, prepend_bos=False)  # exactly n_ctx=64
    with pytest.raises(ConfigError) as excinfo:
        repeated_tokens(model, n_sequences=1, half_len=32, seed=0)
    assert _key(excinfo) == "half_len" and "n_ctx=64" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        repeated_tokens(model, n_sequences=0, half_len=4, seed=0)
    assert _key(excinfo) == "n_sequences"


# ---------------------------------------------------------------- prompt_tokens


def test_prompt_tokens_right_pads_like_to_tokens(model) -> None:
    prompts = ["the cat sat on the mat", "a dog"]
    tokens = prompt_tokens(model, prompts=prompts)
    tok = model.tokenizer
    assert tokens.dtype == torch.int64 and tokens.shape == (2, 7)
    assert tokens[1].tolist() == [tok.bos_token_id, *_ids(model, "a dog"), *[tok.pad_token_id] * 4]
    assert torch.equal(tokens, model.to_tokens(prompts, padding_side="right").cpu())
    bare = prompt_tokens(model, prompts=prompts, prepend_bos=False)
    assert bare.shape == (2, 6) and bare[0].tolist() == _ids(model, prompts[0])


def test_prompt_tokens_errors(model, bare_model) -> None:
    with pytest.raises(ConfigError) as excinfo:
        prompt_tokens(model, prompts=[])
    assert _key(excinfo) == "prompts"
    with pytest.raises(ConfigError) as excinfo:
        _preflight(prompt_tokens, {"prompts": ["fine", [3]]})
    assert _key(excinfo) == "prompts.1"
    with pytest.raises(ConfigError) as excinfo:
        prompt_tokens(bare_model, prompts=["the cat"])
    assert _key(excinfo) == "prompts" and "tokenizer" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        prompt_tokens(model, prompts=["the cat", " ".join(["dog"] * 70)])
    assert _key(excinfo) == "prompts.1" and "n_ctx=64" in str(excinfo.value)


# ---------------------------------------------------------------- text_file_tokens


def _write_corpus(folder: Path, docs: list[str] = DOCS) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    txt = folder / "corpus.txt"
    # Blank and whitespace-only lines are skipped; \r\n reads as \n.
    txt.write_bytes(("\n\n".join(docs[:3]) + "\n   \n" + "\r\n".join(docs[3:]) + "\n").encode())
    jsonl = folder / "corpus.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "body": d}) + "\n" for i, d in enumerate(docs)))
    parquet = folder / "corpus.parquet"
    pq.write_table(pa.table({"id": list(range(len(docs))), "body": docs}), parquet)
    return {"txt": txt, "jsonl": jsonl, "parquet": parquet}


def _expected_rows(model, docs: list[str], seq_len: int) -> list[list[int]]:
    stream: list[int] = []
    for i, doc in enumerate(docs):
        stream += ([model.tokenizer.eos_token_id] if i else []) + _ids(model, doc)
    body = seq_len - 1
    bos = model.tokenizer.bos_token_id
    return [[bos, *stream[i:i + body]] for i in range(0, len(stream) - body + 1, body)]


def test_text_file_tokens_same_rows_for_every_format(model, tmp_path: Path) -> None:
    files = _write_corpus(tmp_path)
    rows = {fmt: text_file_tokens(model, path=str(path), seq_len=8, text_field="body") for fmt, path in files.items()}
    expected = _expected_rows(model, DOCS, 8)
    assert len(expected) >= 8
    for fmt, tokens in rows.items():
        assert tokens.dtype == torch.int64 and tokens.shape == (len(expected), 8), fmt
        assert tokens.tolist() == expected, fmt
    # Explicit format, without BOS: rows of seq_len text tokens.
    plain = text_file_tokens(model, path=str(files["jsonl"]), seq_len=8, format="jsonl", text_field="body",
                             prepend_bos=False)
    assert plain.shape[1] == 8 and not (plain[:, 0] == model.tokenizer.bos_token_id).all()


def test_text_file_tokens_max_sequences(model, tmp_path: Path) -> None:
    files = _write_corpus(tmp_path)
    tokens = text_file_tokens(model, path=str(files["txt"]), seq_len=6, max_sequences=3)
    assert tokens.tolist() == _expected_rows(model, DOCS, 6)[:3]


def test_text_file_tokens_errors_name_their_key(model, bare_model, tmp_path: Path) -> None:
    files = _write_corpus(tmp_path)
    (tmp_path / "notes.md").write_text("the cat\n")
    cases = [
        (dict(path=str(tmp_path / "absent.txt")), "path"),
        (dict(path=str(tmp_path)), "path"),
        (dict(path=str(files["txt"]), format="jsnol"), "format"),
        (dict(path=str(tmp_path / "notes.md")), "format"),
        (dict(path=str(files["jsonl"]), text_field="txt"), "text_field"),
        (dict(path=str(files["parquet"]), text_field="txt"), "text_field"),
        (dict(path=str(files["txt"]), seq_len=65), "seq_len"),
        (dict(path=str(files["txt"]), max_sequences=0), "max_sequences"),
    ]
    for params, key in cases:
        params = {"seq_len": 8, **params}
        with pytest.raises(ConfigError) as excinfo:
            text_file_tokens(model, **params)
        assert _key(excinfo) == key, params
    with pytest.raises(ConfigError) as excinfo:
        text_file_tokens(model, path=str(files["txt"]), seq_len=8, format="jsnol")
    assert excinfo.value.suggestion == "did you mean 'jsonl'?"
    with pytest.raises(ConfigError) as excinfo:
        text_file_tokens(model, path=str(files["jsonl"]), seq_len=8, text_field="bdy")
    assert "id, body" in str(excinfo.value) or "body, id" in str(excinfo.value)
    assert excinfo.value.suggestion == "did you mean 'body'?"
    with pytest.raises(ConfigError) as excinfo:
        text_file_tokens(model, path=str(files["parquet"]), seq_len=8, text_field="txt")
    assert "body" in str(excinfo.value)

    short = tmp_path / "short.txt"
    short.write_text("the cat\nsat\n")  # 3 text tokens + 1 EOS
    with pytest.raises(ConfigError) as excinfo:
        text_file_tokens(model, path=str(short), seq_len=8)
    assert _key(excinfo) == "seq_len" and "expected at least 7 tokens" in str(excinfo.value)
    assert "found 4 (EOS between documents included) in 2 documents" in str(excinfo.value)
    assert text_file_tokens(model, path=str(short), seq_len=5).shape == (1, 5)  # BOS + exactly 4

    with pytest.raises(ConfigError) as excinfo:
        text_file_tokens(bare_model, path=str(files["txt"]), seq_len=8)
    assert _key(excinfo) == "path" and "tokenizer" in str(excinfo.value)


def test_text_file_preflight(tmp_path: Path) -> None:
    files = _write_corpus(tmp_path)
    _preflight(text_file_tokens, {"path": str(files["parquet"]), "seq_len": 8})
    with pytest.raises(ConfigError) as excinfo:
        _preflight(text_file_tokens, {"path": str(tmp_path / "absent.jsonl"), "seq_len": 8})
    assert _key(excinfo) == "path"
    with pytest.raises(ConfigError) as excinfo:
        _preflight(text_file_tokens, {"path": str(files["txt"]), "seq_len": 8, "format": "parket"})
    assert _key(excinfo) == "format" and excinfo.value.suggestion == "did you mean 'parquet'?"


# ---------------------------------------------------------------- hf_dataset_tokens


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hub offline, and an empty datasets cache of this test's own."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cache = tmp_path / "hf_datasets_cache"
    cache.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


@pytest.mark.parametrize("streaming", [True, False])
def test_hf_dataset_tokens_local_json(model, tmp_path: Path, offline: Path, streaming: bool) -> None:
    files = _write_corpus(tmp_path)
    params = dict(name="json", data_files=str(files["jsonl"]), seq_len=8, text_field="body", streaming=streaming)
    _preflight(hf_dataset_tokens, params)
    tokens = hf_dataset_tokens(model, **params)
    assert tokens.dtype == torch.int64
    assert tokens.tolist() == _expected_rows(model, DOCS, 8)
    assert torch.equal(hf_dataset_tokens(model, **{**params, "max_sequences": 2}), tokens[:2])


def test_hf_dataset_tokens_errors(model, tmp_path: Path, offline: Path) -> None:
    files = _write_corpus(tmp_path)
    params = dict(name="parquet", data_files=str(files["parquet"]), seq_len=8, text_field="body")
    with pytest.raises(ConfigError) as excinfo:
        hf_dataset_tokens(model, **{**params, "text_field": "txt"})
    assert _key(excinfo) == "text_field" and "body" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        hf_dataset_tokens(model, **{**params, "split": "validation"})
    assert _key(excinfo) == "split"
    with pytest.raises(ConfigError) as excinfo:
        _preflight(hf_dataset_tokens, {**params, "data_files": str(tmp_path / "absent-*.parquet")})
    assert _key(excinfo) == "data_files"
    with pytest.raises(ConfigError) as excinfo:
        _preflight(hf_dataset_tokens, {"name": "json", "seq_len": 8})
    assert _key(excinfo) == "data_files"


def test_preflight_unreachable_hub_dataset(offline: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _preflight(hf_dataset_tokens, {"name": "someone/tiny-corpus", "seq_len": 8})
    message = str(excinfo.value)
    assert _key(excinfo) == "name"
    assert "someone/tiny-corpus" in message and "HF_DATASETS_OFFLINE=1" in message
    assert "\n" not in message
    assert registered_stages()["hf_dataset_tokens"].preflight is check_hf_dataset_available


def test_preflight_accepts_cached_or_local_dataset(offline: Path, tmp_path: Path) -> None:
    # The layout datasets falls back to offline: <cache>/<owner>___<snake_name>/<config>/<version>/<hash>.
    (offline / "someone___tiny_corpus" / "default" / "0.0.0" / "abc123").mkdir(parents=True)
    _preflight(hf_dataset_tokens, {"name": "someone/TinyCorpus", "seq_len": 8})
    local = tmp_path / "my_dataset"
    local.mkdir()
    _preflight(hf_dataset_tokens, {"name": str(local), "seq_len": 8})
    with pytest.raises(ConfigError) as excinfo:
        _preflight(hf_dataset_tokens, {"name": str(tmp_path / "not" / "there"), "seq_len": 8})
    assert _key(excinfo) == "name"


def test_datasets_offline_flag_overrides_the_hub_flag(monkeypatch: pytest.MonkeyPatch, offline: Path) -> None:
    from interp_pipeline.common import hf_hub_access

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hf_hub_access.datasets_unreachable_reason() == "HF_DATASETS_OFFLINE=1"
    # Set but off: datasets would try the hub, so the probe decides (here: it answers).
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(hf_hub_access, "_hub_probe", lambda: True)
    assert hf_hub_access.datasets_unreachable_reason() is None


# ---------------------------------------------------------------- task_tokens


def test_task_tokens_stage_draws_from_the_task():
    induction = {"name": "induction", "d_vocab": 20, "seq_len": 16, "min_repeat": 2, "max_repeat": 8}
    tokens = task_tokens(None, task=induction, n_sequences=5, seed=1)
    assert tokens.shape == (5, 17) and torch.equal(tokens, task_tokens(None, task=induction, n_sequences=5, seed=1))
    pairs = task_tokens(None, task={"name": "modular_addition", "p": 11}, n_sequences=50, seed=0)
    assert pairs.shape == (50, 3) and len({tuple(p) for p in pairs[:, :2].tolist()}) == 50


def test_stages_registered() -> None:
    load_stage_modules()
    stages = registered_stages()
    for name in ("repeated_tokens", "prompt_tokens", "text_file_tokens", "hf_dataset_tokens"):
        assert stages[name].outputs == ("tokens",)


def test_in_a_pipeline_preflight_names_the_full_key(tmp_path: Path) -> None:
    from interp_pipeline.pipeline.preflight import run_preflight
    from interp_pipeline.pipeline.spec import parse_stages

    load_stage_modules()
    model_params = {"source": "config", "seed": 0, "cfg": {"n_layers": 1, "d_model": 16, "n_ctx": 64,
                                                            "d_head": 8, "n_heads": 2, "d_vocab": 50, "act_fn": "relu"}}
    spec = parse_stages(
        [
            {"name": "model", "fn": "load_model", "params": model_params},
            {"name": "tokens", "fn": "text_file_tokens", "inputs": {"model": "model"},
             "params": {"path": str(tmp_path / "absent.txt"), "seq_len": 8}},
        ],
        name="p", label="p", origins=[{"params": "model"}, {"params": "data.params"}],
    )
    with pytest.raises(ConfigError) as excinfo:
        run_preflight(spec.stages)
    assert str(excinfo.value).startswith("data.params.path: expected an existing file")
