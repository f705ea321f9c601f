"""The stage-cache codec for trained SAEs: a directory that ``SAE.load_from_disk`` reads.

SAELens's own format (``cfg.json`` and ``sae_weights.safetensors``), so a cached
SAE can be loaded without this package: ``SAE.load_from_disk(path)``. Only
inference SAEs are stored; the training stage converts (BatchTopK becomes
JumpReLU, as SAELens's own runner saves it). Several SAEs by name (trained in one
pass) are one such directory per name, and ``names.json`` keeping their order.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from interp_pipeline.common.devices import resolve_device
from interp_pipeline.storage.cache_codecs import Codec, register_codec


def _is_inference_sae(value: Any) -> bool:
    # sys.modules first: registering the codec must not import SAELens.
    saes = sys.modules.get("sae_lens.saes.sae")
    return saes is not None and isinstance(value, saes.SAE) and not isinstance(value, saes.TrainingSAE)


def save_sae(sae: Any, directory: Path) -> None:
    sae.save_model(str(directory))


def load_sae(directory: Path, device: str = "auto") -> Any:
    from sae_lens import SAE

    return SAE.load_from_disk(str(directory), device=resolve_device(device))


def to_inference(training_sae: Any, directory: Path, device: str = "cpu") -> Any:
    """Save ``training_sae`` as SAELens saves a finished SAE, and load it back from there."""
    from sae_lens import SAE

    training_sae.save_inference_model(str(directory))
    return SAE.load_from_disk(str(directory), device=device)


def _is_named_saes(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and _is_inference_sae(v) for k, v in value.items())


def save_saes(saes: Mapping[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, sae in enumerate(saes.values()):
        save_sae(sae, directory / str(index))  # names may hold characters a path should not
    (directory / "names.json").write_text(json.dumps(list(saes)))


def load_saes(directory: Path) -> dict[str, Any]:
    names = json.loads((directory / "names.json").read_text())
    return {name: load_sae(directory / str(index)) for index, name in enumerate(names)}


register_codec(Codec("sae_lens_sae", "", _is_inference_sae, save_sae, load_sae))
register_codec(Codec("sae_lens_saes", "", _is_named_saes, save_saes, load_saes))
