"""Token datasets from text: local files (txt, jsonl, parquet) and Hugging Face datasets.

Packing: each document is tokenized without special tokens, documents are joined
with EOS between them, and the stream is cut into rows of ``seq_len`` tokens, BOS
first when ``prepend_bos`` (so seq_len - 1 text tokens a row); the final partial row
is dropped. Both stages take the model first, for its tokenizer, and return
``tokens``: an int64 CPU tensor of shape [batch, pos].

The stage cache keys on params, not on file or dataset contents: after editing a
file in place, rerun with ``runner.force``.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.hf_hub_access import datasets_unreachable_reason
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.progress import progress
from interp_pipeline.shapes import TokensShape
from interp_pipeline.config.ranges import require_int
from interp_pipeline.models.tokens import as_tokens, bos_id, check_fits_context, require_tokenizer
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

FORMATS = ("auto", "jsonl", "parquet", "txt")
SUFFIX_FORMATS = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".parquet": "parquet", ".pq": "parquet"}
_TOKENIZE_BATCH = 64  # documents per tokenizer call: fast batches, early stop stays cheap


# ---------------------------------------------------------------- packing (shared)


@dataclass
class _PackCounts:
    documents: int = 0
    tokens: int = 0  # in the joined stream, separators included


def _packed_rows(texts: Iterable[str], tokenizer: Any, body_len: int, counts: _PackCounts) -> Iterator[list[int]]:
    """Rows of ``body_len`` tokens from the documents joined by EOS; the partial tail is dropped.

    Documents that are empty or only whitespace are skipped (so no EOS pair appears).
    """
    separator = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    if separator is None:
        raise ValueError("the tokenizer has no EOS (nor BOS) token to put between documents")
    buffer: list[int] = []
    texts = (t for t in texts if t.strip())
    while batch := list(itertools.islice(texts, _TOKENIZE_BATCH)):
        # verbose=False: long documents are expected, the model-length warning is noise here.
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            if not ids:
                continue
            if counts.documents:
                buffer.append(separator)
                counts.tokens += 1
            buffer.extend(ids)
            counts.documents += 1
            counts.tokens += len(ids)
        n_full = len(buffer) // body_len
        for i in range(n_full):
            yield buffer[i * body_len:(i + 1) * body_len]
        del buffer[:n_full * body_len]


def pack_documents(
    model: HookedTransformer,
    texts: Iterable[str],
    seq_len: int,
    max_sequences: int | None,
    prepend_bos: bool,
    source: str,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "batch pos"]:
    """Tokenize and pack ``texts`` (see the module docstring); stops reading at max_sequences rows."""
    tokenizer = model.tokenizer
    body_len = seq_len - 1 if prepend_bos else seq_len
    prefix = [bos_id(model)] if prepend_bos else []
    counts = _PackCounts()
    rows = itertools.islice(_packed_rows(texts, tokenizer, body_len, counts), max_sequences)
    packed = [prefix + row for row in progress(rows, desc=f"packing {source}", total=max_sequences, unit="seq")]
    if not packed:
        with_bos = " with BOS" if prepend_bos else ""
        raise ConfigError("seq_len", f"expected at least {body_len} tokens from {source} for one row of "
                                     f"seq_len={seq_len}{with_bos}, found {counts.tokens} (EOS between "
                                     f"documents included) in {counts.documents} documents",
                          suggestion="lower seq_len or give more text")
    tokens = as_tokens(packed, model)
    tracker.log_metrics({"n_sequences": len(packed), "seq_len": seq_len, "n_documents": counts.documents,
                         "n_tokens_read": counts.tokens})
    return tokens


def _check_packing(model: HookedTransformer, seq_len: int, max_sequences: int | None, prepend_bos: bool) -> None:
    require_int({"seq_len": seq_len}, "seq_len", minimum=2 if prepend_bos else 1)
    require_int({"max_sequences": max_sequences}, "max_sequences", optional=True)
    check_fits_context(model, seq_len, "seq_len")


# ---------------------------------------------------------------- local text files


def resolve_text_file(path: Any, format: Any) -> tuple[Path, str]:
    """The file and its format (``auto`` read from the suffix); ConfigError naming the key otherwise."""
    if format not in FORMATS:
        raise ConfigError("format", f"expected one of {one_of(FORMATS)}, found '{format}'",
                          suggestion=did_you_mean(str(format), FORMATS))
    if not isinstance(path, str) or not path:
        raise ConfigError("path", f"expected a file path, found {path!r}")
    file = Path(path).expanduser()
    if not file.exists():
        raise ConfigError("path", f"expected an existing file, found no file at '{path}' (from {Path.cwd()})")
    if not file.is_file():
        raise ConfigError("path", f"expected a file, found a directory at '{path}'")
    if format == "auto":
        format = SUFFIX_FORMATS.get(file.suffix.lower())
        if format is None:
            raise ConfigError("format", f"cannot tell the format of '{file.name}' from its suffix; "
                                        f"expected one of {one_of(FORMATS[1:])}")
    return file, format


def _check_text_file_params(params: dict[str, Any]) -> None:
    resolve_text_file(params.get("path"), params.get("format", "auto"))
    require_int(params, "seq_len", minimum=2 if params.get("prepend_bos", True) else 1)
    require_int(params, "max_sequences", optional=True)


def _txt_documents(file: Path) -> Iterator[str]:
    with file.open(encoding="utf-8") as handle:  # universal newlines: \r\n reads as \n
        for line in handle:
            yield line.removesuffix("\n")


def _jsonl_documents(file: Path, text_field: str) -> Iterator[str]:
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError("path", f"expected one JSON object a line in '{file}', "
                                          f"found invalid JSON at line {number} ({error.msg})") from None
            if not isinstance(record, dict):
                raise ConfigError("path", f"expected one JSON object a line in '{file}', "
                                          f"found a {type(record).__name__} at line {number}")
            if text_field not in record:
                raise ConfigError("text_field", f"expected a field of the records in '{file}', found '{text_field}' "
                                                f"missing at line {number} (fields: {one_of(record)})",
                                  suggestion=did_you_mean(text_field, record))
            yield _text_value(record[text_field], f"line {number} of '{file}'")


def _parquet_documents(file: Path, text_field: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except pa.ArrowInvalid as error:
        raise ConfigError("path", f"expected a parquet file at '{file}', found none readable ({error})") from None
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise ConfigError("text_field", f"expected a column of '{file}', found '{text_field}' "
                                        f"(columns: {one_of(names)})", suggestion=did_you_mean(text_field, names))
    for batch in parquet.iter_batches(batch_size=1024, columns=[text_field]):
        for value in batch.column(0).to_pylist():
            yield _text_value(value, f"'{file}'")


def _text_value(value: Any, where: str) -> str:
    if value is None:  # a missing value is an empty document, skipped
        return ""
    if not isinstance(value, str):
        raise ConfigError("text_field", f"expected text in {where}, found a {type(value).__name__}")
    return value


def _decoded(documents: Iterator[str], file: Path, format: str) -> Iterator[str]:
    try:
        yield from documents
    except UnicodeDecodeError:
        raise ConfigError("path", f"expected UTF-8 text in '{file}' (format {format}), found other bytes") from None


def _packed_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> TokensShape:
    return TokensShape(params.get("max_sequences"), params.get("seq_len"))  # at most max_sequences rows


PACKED_METRICS = ("n_sequences", "seq_len", "n_documents", "n_tokens_read")


def _check_packed_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    if inputs.get("model") is not None:
        inputs["model"].check_fits_context("seq_len", params.get("seq_len"))


@stage("text_file_tokens", outputs=("tokens",), preflight=_check_text_file_params, shape=_packed_shape,
       check_shapes=_check_packed_shapes, metrics=PACKED_METRICS)
def text_file_tokens(
    model: HookedTransformer,
    path: str,
    seq_len: int,
    format: str = "auto",
    text_field: str = "text",
    max_sequences: int | None = None,
    prepend_bos: bool = True,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "batch pos"]:
    """Packed rows of ``seq_len`` tokens from a local file.

    txt: one document a line, blank lines skipped; jsonl: ``text_field`` of each
    record; parquet: the ``text_field`` column. ``format: auto`` goes by the suffix
    (.txt/.text, .jsonl/.ndjson, .parquet/.pq). A relative path is from the
    directory the run was started in.
    """
    file, format = resolve_text_file(path, format)
    require_tokenizer(model, "path")
    _check_packing(model, seq_len, max_sequences, prepend_bos)
    if format == "txt":
        documents = _txt_documents(file)
    elif format == "jsonl":
        documents = _jsonl_documents(file, text_field)
    else:
        documents = _parquet_documents(file, text_field)
    return pack_documents(model, _decoded(documents, file, format), seq_len, max_sequences, prepend_bos,
                          file.name, tracker)


# ---------------------------------------------------------------- Hugging Face datasets


def _in_datasets_cache(repo_id: str) -> bool:
    """Whether datasets' own offline fallback would find ``repo_id`` (its cache layout, mirrored)."""
    from datasets import config
    from datasets.naming import camelcase_to_snakecase

    parts = repo_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = Path(config.HF_DATASETS_CACHE).expanduser() / "___".join(parts)
    return any(p.is_dir() for p in root.glob("*/*/*"))


