"""inspect_model and logit_lens through the real CLI on the toy models: expect: met, figures, tables and
one self-contained HTML page per stage in MLflow; GPT-2 offline stops before any work."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

# inspect_model and logit_lens on toy_induction and toy_ioi run end to end in tests/test_readme.py (the README's
# commands), which makes the assertions this module made on them.


@pytest.mark.parametrize("experiment", ["inspect_model", "logit_lens"])
def test_the_gpt2_default_stops_offline_before_any_work(experiment, outputs):
    done = run_cli([f"+experiment={experiment}"], outputs, HF_HUB_OFFLINE="1",
                   HF_HOME=str(outputs.parent / "empty_hf_home"))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "gpt2" in lines[0] and "offline" in lines[0], lines
    assert not (outputs / "mlflow.db").exists()
