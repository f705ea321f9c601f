"""The settings of the task_tokens stage (its params come through a ``data`` group): sequences drawn
from a synthetic task's generator (interp_pipeline.tasks.base.task_sequences)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from omegaconf import MISSING, SI

from interp_pipeline.config.fields import positive


@dataclass
class TaskTokensConfig:
    task: Dict[str, Any] = MISSING  # name + the task's fields, as in model.train.task
    n_sequences: int = positive(MISSING)
    seed: int = SI("${seed}")
