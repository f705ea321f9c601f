"""Progress for long stages: a tqdm bar on a terminal, a log line at a steady interval elsewhere.

In a log file or a pipe a bar would be noise, and nothing at all leaves a run silent for
minutes; so there the same tqdm object writes its one-line state (step, rate, ETA, and the
postfix callers set: loss, L0) to the ``interp_pipeline`` logger at most every
``INTERP_PIPELINE_PROGRESS_SECONDS`` seconds (10 by default), which the run's log file
keeps too. ``TQDM_DISABLE=1`` turns both off.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("interp_pipeline")


def _logged_bar_class() -> type:
    from tqdm.auto import tqdm

    class LoggedBar(tqdm):
        """tqdm's counting, rate and ETA, shown as a log line at most every ``interval`` seconds."""

        def __init__(self, *args: Any, interval: float, **kwargs: Any):
            self._interval, self._logged_at = interval, -float("inf")
            super().__init__(*args, **kwargs)

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            now = time.monotonic()
            # msg is given when tqdm clears the line at close; postfix changes also land here.
            if msg is not None or now - self._logged_at < self._interval:
                return True
            self._logged_at = now
            log.info("  %s", self.format_meter(**self.format_dict))
            return True

    return LoggedBar


def _interval() -> float:
    try:
        return max(0.5, float(os.environ.get("INTERP_PIPELINE_PROGRESS_SECONDS", "10")))
    except ValueError:
        return 10.0


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it", **kwargs: Any) -> Iterator[T]:
    """A tqdm bar over ``iterable`` (returned, so callers can ``update`` and ``set_postfix``)."""
    from tqdm.auto import tqdm

    if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true"):
        kwargs["disable"] = True
    elif not sys.stderr.isatty():
        # No bar drawn: step/total, percent, rate, ETA, and the postfix (loss, L0, ...).
        kwargs.update(disable=False, bar_format="{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) "
                                                "{elapsed} elapsed, {rate_fmt}, ETA {remaining}{postfix}")
        return _logged_bar_class()(iterable, desc=desc, total=total, unit=unit, leave=False, interval=_interval(),
                                   **kwargs)
    kwargs.setdefault("disable", None)
    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False, **kwargs)
