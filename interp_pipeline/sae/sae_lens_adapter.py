"""Every place we reach past SAELens's public API, in one module, each checked against the installed SAELens.

SAETrainer and MultiSAETrainer offer public seams for a step (``step``), the
sparsity window (``maybe_reset_sparsity``) and checkpoints (``save_checkpoint_fn``),
but none that runs after every step, none that decides which steps compute the
metrics only logging reads, and fit() makes its own tqdm bars. So, here only:

- ``_update_pbar``: fit() calls it after every step, the step counter already
  advanced; the adapted classes turn it into ``after_step(output, bar)``.
- ``SAETrainer._is_logging_step``: asked before each step whether to compute the
  logging-only metrics; the adapted class turns it into ``is_logging_step()``.
- the module global ``tqdm`` of sae_trainer and multi_sae_trainer (fit()'s bar) and
  of activation_scaler (the normalisation estimate's): ours while fit() runs
  (``training_bar(total)``, and interp_pipeline.common.progress's bar).

``check_sae_lens`` confirms each of these in the installed SAELens (the methods
exist with the parameters we override them with, fit() still calls them, the
globals exist) and raises SAELensChanged naming its version otherwise. The adapted
classes run it when first built, so a changed SAELens stops training at its start
rather than leaving its metrics, checkpoints or progress silently missing.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from interp_pipeline.common.progress import progress

_TRAINER, _MULTI, _SCALER = ("sae_lens.training.sae_trainer", "sae_lens.training.multi_sae_trainer",
                             "sae_lens.training.activation_scaler")
# (module, class, private method) -> the parameters we override it with, and a method of that class
# that must call it (None: any method but itself and the W&B logging we turn off).
OVERRIDES: dict[tuple[str, str, str], tuple[tuple[str, ...], str | None]] = {
    (_TRAINER, "SAETrainer", "_update_pbar"): (("self", "step_output", "pbar", "update_interval"), "fit"),
    (_TRAINER, "SAETrainer", "_is_logging_step"): (("self",), None),
    (_MULTI, "MultiSAETrainer", "_update_pbar"): (("self", "step_outputs", "pbar", "update_interval"), "fit"),
}
# Modules whose global ``tqdm`` we swap, and the class whose fit() must read it (None: only that it exists).
PROGRESS_BAR_GLOBALS: dict[str, str | None] = {_TRAINER: "SAETrainer", _MULTI: "MultiSAETrainer", _SCALER: None}


WRITTEN_FOR = "6.54"  # the SAELens release these private members were read from


class SAELensChanged(RuntimeError):
    """The installed SAELens no longer has a private member this adapter overrides or swaps."""


def _names_used(function: Any) -> tuple[str, ...]:
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code.co_names if code is not None else ()


def problems() -> list[str]:
    """What the installed SAELens lacks of what this module relies on; empty when all is there."""
    found = []
    for (module_name, class_name, method), (parameters, caller) in OVERRIDES.items():
        cls = getattr(importlib.import_module(module_name), class_name)
        where = f"{module_name}.{class_name}.{method}"
        if not callable(getattr(cls, method, None)):
            found.append(f"{where} is gone")
            continue
        if tuple(inspect.signature(getattr(cls, method)).parameters) != parameters:
            found.append(f"{where} takes ({', '.join(inspect.signature(getattr(cls, method)).parameters)}), "
                         f"not ({', '.join(parameters)})")
        callers = [caller] if caller else [n for n in vars(cls) if n not in (method, "_log_train_step")]
        if not any(method in _names_used(vars(cls).get(name)) for name in callers):
            found.append(f"{where} is no longer called by {caller or 'any method of ' + class_name}")
    for module_name, class_name in PROGRESS_BAR_GLOBALS.items():
        module = importlib.import_module(module_name)
        if not hasattr(module, "tqdm"):
            found.append(f"{module_name}.tqdm is gone")
        elif class_name and "tqdm" not in _names_used(getattr(module, class_name).fit):
            found.append(f"{module_name}.{class_name}.fit no longer makes its bar with the module's tqdm")
    return found


def check_sae_lens() -> None:
    """Raise SAELensChanged, naming the installed version and what changed, unless ``problems()`` is empty."""
    found = problems()
    if found:
        from sae_lens import __version__

        raise SAELensChanged(f"SAELens {__version__} changed what interp_pipeline.sae.sae_lens_adapter relies on: "
                             f"{'; '.join(found)}; install SAELens {WRITTEN_FOR}, or update the adapter")


@functools.cache
def adapted_trainer_class() -> type:
    """SAETrainer, calling ``after_step``, ``is_logging_step`` and ``training_bar`` (defined by subclasses)."""
    check_sae_lens()
    trainer_module = importlib.import_module(_TRAINER)

    class AdaptedSAETrainer(trainer_module.SAETrainer):
        def _update_pbar(self, step_output: Any, pbar: Any, update_interval: int = 100) -> None:
            self.after_step(step_output, pbar)

        def _is_logging_step(self) -> bool:
            return self.is_logging_step()

        def fit(self) -> Any:
            with _lent_progress_bars(trainer_module, self.training_bar):
                return super().fit()

    return AdaptedSAETrainer


@functools.cache
def adapted_multi_trainer_class() -> type:
    """MultiSAETrainer, calling ``after_step`` and ``training_bar`` (defined by subclasses)."""
    check_sae_lens()
    multi_module = importlib.import_module(_MULTI)

    class AdaptedMultiSAETrainer(multi_module.MultiSAETrainer):
        def _update_pbar(self, step_outputs: Any, pbar: Any, update_interval: int = 100) -> None:
            self.after_step(step_outputs, pbar)

        def fit(self) -> Any:
            with _lent_progress_bars(multi_module, self.training_bar):
                return super().fit()

    return AdaptedMultiSAETrainer


@contextlib.contextmanager
def _lent_progress_bars(module: Any, training_bar: Callable[[int], Any]) -> Iterator[None]:
    """``module``'s training bar is ``training_bar(total)``, and the activation scaler's, like all of
    ours, shows on a terminal only, not in log files."""
    scaler = importlib.import_module(_SCALER)
    saved = module.tqdm, scaler.tqdm
    module.tqdm = lambda total, **_: training_bar(total)
    scaler.tqdm = lambda iterable, desc=None, leave=False: progress(iterable, desc=desc or "")
    try:
        yield
    finally:
        module.tqdm, scaler.tqdm = saved
