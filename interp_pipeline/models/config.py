"""The settings of the load_model stage (the ``model`` group) and of the token datasets drawn from a
model's vocabulary (random_tokens, repeated_tokens; their params come through a ``data`` group)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import MISSING, SI

from interp_pipeline.config.fields import at_least, choice, positive
from interp_pipeline.training.config import TrainConfig

DTYPES = ("float32", "float16", "bfloat16", "float64")
# The keys each source reads; setting another source's key is a mistake worth reporting
# (interp_pipeline.models.loading.check_model_settings).
SOURCE_KEYS = {
    "tl": ("name", "revision", "n_devices"),
    "hf": ("name_or_path", "revision", "n_devices"),
    "config": ("cfg",),
    "trained": ("cfg", "train"),
    "saved": ("path",),
}


@dataclass
class ModelConfig:
    """A model from one of five sources (interp_pipeline.models.loading).

    tl: a TransformerLens name (HookedTransformer.from_pretrained); hf: a hub id or local
    directory (TransformerBridge); config: built from ``cfg``, random init; trained: built
    from ``cfg`` and trained on ``train.task``, stored in the stage cache; saved: a
    directory this pipeline saved (safetensors + config.json).
    """

    source: str = choice("config", tuple(SOURCE_KEYS))
    name: Optional[str] = None  # tl
    name_or_path: Optional[str] = None  # hf
    path: Optional[str] = None  # saved
    revision: Optional[str] = None  # tl, hf
    # tl, hf: a model too large for one GPU, its layers split over this many (TransformerLens's
    # n_devices; a Bridge turns it into a Hugging Face device_map). None: all on ``device``.
    n_devices: Optional[int] = positive(None)
    cfg: Dict[str, Any] = field(default_factory=dict)  # config, trained: HookedTransformerConfig fields
    train: Optional[TrainConfig] = None  # trained
    seed: int = SI("${seed}")
    device: str = "auto"  # auto: cuda when present, else cpu
    dtype: str = choice("float32", DTYPES)
    # TransformerLens's weight processing (tl), as from_pretrained names them
    fold_ln: bool = True
    center_writing_weights: bool = True
    center_unembed: bool = True
    fold_value_biases: bool = True
    compatibility_mode: bool = True  # hf: HookedTransformer hook names and numerics


@dataclass
class RandomTokensConfig:
    """Uniform random token ids (the random_tokens stage)."""

    n_sequences: int = positive(MISSING)
    seq_len: int = positive(MISSING)
    seed: int = SI("${seed}")
    d_vocab: Optional[int] = positive(None)  # draw below this id; None: the model's vocabulary size


@dataclass
class RepeatedTokensConfig:
    """The induction probe [BOS] + r + r (the repeated_tokens stage)."""

    n_sequences: int = positive(MISSING)
    half_len: int = positive(MISSING)  # the length of r
    seed: int = at_least(0, SI("${seed}"))
    prepend_bos: bool = True
