"""The stage-cache codec for trained SAEs: a directory that ``SAE.load_from_disk`` reads.

SAELens's own format (``cfg.json`` and ``sae_weights.safetensors``), so a cached
SAE can be loaded without this package: ``SAE.load_from_disk(path)``. Only
inference SAEs are stored; the training stage converts (BatchTopK becomes
JumpReLU, as SAELens's own runner saves it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from interp_pipeline.runner.codecs import Codec, register_codec


def _is_inference_sae(value: Any) -> bool:
    # sys.modules first: registering the codec must not import SAELens.
    saes = sys.modules.get("sae_lens.saes.sae")
    return saes is not None and isinstance(value, saes.SAE) and not isinstance(value, saes.TrainingSAE)


def save_sae(sae: Any, directory: Path) -> None:
    sae.save_model(str(directory))


def load_sae(directory: Path, device: str = "auto") -> Any:
    import torch
    from sae_lens import SAE

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return SAE.load_from_disk(str(directory), device=device)


def to_inference(training_sae: Any, directory: Path, device: str = "cpu") -> Any:
    """Save ``training_sae`` as SAELens saves a finished SAE, and load it back from there."""
    from sae_lens import SAE

    training_sae.save_inference_model(str(directory))
    return SAE.load_from_disk(str(directory), device=device)


register_codec(Codec("sae_lens_sae", "", _is_inference_sae, save_sae, load_sae))
