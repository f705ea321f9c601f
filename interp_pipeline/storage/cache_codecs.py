"""How stage outputs are written to and read from the stage cache, chosen by the value's type.

Nothing is pickled: tensors go to safetensors, arrays to ``.npy`` without pickle,
plain data to JSON. Modules listed under the ``interp_pipeline.codecs`` entry points
(interp_pipeline.common.plugins) register codecs for their own types (models, SAEs, labelled
arrays) with :func:`register_codec`; they are imported before any codec is looked up.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp_pipeline.common.plugins import load_plugins


@dataclass(frozen=True)
class Codec:
    name: str
    suffix: str
    accepts: Callable[[Any], bool]
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Any]


_CODECS: list[Codec] = []


def register_codec(codec: Codec) -> None:
    """Add a codec; later registrations are tried first, so specific types win over general ones."""
    _CODECS.insert(0, codec)


def codec_for(value: Any) -> Codec:
    load_plugins("codecs")
    for codec in _CODECS:
        if codec.accepts(value):
            return codec
    raise TypeError(
        f"no codec stores a {type(value).__module__}.{type(value).__qualname__}; "
        "register one (interp_pipeline.storage.cache_codecs.register_codec) or declare the stage cache=False"
    )


def codec_named(name: str) -> Codec:
    load_plugins("codecs")
    for codec in _CODECS:
        if codec.name == name:
            return codec
    raise KeyError(f"unknown codec {name!r}")


def _is_tensor(value: Any) -> bool:
    # Checking sys.modules first keeps torch unimported for stages that never touch it.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _save_tensor(value: Any, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"tensor": value.detach().cpu().contiguous()}, str(path))


def _load_tensor(path: Path) -> Any:
    from safetensors.torch import load_file

    return load_file(str(path))["tensor"]


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and _is_tensor(v) for k, v in value.items()
    )


def _save_tensor_dict(value: Mapping[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in value.items()}, str(path))


def _load_tensor_dict(path: Path) -> Any:
    from safetensors.torch import load_file

    return load_file(str(path))


def _is_ndarray(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray) and value.dtype != object


def _save_ndarray(value: Any, path: Path) -> None:
    import numpy as np

    with open(path, "wb") as handle:
        np.save(handle, value, allow_pickle=False)


def _load_ndarray(path: Path) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


def _save_json(value: Any, path: Path) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True))


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


for _codec in (
    Codec("json", ".json", _is_json, _save_json, _load_json),
    Codec("ndarray", ".npy", _is_ndarray, _save_ndarray, _load_ndarray),
    Codec("tensors", ".safetensors", _is_tensor_dict, _save_tensor_dict, _load_tensor_dict),
    Codec("tensor", ".safetensors", _is_tensor, _save_tensor, _load_tensor),
):
    register_codec(_codec)
