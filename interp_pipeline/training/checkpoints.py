"""Training checkpoints that a killed run resumes from, never half-written.

Weights and the data generator's state go to safetensors; the optimizer state
(nested dicts of tensors and numbers) goes through ``torch.save`` and comes back
with ``torch.load(weights_only=True)``, which refuses anything but tensors and
plain containers, so nothing arbitrary is unpickled; a file it refuses, or one cut
short, stops the run with one line naming it and the checkpoint to delete. A
checkpoint is written to a temporary directory and renamed into place; the newest
complete one wins.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp_pipeline.storage.atomic_dirs import publish, remove_abandoned, temporary_for
from interp_pipeline.storage.checkpoint_files import json_record, safetensors_state, torch_state

PREFIX, DONE = "step-", "done.json"


@dataclass
class Checkpoint:
    step: int
    path: Path


def latest(workdir: Path) -> Checkpoint | None:
    found = []
    for path in workdir.glob(f"{PREFIX}*"):
        if (path / DONE).is_file():
            found.append(Checkpoint(int(path.name[len(PREFIX):]), path))
    return max(found, key=lambda c: c.step, default=None)


def save(workdir: Path, step: int, model: Any, optimizer: Any, generator: Any, extra: dict[str, Any]) -> Path:
    import torch
    from safetensors.torch import save_file

    final = workdir / f"{PREFIX}{step:09d}"
    temporary = temporary_for(final)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(temporary / "model.safetensors"))
    save_file({"state": generator.get_state()}, str(temporary / "generator.safetensors"))
    torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
    (temporary / DONE).write_text(json.dumps({"step": step, **extra}))
    publish(temporary, final)
    remove_abandoned(workdir)
    for older in workdir.glob(f"{PREFIX}*"):  # keep only the newest
        if older != final:
            shutil.rmtree(older, ignore_errors=True)
    return final


def restore(checkpoint: Checkpoint, model: Any, optimizer: Any, generator: Any) -> dict[str, Any]:
    """Load ``checkpoint`` into the three; CorruptCheckpoint (naming the file) when one cannot be read."""
    path = checkpoint.path
    model.load_state_dict(safetensors_state(path / "model.safetensors", path, device=str(model.cfg.device)))
    generator.set_state(safetensors_state(path / "generator.safetensors", path)["state"])
    optimizer.load_state_dict(torch_state(path / "optimizer.pt", path))
    return json_record(path / DONE, path)
