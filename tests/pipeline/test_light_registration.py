"""Registering every stage (what `--help` and validation do) imports neither torch nor mlflow: each
stage module imports them inside its functions, and so must whatever its pre-flight imports."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_registering_every_stage_imports_neither_torch_nor_mlflow():
    code = ("import sys; from interp_pipeline.common.plugins import load_plugins; load_plugins('stages'); "
            "print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
