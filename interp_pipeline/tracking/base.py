"""What a stage logs through, without knowing about MLflow.

A stage that takes a ``tracker`` argument gets a :class:`Tracker`: metrics (with a
step for anything iterative), figures (matplotlib to PNG, plotly to HTML) and
small JSON or text files. Called from a notebook it gets ``NULL_TRACKER``,
which drops everything. The runner hands it a :class:`RecordingTracker`, which
keeps every metric batch it logged (value, step, order), the last value of each metric and a
copy of each file in the stage's cache entry (so a cached stage shows the same series and files
again) and forwards all to the run.

A stage that produces several things of the same kind (SAEs trained in one pass)
gives each its own run nested under the stage's: ``with tracker.child(name) as t:``.
The child run ends FINISHED when the block ends normally, FAILED or KILLED when it
raises.
"""

from __future__ import annotations

import json
import math
import re
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.\-/ ]")


class Tracker:
    """The stage-facing logging interface; this base class logs nothing."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Settings of a child run (a stage's own params are logged by the runner)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_figure(self, figure: Any, name: str) -> None:
        pass

    def log_dict(self, data: Any, name: str) -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass

    def log_files(self, directory: Path, name: str) -> None:
        """Every file under ``directory`` (e.g. a saved SAE), as artifacts under ``name/``."""

    def log_html_page(self, parts: Sequence[Any], name: str, title: str, meta: str = "") -> None:
        """An HTML page of plotly figures and HTML strings (html_page.html_page), loading plotly.js
        from one file the run logs beside it once, so each page stays small."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def child(self, name: str, tags: Mapping[str, Any] | None = None) -> Tracker:
        """A tracker for a run nested under this one (a context manager that ends it); here, one that logs nothing."""
        return NULL_TRACKER

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        pass


NULL_TRACKER = Tracker()


class RunLogger(Protocol):
    """One tracked run, as the runner sees it (implemented by MlflowRun and NullRun)."""

    run_id: str | None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_metric_history(self, batches: Sequence[Mapping[str, Any]]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def start_child(self, name: str, tags: Mapping[str, Any]) -> RunLogger: ...
    def log_datasets(self, datasets: Iterable[Any], context: str) -> None: ...
    def log_model(self, name: str, value: Any, saved: Path | None) -> Mapping[str, str]: ...
    def rename(self, name: str) -> None: ...
    def end(self, status: str) -> None: ...


class NullRun:
    """A run that records nothing: ``tracking.enabled=false`` and unit tests."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_metric_history(self, batches: Sequence[Mapping[str, Any]]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def start_child(self, name: str, tags: Mapping[str, Any]) -> RunLogger:
        return NullRun()

    def log_datasets(self, datasets: Iterable[Any], context: str) -> None:
        pass

    def log_model(self, name: str, value: Any, saved: Path | None) -> Mapping[str, str]:
        return {}

    def rename(self, name: str) -> None:
        pass

    def end(self, status: str) -> None:
        pass


def save_figure(figure: Any, path_without_suffix: Path) -> Path:
    """Write a matplotlib figure as PNG or a plotly figure as self-contained HTML."""
    if hasattr(figure, "savefig"):
        path = path_without_suffix.with_suffix(".png")
        figure.savefig(path, dpi=130, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)
        return path
    if hasattr(figure, "write_html"):
        path = path_without_suffix.with_suffix(".html")
        # Self-contained: the figure opens offline, as everything here must.
        figure.write_html(path, include_plotlyjs=True, full_html=True)
        return path
    raise TypeError(f"expected a matplotlib or plotly figure, found {type(figure).__name__}")


class RecordingTracker(Tracker):
    """Forwards to a run and keeps what the stage logged in ``artifacts_dir`` and :attr:`last`."""

    def __init__(self, run: RunLogger, artifacts_dir: Path):
        self.run = run
        self.artifacts_dir = artifacts_dir
        self.last: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []  # every batch sent to the run, in order (a cached rerun replays it)
        self.tags: dict[str, str] = {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {}
        for name, value in metrics.items():
            value = float(value)
            self.last[name] = value
            if math.isfinite(value):
                clean[name] = value
        if clean:
            self.history.append({"step": step, "metrics": clean})
            self.run.log_metrics(clean, step=step)

    def _path(self, name: str) -> Path:
        safe = _SAFE_NAME.sub("_", name).strip("/") or "artifact"
        path = self.artifacts_dir / safe
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _forward(self, path: Path) -> None:
        relative = path.relative_to(self.artifacts_dir).parent.as_posix()
        self.run.log_artifact(path, None if relative == "." else relative)

    def log_figure(self, figure: Any, name: str) -> None:
        self._forward(save_figure(figure, self._path(name)))

    def log_dict(self, data: Any, name: str) -> None:
        path = self._path(name if name.endswith(".json") else f"{name}.json")
        path.write_text(json.dumps(data, indent=2, sort_keys=True))
        self._forward(path)

    def log_text(self, text: str, name: str) -> None:
        path = self._path(name)
        path.write_text(text)
        self._forward(path)

    def log_files(self, directory: Path, name: str) -> None:
        import shutil

        target = self._path(name)
        shutil.copytree(directory, target, dirs_exist_ok=True)  # kept with the entry, so a cached stage logs it again
        for path in sorted(p for p in target.rglob("*") if p.is_file()):
            self._forward(path)

    def log_html_page(self, parts: Sequence[Any], name: str, title: str, meta: str = "") -> None:
        from interp_pipeline.common.html_page import PLOTLY_JS, SharedPlotly, html_page, plotly_js

        script = self._path(PLOTLY_JS)
        if not script.exists():  # once per run, whatever the number of pages
            script.write_text(plotly_js())
            self._forward(script)
        page = self._path(name)
        shared = SharedPlotly(src=os.path.relpath(script, page.parent), artifact_path=PLOTLY_JS, run_id=self.run.run_id)
        page.write_text(html_page(title, parts, meta=meta, shared_plotly=shared))
        self._forward(page)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({str(k): str(v) for k, v in tags.items()})
        self.run.set_tags(tags)

    def child(self, name: str, tags: Mapping[str, Any] | None = None) -> RecordingTracker:
        """A run nested under this one; its files are kept under ``children/<name>/`` of this one's."""
        run = self.run.start_child(name, {"child": name, **(tags or {})})
        return _ChildTracker(run, self._path(f"children/{name}"))


class _ChildTracker(RecordingTracker):
    """A nested run that ends with its ``with`` block: FINISHED, or FAILED/KILLED on an exception."""

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        if kind is None:
            self.run.end("FINISHED")
        else:
            self.run.end("FAILED" if issubclass(kind, Exception) else "KILLED")
