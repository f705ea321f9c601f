"""Toy models trained once per test session, for the tests that run an experiment on one.

Training the toy model is most of what such a test costs (toy_facts ~35 s, toy_induction's
600-step variant ~30 s, of CPU); before, each test module trained its own in its own outputs
folder, so a session trained the same model several times. Here each model is trained the first
time a test asks for it, by its experiment's model stage alone (a one-stage pipeline, the
experiment's own ``${model}``, so its cache key is the one the whole pipeline computes), into one
session folder whose stage cache holds every model trained so far. A test gets a copy of that
cache in its own fresh outputs folder: the model is served from it (hash-checked, as any entry),
and everything else the test runs and asserts (the other stages, the MLflow store, what is
cached) is its own. A test that must start from an empty cache does not ask.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

# The model stage of every pipeline (pipelines/*.yaml): its key depends on its params only.
MODEL_ONLY = {"stages": [{"name": "model", "fn": "load_model", "params": "${model}"}]}


class ToyModels:
    """``outputs_with(overrides, outputs)``: ``outputs`` with the model of ``overrides`` in its stage cache."""

    def __init__(self, root: Path):
        self.outputs = root / "outputs"  # one stage cache for the session's toy models
        self.pipeline = root / "model_only.yaml"
        self.pipeline.write_text(yaml.safe_dump(MODEL_ONLY))
        self._asked: set[tuple[str, ...]] = set()  # overrides already trained (or found) in the session cache

    def train(self, overrides: list[str]) -> Path:
        """The session's stage cache, holding the model of the experiment ``overrides`` run (trained if not yet)."""
        from tests.conftest import run_cli

        wanted = tuple(overrides)
        if wanted not in self._asked:
            # Other overrides naming the same model (the same key) find it cached: a second of startup, no training.
            done = run_cli([*overrides, f"pipeline={self.pipeline}", "~expect", "tracking.enabled=false"],
                           self.outputs, timeout=1200)
            assert done.returncode == 0, done.stdout + done.stderr
            self._asked.add(wanted)
        return self.outputs / "cache"

    def outputs_with(self, overrides: list[str], outputs: Path) -> Path:
        """Copy the session's trained models into ``outputs``'s stage cache (a copy: a test may damage its own)."""
        shutil.copytree(self.train(overrides), outputs / "cache", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.lock"))
        return outputs
