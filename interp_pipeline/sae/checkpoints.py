"""SAE training checkpoints in the stage's ``workdir``: complete or invisible, finite, and for one config.

A checkpoint is a directory ``step-NNNNNNNNN`` holding the training SAE's raw
parameters (``sae_weights.safetensors``, as the SAE holds them: no folding), the
trainer's state (``trainer_state.pt``: step and sample counts, Adam's moments, the
learning-rate and coefficient schedules, the feature-firing statistics, the
activation scaler, the data position and torch's RNG state; tensors, numbers and
plain containers only, so it loads with ``torch.load(weights_only=True)``) and,
written last, ``checkpoint.json`` (step, loss, and the identity of the run it
belongs to). A file that cannot be read (cut short, or holding more than those)
stops the run with one line naming it and the checkpoint to delete. It is built in a hidden temporary directory, fsynced and renamed into
place, so a kill -9 leaves at worst a temporary directory that nobody reads.
Before anything is written the loss and every weight are checked: a checkpoint
holding NaN or infinity is never written, so it can never become the latest.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp_pipeline.storage.checkpoint_files import CorruptCheckpoint, json_record, safetensors_state, torch_state
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.storage.atomic_dirs import publish, remove_abandoned, temporary_for

PREFIX, MANIFEST = "step-", "checkpoint.json"
WEIGHTS, STATE = "sae_weights.safetensors", "trainer_state.pt"


class NonFiniteCheckpoint(FloatingPointError):
    """The loss or a weight is NaN or infinite: the checkpoint is refused."""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    manifest: Mapping[str, Any]


def latest(workdir: Path) -> Checkpoint | None:
    """The newest complete checkpoint in ``workdir`` (one whose manifest is there), or None."""
    found = []
    for path in Path(workdir).glob(f"{PREFIX}*"):
        manifest = path / MANIFEST
        if path.is_dir() and manifest.is_file():
            record = json_record(manifest, path)
            if record.get("finite") is True:
                if not str(record.get("step")).isdigit():
                    raise CorruptCheckpoint(manifest, path, f"expected a step number, found {record.get('step')!r}")
                found.append(Checkpoint(int(record["step"]), path, record))
    return max(found, key=lambda c: c.step, default=None)


def check_identity(checkpoint: Checkpoint, identity: Mapping[str, Any]) -> None:
    """ConfigError naming every setting this run and the checkpoint's run disagree on (the first is the key)."""
    written = checkpoint.manifest.get("identity", {})
    # JSON round trip, so tuples and lists, ints and floats compare as they were stored.
    current = json.loads(json.dumps(dict(identity), default=str))
    differ = [key for key in sorted(set(written) | set(current)) if written.get(key) != current.get(key)]
    if not differ:
        return
    details = ", ".join(f"{key}={written.get(key)!r} there, {current.get(key)!r} here" for key in differ)
    raise ConfigError(
        differ[0],
        f"expected the settings of the checkpoint being resumed ({checkpoint.path}, step {checkpoint.step}), "
        f"found {details}",
        suggestion=f"run with the checkpoint's settings to resume it, or delete {checkpoint.path.parent} to start over",
    )


def _non_finite(state: Mapping[str, Any]) -> list[str]:
    import torch

    return [name for name, tensor in state.items() if not bool(torch.isfinite(tensor).all())]


def save(workdir: Path, step: int, loss: float, weights: Mapping[str, Any], trainer_state: Mapping[str, Any],
         identity: Mapping[str, Any]) -> Path:
    """Write checkpoint ``step`` atomically and drop older ones; NonFiniteCheckpoint (nothing written) on NaN."""
    import torch
    from safetensors.torch import save_file

    bad = _non_finite(weights)
    if not math.isfinite(loss) or bad:
        what = f"the loss is {loss}" if not math.isfinite(loss) else f"{', '.join(bad)} hold NaN or infinity"
        raise NonFiniteCheckpoint(f"SAE training stopped at step {step}: {what}; the last good checkpoint is kept; "
                                  "lower sae.lr, or rescale the activations "
                                  "(sae.normalize_activations=expected_average_only_in)")
    workdir = Path(workdir)
    final = workdir / f"{PREFIX}{step:09d}"
    temporary = temporary_for(final)
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(temporary / WEIGHTS))
    torch.save(dict(trainer_state), temporary / STATE)
    manifest = {"step": step, "loss": loss, "finite": True, "identity": dict(identity)}
    (temporary / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    publish(temporary, final)  # replaces the same step's (a resumed run that died before its next checkpoint)
    for other in workdir.iterdir():
        if other != final and other.name.startswith(PREFIX):
            shutil.rmtree(other, ignore_errors=True)
    remove_abandoned(workdir)
    return final


def load(checkpoint: Checkpoint, device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(weights, trainer state) of ``checkpoint``; nothing but tensors and plain containers is unpickled.

    CorruptCheckpoint, naming the file, when one is cut short or holds anything else.
    """
    weights = safetensors_state(checkpoint.path / WEIGHTS, checkpoint.path, device=str(device))
    state = torch_state(checkpoint.path / STATE, checkpoint.path, map_location=device)
    return weights, state
