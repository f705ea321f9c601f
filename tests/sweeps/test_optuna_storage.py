"""The Optuna study beside the MLflow store, resumed by a second process (optuna 2.10 on SQLAlchemy 2)."""

from __future__ import annotations

import subprocess
import sys

import optuna

from interp_pipeline.sweeps.optuna_storage import study_path, study_storage


def test_the_study_sits_beside_a_sqlite_store_else_under_outputs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert study_path(f"sqlite:///{tmp_path}/store/mlflow.db", "/elsewhere") == tmp_path / "store" / "optuna.db"
    assert study_path("http://127.0.0.1:5000", str(tmp_path)) == tmp_path / "optuna.db"
    assert study_path(None, str(tmp_path)) == tmp_path / "optuna.db"  # the default store is outputs/mlflow.db


ASK_TELL = """
import sys, optuna
from interp_pipeline.sweeps.optuna_storage import study_storage
study = optuna.create_study(study_name="s", storage=study_storage(None, sys.argv[1]), load_if_exists=True,
                            directions=["maximize"])
trial = study.ask()
x = trial.suggest_float("x", 0, 1)
if sys.argv[2] == "fail":
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
else:
    study.tell(trial, values=[x])
"""


def test_a_second_process_adds_to_the_same_study(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for outcome in ("ok", "fail", "ok"):
        done = subprocess.run([sys.executable, "-c", ASK_TELL, str(tmp_path), outcome], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="s", storage=study_storage(None, str(tmp_path)))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert study.best_value == max(t.value for t in study.trials if t.value is not None)
