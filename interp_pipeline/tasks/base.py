"""What a synthetic task provides to the trainer, and how a task is picked from config.

A task config is a mapping with ``name`` and that task's fields, e.g.
``{name: induction, d_vocab: 64, seq_len: 48}``; each task is a dataclass, so an
unknown field is a ConfigError with a "did you mean".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.tasks.config import TaskTokensConfig

if TYPE_CHECKING:
    from torch import Generator, Tensor
    from transformers import PreTrainedTokenizerFast


class Task:
    """Base class; subclasses are dataclasses registered with :func:`register_task`."""

    name: ClassVar[str]
    full_batch: ClassVar[bool] = False  # the whole training set every step (modular addition)

    def vocabulary(self) -> list[str]:
        raise NotImplementedError

    def tokenizer(self) -> PreTrainedTokenizerFast:
        raise NotImplementedError

    def model_config(self) -> dict[str, Any]:
        """HookedTransformerConfig fields the task fixes (vocabulary sizes, context length)."""
        raise NotImplementedError

    def train_batch(self, generator: Generator, batch_size: int) -> Tensor:
        raise NotImplementedError

    def dataset(self, generator: Generator, n: int) -> Tensor:
        """``n`` sequences from the task's distribution, for analysis stages (task_tokens)."""
        return self.train_batch(generator, n)

    def logits(self, model: Any, tokens: Tensor) -> Tensor:
        """The logits the loss reads; a task may compute fewer positions than a full forward."""
        return model(tokens, return_type="logits")

    def loss(self, logits: Tensor, tokens: Tensor) -> Tensor:
        raise NotImplementedError

    def evaluate(self, model: Any) -> dict[str, float]:
        """Metrics on data held out from training (fixed by the task's seed)."""
        raise NotImplementedError


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls
    return cls


def make_task(config: Mapping[str, Any], key: str = "task") -> Task:
    from interp_pipeline.common.plugins import load_plugins

    load_plugins("tasks")  # the task modules import this one: loaded here, not at import, so no cycle
    fields = dict(config)
    name = fields.pop("name", None)
    if name not in _TASKS:
        raise ConfigError(f"{key}.name", f"expected one of {one_of(_TASKS)}, found {name!r}",
                          suggestion=did_you_mean(str(name), _TASKS))
    cls = _TASKS[name]
    allowed = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for field_name in fields:
        if field_name not in allowed:
            raise ConfigError(f"{key}.{field_name}", f"expected a field of task '{name}' ({one_of(allowed)})",
                              suggestion=did_you_mean(field_name, allowed))
    try:
        return cls(**fields)
    except (TypeError, ValueError) as error:
        raise ConfigError(key, f"task '{name}': {error}") from error


def check_task_settings(settings: TaskTokensConfig) -> None:
    """Pre-flight of task_tokens: the task exists and takes these fields."""
    make_task(settings.task, key="task")


def task_sequences(settings: TaskTokensConfig) -> Tensor:
    """``settings.n_sequences`` sequences from the task's distribution, drawn from a generator seeded with
    ``settings.seed`` (the task_tokens stage)."""
    import torch

    return make_task(settings.task, key="task").dataset(torch.Generator().manual_seed(settings.seed),
                                                        settings.n_sequences)


def task_context(settings: TaskTokensConfig) -> int | None:
    """The length of the task's sequences: the context it fixes for its models."""
    return make_task(settings.task, key="task").model_config().get("n_ctx")
