"""Stage cache keys: a hash of what a stage's result depends on, and nothing else.

A key covers the stage function (name and declared version), its resolved params,
the keys of the outputs it reads, and the versions of the libraries whose numerics
matter. An unrelated config value (another stage's params, tracking.uri, the
output directory) does not enter it, so changing one recomputes only what it feeds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from importlib import metadata
from typing import Any

KEY_LIBRARIES = ("interp_pipeline", "torch", "transformer_lens", "sae_lens")


def library_versions(names: tuple[str, ...] = KEY_LIBRARIES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _canonical(value: Any) -> Any:
    # JSON cannot say NaN or inf, and 1 vs 1.0 must not split keys needlessly.
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return repr(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"cannot hash a parameter of type {type(value).__name__}: {value!r}")


def stage_cache_key(
    fn_name: str,
    fn_version: int,
    params: Mapping[str, Any],
    input_keys: Mapping[str, str],
    versions: Mapping[str, str],
) -> str:
    payload = {
        "fn": fn_name,
        "fn_version": fn_version,
        "params": _canonical(params),
        "inputs": dict(sorted(input_keys.items())),
        "versions": dict(sorted(versions.items())),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
