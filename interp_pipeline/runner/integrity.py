"""Content hashes of a stage-cache entry: recorded when it is committed, checked before it is served.

An entry records the SHA-256 of every file in it (outputs and artifacts) and a
digest of its ``complete.json`` record (metrics, tags, the hashes themselves), so
an edited output, an edited metric or a flipped bit makes the entry count as not
cached. Outputs written in place in the key's ``stage_dir`` (an activation store)
can be far bigger than anything worth hashing at every look-up: there the small
files (metadata) are hashed and the big ones only listed with their sizes, which
catches a missing, truncated or replaced file; the content of the big ones must
carry its own checksums (the store's chunks carry CRC32C, checked on every read).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Bumped when what an entry records changes; an entry without it (written before
# entries were hashed) or with another value is not trusted and is recomputed.
INTEGRITY_VERSION = 1
# Files of a stage_dir up to this size are hashed; larger ones are checked by size.
STAGE_DIR_HASH_LIMIT = 64 * 1024
_BLOCK = 1 << 20

# For the benchmark's baseline only (benchmarks/integrity.py): skip the checks on look-up.
SKIP_ENV = "INTERP_PIPELINE_SKIP_CACHE_VERIFY"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def record_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of the record without its own digest, in a canonical JSON form."""
    body = {k: v for k, v in record.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _files(root: Path, exclude: str | None = None) -> dict[str, Path]:
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if relative != exclude:
                found[relative] = path
    return found


def entry_hashes(entry_dir: Path, marker: str) -> dict[str, str]:
    """Every file of an entry being committed but its marker: relative path -> SHA-256."""
    return {name: file_sha256(path) for name, path in sorted(_files(entry_dir, marker).items())}


def stage_dir_listing(stage_dir: Path) -> dict[str, dict[str, Any]]:
    """Every file of a stage_dir: its size, and its SHA-256 when small enough to hash at every look-up."""
    listing: dict[str, dict[str, Any]] = {}
    for name, path in sorted(_files(stage_dir).items()):
        size = path.stat().st_size
        listing[name] = {"size": size, **({"sha256": file_sha256(path)} if size <= STAGE_DIR_HASH_LIMIT else {})}
    return listing


def entry_problem(entry_dir: Path, record: Mapping[str, Any], marker: str) -> tuple[str | None, bool]:
    """Why the entry differs from what was committed (None when it matches), and whether its record holds.

    The second value is False when the record itself cannot be trusted (no hashes, or
    edited): then neither its outputs nor its stage_dir listing can be checked.
    """
    if record.get("integrity") != INTEGRITY_VERSION:
        return "it records no content hashes (written by an older interp_pipeline)", False
    if record.get("digest") != record_digest(record):
        return f"its {marker} was edited (its digest does not match its content)", False
    recorded: Mapping[str, str] = record.get("files", {})
    present = _files(entry_dir, marker)
    added = sorted(set(present) - set(recorded))
    if added:
        return f"file {added[0]} was added after it was written", True
    for name, sha in sorted(recorded.items()):
        if name not in present:
            return f"file {name} is missing", True
        if file_sha256(present[name]) != sha:
            return f"file {name} changed (its SHA-256 does not match)", True
    return None, True


def stage_dir_problem(stage_dir: Path, listing: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the stage_dir's files differ from the listing recorded with the entry; None when they match.

    Files added since are not a problem (a zarr write interrupted later leaves only
    temporary files, which the writer removes when it resumes).
    """
    for name, info in sorted(listing.items()):
        path = stage_dir / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{stage_dir.name}/{name} is missing"
        if size != info["size"]:
            return f"{stage_dir.name}/{name} changed size ({info['size']} -> {size} bytes)"
        if "sha256" in info and file_sha256(path) != info["sha256"]:
            return f"{stage_dir.name}/{name} changed (its SHA-256 does not match)"
    return None
