"""``interp-pipeline repro``: run a suite of experiments with their ``expect:`` and report them.

    interp-pipeline repro --suite offline                      # conf/suite/offline.yaml
    interp-pipeline repro --suite gpu                          # needs the hub (or its cache) and a GPU
    interp-pipeline repro --suite offline paths.outputs=/tmp/ci tracking.enabled=false
    python -m interp_pipeline.cli.repro --suite my_suite.yaml --only tms,grokking

A suite (``conf/suite/NAME.yaml`` or a path) lists experiments, each with overrides; every
one runs as its own ``python -m interp_pipeline`` process, one after another (a fresh
process per experiment, as a user runs them: no state carried from one to the next).
Overrides given here apply to every run (``paths.outputs``, ``tracking.*``, ``runner.*``).
Each run writes its own report (interp_pipeline.report); this command gathers them into
one, as markdown (printed at the end, failing rows last), JSON and a self-contained HTML
page, in ``--out`` (default ``<paths.outputs>/repro/<suite>/<time>``). The exit status is
0 when every expectation is met, else the worst run's (2 config, 1 failed, 3 expect).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.common.exit_status import EXIT_CONFIG, EXIT_OK, combine
from interp_pipeline.common.paths import conf_dir, default_outputs_dir
from interp_pipeline.report.model import REPORT_JSON, ExperimentReport
from interp_pipeline.report.render import to_html, to_json, to_markdown

SUITES_DIR = "suite"


@dataclass
class SuiteEntry:
    name: str
    experiment: str
    overrides: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # globs over "stage/figure.png"; empty: all


@dataclass
class Suite:
    name: str
    title: str
    entries: list[SuiteEntry]


def suite_names() -> list[str]:
    return sorted(p.stem for p in (conf_dir() / SUITES_DIR).glob("*.yaml"))


def _entry(index: int, raw: Any) -> SuiteEntry:
    where = f"experiments[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("experiment"), str):
        raise ConfigError(where, f"expected {{experiment: NAME, overrides: [...]}}, found {raw!r}")
    unknown = set(raw) - {"name", "experiment", "overrides", "figures"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}", "expected one of name, experiment, overrides, figures")
    for key in ("overrides", "figures"):
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}.{key}", f"expected a list of strings, found {value!r}")
    return SuiteEntry(str(raw.get("name") or raw["experiment"]), raw["experiment"], list(raw.get("overrides") or []),
                      list(raw.get("figures") or []))


def load_suite(name_or_path: str) -> Suite:
    """``conf/suite/NAME.yaml``, or a YAML file's path; raises :class:`ConfigError`."""
    from omegaconf import OmegaConf

    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = conf_dir() / SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = suite_names()
        raise ConfigError("--suite", f"expected a suite in conf/suite ({one_of(names)}) or a YAML file, "
                                     f"found '{name_or_path}'", suggestion=did_you_mean(name_or_path, names))
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if not isinstance(raw, dict) or not isinstance(raw.get("experiments"), list) or not raw["experiments"]:
        raise ConfigError(f"{path.name}: experiments", "expected a non-empty list of experiments")
    entries = [_entry(i, e) for i, e in enumerate(raw["experiments"])]
    names = [e.name for e in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{path.name}: experiments", f"expected distinct names, found '{repeated[0]}' twice "
                                                       "(give one a name:)")
    return Suite(path.stem, str(raw.get("title") or f"Reproduction report: {path.stem} suite"), entries)


def _outputs_dir(overrides: Sequence[str]) -> Path:
    for override in reversed(overrides):
        key, _, value = override.lstrip("+").partition("=")
        if key == "paths.outputs" and value:
            return Path(value).expanduser().resolve()
    return default_outputs_dir()


def _absolute_outputs(overrides: Sequence[str]) -> list[str]:
    """A relative ``paths.outputs`` made absolute, so every run agrees on it whatever its working directory."""
    fixed = []
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        fixed.append(f"{override.split('=')[0]}={Path(value).expanduser().resolve()}"
                     if key == "paths.outputs" and value else override)
    return fixed


