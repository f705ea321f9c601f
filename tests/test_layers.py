"""The floors of the package hold: import-linter's contracts in pyproject.toml ([tool.importlinter]):
every package imports only from the floors below its own, nothing imports the stages, and no
imports go round in a circle (between packages, or between the modules of one, TYPE_CHECKING
imports counted). And every package is on a floor, so a new one cannot slip in unchecked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("importlinter", reason="the dev extra's import-linter checks the floors")


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_every_package_is_on_a_floor():
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    named = set(re.findall(r"interp_pipeline\.(\w+)", " ".join(layers)))
    children = {p.stem if p.is_file() else p.name for p in (REPO / "interp_pipeline").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert not children - named, f"add {sorted(children - named)} to a floor in pyproject.toml's [tool.importlinter]"


def test_the_import_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # The console script beside this interpreter (the venv's), run on the repository's pyproject.toml.
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", str(REPO / "pyproject.toml")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in report, report
