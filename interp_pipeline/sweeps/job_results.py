"""One JSON file per sweep job (beside its exit_status): what the sweep's summary reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULT_FILE = "job_result.json"


@dataclass
class JobRecord:
    job_num: int
    overrides: list[str]
    status: int
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    error: str | None = None  # the job's one-line error when it failed (a file from before it has none)


def write_job_result(job_dir: Path, record: JobRecord) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    temporary = job_dir / f".{RESULT_FILE}.tmp"
    temporary.write_text(json.dumps(asdict(record), indent=1))
    temporary.replace(job_dir / RESULT_FILE)


def read_job_results(sweep_dir: Path) -> list[JobRecord]:
    records = [JobRecord(**json.loads(p.read_text())) for p in sweep_dir.glob(f"*/{RESULT_FILE}")]
    return sorted(records, key=lambda r: r.job_num)
