"""Where models and SAEs go: ``auto`` is cuda when present, else cpu (every ``device`` key means this)."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
