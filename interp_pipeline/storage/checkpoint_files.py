"""Reading a checkpoint's files, where a bad file is one line naming it and what to delete.

A truncated file, a stranger's file, or a pickle holding more than tensors and plain
containers (refused by ``torch.load(weights_only=True)``) would otherwise surface as
torch's paragraph, which ends by suggesting ``weights_only=False``: the one thing not
to do with a file that may have been tampered with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The framing lines of torch's weights-only refusal; what remains says what was refused.
_TORCH_FRAMING = ("Weights only load failed", "Please file an issue", "Check the documentation")


class CorruptCheckpoint(Exception):
    """A checkpoint file cannot be read; the message names it and the checkpoint to delete."""

    def __init__(self, path: Path, checkpoint: Path, reason: str):
        self.path = path
        super().__init__(f"checkpoint file {path} cannot be loaded ({reason}); delete {checkpoint} to start over")


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(_TORCH_FRAMING)]
    text = (kept or lines or [type(error).__name__])[0]
    return text.split(". ")[0].rstrip(".")


def torch_state(path: Path, checkpoint: Path, **load_kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True)``; CorruptCheckpoint when the file is missing, cut short or refused."""
    import torch

    try:
        return torch.load(path, weights_only=True, **load_kwargs)
    except Exception as error:
        raise CorruptCheckpoint(path, checkpoint, _reason(error)) from error


def safetensors_state(path: Path, checkpoint: Path, device: str = "cpu") -> dict[str, Any]:
    """``safetensors.torch.load_file``; CorruptCheckpoint when the file is missing or unreadable."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except Exception as error:
        raise CorruptCheckpoint(path, checkpoint, _reason(error)) from error


def json_record(path: Path, checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's JSON manifest; CorruptCheckpoint when it is not a JSON object."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CorruptCheckpoint(path, checkpoint, _reason(error)) from error
    if not isinstance(record, dict):
        raise CorruptCheckpoint(path, checkpoint, f"expected a JSON object, found {type(record).__name__}")
    return record
