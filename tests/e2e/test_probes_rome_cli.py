"""probes and rome_edit through the real CLI on the toy facts model, in one outputs directory so the
model trains once: both meet their expect:, and the model served from the cache after the edits is the
one trained (the edit worked on a copy)."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.e2e.test_cli import parents, sqlite_uri

pytestmark = pytest.mark.slow


def test_probes_then_rome_edit_on_toy_facts(tmp_path):
    outputs = tmp_path / "outputs"
    done = run_cli(["+experiment=probes"], outputs, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    runs, _ = parents(sqlite_uri(outputs), "probes")
    first = runs[-1].data.metrics
    assert first["probe.selectivity/blocks.1.hook_resid_pre"] >= 0.6

    done = run_cli(["+experiment=rome_edit"], outputs, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    runs, _ = parents(sqlite_uri(outputs), "rome_edit")
    metrics = runs[-1].data.metrics
    assert metrics["rome.efficacy_before"] == 0.0 and metrics["rome.true_object_recall_before"] == 1.0
    assert metrics["rome.efficacy_score"] > metrics["rome.efficacy_before"]

    # The trained model in the cache is untouched: probes again, every stage served from the cache,
    # nothing recomputed for a damaged entry, the same numbers.
    done = run_cli(["+experiment=probes"], outputs, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not served" not in done.stdout + done.stderr
    runs, _ = parents(sqlite_uri(outputs), "probes")
    assert runs[-1].data.metrics == first