def _last_error(log_path: Path) -> str:
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1][:500]


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far (their children included)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_entry(entry: SuiteEntry, overrides: Sequence[str], run_dir: Path, log_path: Path) -> ExperimentReport:
    """One experiment as its own process; its report.json read back (or a report of why there is none)."""
    command = [sys.executable, "-m", "interp_pipeline", f"+experiment={entry.experiment}", *entry.overrides,
               *overrides, f"hydra.run.dir={run_dir}"]
    report_path = run_dir / REPORT_JSON
    report_path.unlink(missing_ok=True)  # a report left by an earlier run there must not stand in for this one's
    started, cpu_before = time.perf_counter(), _children_cpu()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    try:
        report = ExperimentReport.read_json(report_path)
    except (OSError, ValueError, TypeError, AttributeError) as error:  # none (the run stopped early), or unreadable
        found = "" if isinstance(error, FileNotFoundError) else f"unreadable {REPORT_JSON} ({error}); "
        report = ExperimentReport(entry.name, entry.experiment, message=found + _last_error(log_path))
    report.name, report.experiment = entry.name, entry.experiment
    report.overrides = [*entry.overrides, *overrides]
    report.status, report.seconds, report.cpu_seconds, report.run_dir = status, seconds, cpu, str(run_dir)
    if entry.figures:
        report.figures = [f for f in report.figures if any(fnmatch.fnmatchcase(f.name, g) for g in entry.figures)]
    return report


def write_reports(reports: Sequence[ExperimentReport], title: str, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json", "html": out / "report.html"}
    paths["md"].write_text(to_markdown(reports, title))
    paths["json"].write_text(to_json(reports, title))
    paths["html"].write_text(to_html(reports, title))
    return paths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp-pipeline repro",
        description="Run a suite of experiments with their expect: blocks and write one report "
                    "(markdown, JSON, HTML). Exit status 0 when every expectation is met.")
    parser.add_argument("--suite", default="offline", help="a name in conf/suite/ (offline, gpu) or a YAML path")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the runs and the report go (default: <paths.outputs>/repro/<suite>/<time>)")
    parser.add_argument("--only", default=None, help="comma-separated names of the suite's experiments to run")
    parser.add_argument("--list", action="store_true", help="print the suite's experiments and exit")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (paths.outputs=..., tracking.*)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        suite = load_suite(args.suite)
        entries = suite.entries
        if args.only:
            wanted = [n.strip() for n in args.only.split(",") if n.strip()]
            names = [e.name for e in entries]
            for name in wanted:
                if name not in names:
                    raise ConfigError("--only", f"expected experiments of suite '{suite.name}' ({one_of(names)}), "
                                                f"found '{name}'", suggestion=did_you_mean(name, names))
            entries = [e for e in entries if e.name in wanted]
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.list:
        for entry in entries:
            print(" ".join([entry.name + ":", f"+experiment={entry.experiment}", *entry.overrides]))
        return EXIT_OK

    overrides = _absolute_outputs(args.overrides)
    out = (args.out or _outputs_dir(overrides) / "repro" / suite.name / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"repro: suite '{suite.name}', {len(entries)} experiment(s); runs and report in {out}", flush=True)
    reports = []
    for index, entry in enumerate(entries):
        tag = f"[{index + 1}/{len(entries)}] {entry.name}"
        print(f"{tag}: +experiment={entry.experiment} {' '.join([*entry.overrides, *overrides])}".rstrip(), flush=True)
        report = run_entry(entry, overrides, out / f"{index + 1:02d}-{entry.name}", out / f"{index + 1:02d}-{entry.name}.log")
        reports.append(report)
        met = sum(row.passed for row in report.rows)
        print(f"{tag}: {report.status_word} in {report.seconds:.1f} s, {met}/{len(report.rows)} expectation(s) met"
              + (f" ({report.message})" if report.message else ""), flush=True)

    paths = write_reports(reports, suite.title, out)
    print(f"report: {paths['md']}  {paths['json']}  {paths['html']}\n")
    print(paths["md"].read_text(), end="", flush=True)  # failing rows come last in it
    failed = [r.status for r in reports if not r.passed]
    return combine(failed) if failed else EXIT_OK


def run() -> None:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    sys.exit(main())


if __name__ == "__main__":
    run()
