"""Documents from local text files: txt (a document a line), jsonl (a field of each record),
parquet (a column), read lazily so packing stops reading when it has its rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.text.config import FORMATS

SUFFIX_FORMATS = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".parquet": "parquet", ".pq": "parquet"}


def resolve_text_file(path: str, format: str) -> tuple[Path, str]:
    """The file and its format (one of FORMATS; ``auto`` read from the suffix); ConfigError naming the key otherwise."""
    if not path:
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
            yield text_value(record[text_field], f"line {number} of '{file}'")


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
            yield text_value(value, f"'{file}'")


def text_value(value: Any, where: str) -> str:
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


def read_documents(file: Path, format: str, text_field: str) -> Iterator[str]:
    """The documents of ``file`` in ``format`` (resolved, not "auto"); undecodable bytes are a ConfigError."""
    if format == "txt":
        documents = _txt_documents(file)
    elif format == "jsonl":
        documents = _jsonl_documents(file, text_field)
    else:
        documents = _parquet_documents(file, text_field)
    return _decoded(documents, file, format)
