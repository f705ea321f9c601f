"""What a report holds, as plain data that round-trips through JSON (a run writes ``report.json``;
``interp-pipeline repro`` reads it back from each run of its suite)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp_pipeline.common.exit_status import EXIT_CONFIG, EXIT_EXPECT, EXIT_FAILED, EXIT_OK

REPORT_JSON, REPORT_HTML = "report.json", "report.html"
STATUS_WORDS = {EXIT_OK: "ok", EXIT_EXPECT: "expect not met", EXIT_CONFIG: "config error", EXIT_FAILED: "failed"}


@dataclass
class ExpectRow:
    key: str  # stage.metric
    expected: str  # the published value and its tolerance, or the range ("3.552 ± 0.01", ">= 0.5")
    got: float | None
    passed: bool
    source: str = ""
    why: str = ""


@dataclass
class Figure:
    name: str  # stage/figure.png
    path: str  # absolute, where the run left it (the stage cache entry)


@dataclass
class ExperimentReport:
    name: str  # the suite's name for the entry, or the experiment's
    experiment: str
    overrides: list[str] = field(default_factory=list)
    status: int = EXIT_OK  # the run's exit status
    seconds: float = 0.0
    # CPU time of the run's process (user + system): on a shared machine, what the run itself cost.
    cpu_seconds: float | None = None
    rows: list[ExpectRow] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    run_dir: str = ""
    message: str = ""  # why a run made no rows (its error line), empty otherwise

    @property
    def passed(self) -> bool:
        return self.status == EXIT_OK and all(row.passed for row in self.rows)

    @property
    def status_word(self) -> str:
        return STATUS_WORDS.get(self.status, f"exit {self.status}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentReport:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["rows"] = [ExpectRow(**row) for row in data.get("rows", [])]
        known["figures"] = [Figure(**figure) for figure in data.get("figures", [])]
        return cls(**known)

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read_json(cls, path: Path) -> ExperimentReport:
        return cls.from_dict(json.loads(path.read_text()))
