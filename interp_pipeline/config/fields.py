"""The field helpers every schema dataclass is written with: ranges and choices as field metadata.

interp_pipeline.config.ranges checks them for every group before any work
("batch_size: expected an integer >= 1, found 0"), and interp_pipeline.config.settings
for a stage called from Python, so each setting's range is written once, beside its type.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any



def at_least(minimum: float, default: Any) -> Any:
    return field(default=default, metadata={"min": minimum})


def positive(default: Any) -> Any:
    """> 0: an integer field's smallest value is 1, a float field's anything above 0."""
    return field(default=default, metadata={"min": 0, "exclusive": True})


def fraction(default: Any, *, open_below: bool = False) -> Any:
    """In [0, 1] (or (0, 1] with ``open_below``)."""
    return field(default=default, metadata={"min": 0, "max": 1, "exclusive": open_below})


def choice(default: str, choices: tuple[str, ...]) -> Any:
    """One of ``choices``."""
    return field(default=default, metadata={"choices": choices})


def used_by(architectures: tuple[str, ...], setting: Any) -> Any:
    """An SAE setting only ``architectures`` read, with ``setting``'s range, and its default for them.

    None in the schema, so that "given" shows: as in SAELens's per-architecture configs, ``k``
    given to a standard SAE is refused rather than ignored (interp_pipeline.sae.config).
    """
    return field(default=None, metadata={**setting.metadata, "architectures": architectures,
                                         "architecture_default": setting.default})
