"""The settings of a toy model's training (``model.train``, read by interp_pipeline.training.trainer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from interp_pipeline.config.fields import at_least, positive


@dataclass
class TrainConfig:
    """Training a toy model on a synthetic task (model.source=trained): AdamW with a linear warm-up."""

    task: Dict[str, Any] = field(default_factory=lambda: {"name": "induction"})  # name + the task's fields
    steps: int = positive(2000)
    batch_size_prompts: int = positive(64)  # sequences per step; ignored by full-batch tasks (modular_addition)
    lr: float = positive(1e-3)
    weight_decay: float = at_least(0, 0.01)
    betas: List[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = at_least(0, 0)
    log_every: int = positive(10)
    eval_every: int = positive(100)
    checkpoint_every: int = at_least(0, 500)
    # Stop once eval metric early_stop_metric (e.g. "repeat_loss") is >= early_stop_min / <= early_stop_max.
    early_stop_metric: Optional[str] = None
    early_stop_min: Optional[float] = None
    early_stop_max: Optional[float] = None
