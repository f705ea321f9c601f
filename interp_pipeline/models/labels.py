"""How a model is named in figure titles and page headers."""

from __future__ import annotations

from typing import Any


def model_label(model: Any) -> str:
    """The model's name for titles: TransformerLens's ``cfg.model_name`` ("custom" for toy models,
    then its size instead)."""
    name = getattr(model.cfg, "model_name", None)
    if name and name != "custom":
        return str(name)
    return f"{model.cfg.n_layers}-layer model (d_model {model.cfg.d_model})"
