"""Stage outputs that are datasets (token ids, activation stores), described for ``mlflow.log_input``.

They are described from the stage-cache entry that holds them, never from the
values: the entry already records what identifies them (runner/integrity.py), so
a digest costs no pass over the data. Token ids: the SHA-256 of their safetensors
file. An activation store: the SHA-256 of its stage_dir listing (every file's size,
and the SHA-256 of its metadata and other small files; the chunks' content is
covered by their own CRC32C, activations/checksums.py), or of the output record
for a store written outside the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIGEST_CHARS = 16  # MLflow stores at most 36; 64 bits tell datasets apart well enough
_TOKEN_DTYPES = {"I64": "int64", "I32": "int32", "I16": "int16", "U16": "uint16", "U8": "uint8", "I8": "int8"}


@dataclass(frozen=True)
class DatasetRecord:
    name: str  # "<stage>.<output>"
    digest: str
    source: str  # a file:// URI or the store's URL
    kind: str  # "tokens" or "activations"
    profile: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] | None = None


def _tokens(name: str, path: Path, sha256: str) -> DatasetRecord | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        if "tensor" not in handle.keys():
            return None
        piece = handle.get_slice("tensor")
        dtype, shape = piece.get_dtype(), list(piece.get_shape())
    if dtype not in _TOKEN_DTYPES or len(shape) != 2:
        return None  # only [sequence, position] integer ids are token datasets
    spec = {"type": "tensor", "tensor-spec": {"dtype": _TOKEN_DTYPES[dtype], "shape": [-1, shape[1]]}}
    schema = {"mlflow_tensorspec": {"features": json.dumps([spec]), "targets": None}}
    return DatasetRecord(name, sha256[:DIGEST_CHARS], path.resolve().as_uri(), "tokens",
                         {"sequences": shape[0], "positions": shape[1], "tokens": shape[0] * shape[1]}, schema)


def _store(name: str, path: Path, record: Mapping[str, Any]) -> DatasetRecord | None:
    if path.stat().st_size > 1_000_000:
        return None
    value = json.loads(path.read_text())
    if not isinstance(value, Mapping) or "store_uri" not in value:
        return None
    listing = record.get("stage_dir") or {"output": record.get("files", {}).get(path.name)}
    digest = hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
    uri = str(value["store_uri"])
    source = Path(uri).resolve().as_uri() if "://" not in uri else uri
    profile = {k: value[k] for k in ("n_rows", "hooks") if k in value}
    return DatasetRecord(name, digest[:DIGEST_CHARS], source, "activations", profile)


def entry_datasets(stage: str, entry_path: Path, record: Mapping[str, Any]) -> dict[str, DatasetRecord]:
    """The outputs of a cache entry that are datasets, by output name."""
    found: dict[str, DatasetRecord] = {}
    hashes: Mapping[str, str] = record.get("files", {})
    for output, info in record.get("outputs", {}).items():
        path = entry_path / info["file"]
        name = f"{stage}.{output}"
        dataset = None
        if info["codec"] == "tensor" and info["file"] in hashes:
            dataset = _tokens(name, path, hashes[info["file"]])
        elif info["codec"] == "json":
            dataset = _store(name, path, record)
        if dataset is not None:
            found[output] = dataset
    return found
