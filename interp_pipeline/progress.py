"""Progress bars for long stages (tqdm; ``TQDM_DISABLE=1`` turns them off)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it", **kwargs: Any) -> Iterator[T]:
    """A tqdm bar over ``iterable`` (returned, so callers can ``set_postfix``)."""
    from tqdm.auto import tqdm

    # disable=None: a bar on a terminal, nothing in a log file or a pipe (where the
    # one-line stage summaries say enough); TQDM_DISABLE=1 turns it off everywhere.
    kwargs.setdefault("disable", None)
    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False, **kwargs)