def _missing_data_file(data_files: Any) -> str | None:
    """The first local data file (or glob pattern) that matches nothing; URLs are not checked."""
    if isinstance(data_files, dict):  # split -> files
        entries = [f for v in data_files.values() for f in ([v] if isinstance(v, str) else v)]
    else:
        entries = [data_files] if isinstance(data_files, str) else list(data_files)
    for entry in map(str, entries):
        local = os.path.expanduser(entry)
        if "://" not in entry and not os.path.exists(local) and not glob.glob(local, recursive=True):
            return entry
    return None


def check_hf_dataset_available(params: dict[str, Any]) -> None:
    """Pre-flight: the dataset is a local path, a builder over local files, in the local
    datasets cache, or the hub is reachable. Else one ConfigError line naming it."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"expected a dataset id or a local path, found {name!r}")
    data_files = params.get("data_files")
    if name in _PACKAGED_DATASETS_MODULES:  # json, parquet, text, csv...: reads data_files
        if not data_files:
            raise ConfigError("data_files", f"expected the files for the '{name}' builder, found none")
        missing = _missing_data_file(data_files)
        if missing is not None:
            raise ConfigError("data_files", f"expected existing files, found nothing at '{missing}' (from {Path.cwd()})")
        return
    if Path(name).expanduser().exists():
        return
    repo_id = name.removeprefix("hf://datasets/")
    if repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1:
        raise ConfigError("name", f"expected a local path or a hub dataset id (owner/name), found '{name}' "
                                  f"(no such file or directory)")
    if _in_datasets_cache(repo_id):
        return
    reason = datasets_unreachable_reason()
    if reason is not None:
        raise ConfigError("name", f"dataset '{name}' is neither a local path nor in the local Hugging Face "
                                  f"datasets cache, and the hub is unreachable ({reason})",
                          suggestion="load it once where the hub is reachable, or give a local path")


def _dataset_texts(dataset: Any, text_field: str, name: str) -> Iterator[str]:
    columns = dataset.column_names  # None for some streaming datasets: then the first record tells
    if columns is not None:
        if text_field not in columns:
            raise ConfigError("text_field", f"expected a column of dataset '{name}', found '{text_field}' "
                                            f"(columns: {one_of(columns)})", suggestion=did_you_mean(text_field, columns))
        dataset = dataset.select_columns([text_field])  # skip decoding other columns (images, audio)
    for number, record in enumerate(dataset):
        if text_field not in record:
            raise ConfigError("text_field", f"expected a field of dataset '{name}', found '{text_field}' "
                                            f"(fields: {one_of(record)})", suggestion=did_you_mean(text_field, record))
        yield _text_value(record[text_field], f"record {number} of dataset '{name}'")


def _load_dataset(name: str, config_name: str | None, split: str, streaming: bool, data_files: Any) -> Any:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        return datasets.load_dataset(name, config_name, split=split, streaming=streaming, data_files=data_files)
    except DatasetNotFoundError as error:
        raise ConfigError("name", f"expected an accessible dataset, found '{name}' ({error})") from None
    except ConnectionError as error:  # pre-flight catches most; the hub can also drop mid-run
        raise ConfigError("name", str(error)) from None
    except FileNotFoundError as error:  # data files or a local path gone since pre-flight
        raise ConfigError("data_files" if data_files else "name", str(error).split("\n", 1)[0]) from None
    except ValueError as error:
        # datasets says which key is wrong only in its message; its first lines say it in full.
        lines = [line.strip() for line in str(error).splitlines()]
        if lines[0].startswith(("Bad split", "Unknown split")):
            raise ConfigError("split", lines[0]) from None
        if lines[0].startswith(("Config name is missing", "BuilderConfig '")):
            raise ConfigError("config_name", " ".join(lines[:2])) from None
        raise


@stage("hf_dataset_tokens", outputs=("tokens",), preflight=check_hf_dataset_available, shape=_packed_shape,
       check_shapes=_check_packed_shapes, metrics=PACKED_METRICS)
def hf_dataset_tokens(
    model: HookedTransformer,
    name: str,
    seq_len: int,
    split: str = "train",
    text_field: str = "text",
    config_name: str | None = None,
    max_sequences: int = 1000,
    streaming: bool = True,
    prepend_bos: bool = True,
    data_files: str | list[str] | dict[str, str | list[str]] | None = None,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "batch pos"]:
    """Packed rows of ``seq_len`` tokens from ``datasets.load_dataset(name, config_name, split=...)``.

    Reads records in the dataset's order (no shuffle) until ``max_sequences`` rows are
    full; with ``streaming`` nothing beyond that is downloaded. ``data_files`` is
    passed through, e.g. ``name: json`` with ``data_files: corpus.jsonl``.
    """
    require_tokenizer(model, "name")
    _check_packing(model, seq_len, max_sequences, prepend_bos)
    dataset = _load_dataset(name, config_name, split, streaming, data_files)
    return pack_documents(model, _dataset_texts(dataset, text_field, name), seq_len, max_sequences, prepend_bos,
                          name, tracker)
