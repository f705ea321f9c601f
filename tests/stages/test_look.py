"""inspect_model and logit_lens called from Python, as a notebook calls them: settings as keyword arguments,
resolved against InspectConfig and LogitLensConfig; what they log and return."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.stages.inspect_model import inspect_model  # noqa: E402
from interp_pipeline.stages.logit_lens import logit_lens  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402
from tests.support.models import tiny_model_and_tokens  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    # A tracker that drops figures (NULL_TRACKER) leaves them open; matplotlib warns past 20.
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_inspect_model_on_a_token_dataset(tmp_path):
    model, tokens = tiny_model_and_tokens(n_sequences=5, seq_len=10)
    tracker = RecordingTracker(NullRun(), tmp_path)
    out = inspect_model(model, tokens, layers=[1], positions="all", max_table_prompts=2, batch_size_prompts=2,
                        tracker=tracker)
    assert len(out["str_tokens"]) == 2 and {r["prompt"] for r in out["predictions"]} == {0, 1}
    assert tracker.last["n_sequences"] == 5 and 0 <= tracker.last["answer_top1"] <= 1
    assert {"tokens.md", "top_predictions.md", "inspect.html"} <= {p.name for p in tmp_path.iterdir()}
    with pytest.raises(ConfigError, match=r"^show_prompt: expected a sequence index below 5, found 5"):
        inspect_model(model, tokens, show_prompt=5)
    with pytest.raises(ConfigError, match=r"^layers: expected a non-empty list of indices"):
        inspect_model(model, tokens, layers=[])
    with pytest.raises(ConfigError, match=r"^batch_size: expected a setting of InspectConfig .*batch_size_prompts"):
        inspect_model(model, tokens, batch_size=2)


def test_logit_lens_batches_give_the_same_metrics(tmp_path):
    model, tokens = tiny_model_and_tokens(n_sequences=5, seq_len=10)
    one = logit_lens(model, tokens, batch_size_prompts=1, positions="-4:-1")
    tracker = RecordingTracker(NullRun(), tmp_path)
    every = logit_lens(model, tokens, tracker=tracker, positions="-4:-1")
    assert one["states"] == every["states"] == ["0_pre", "1_pre", "final_post"]
    for name, values in every["metrics"].items():
        assert values == pytest.approx(one["metrics"][name], abs=1e-5), name
    assert tracker.last["agreement/final_post"] == 1.0
    assert {"logit_lens.md", "logit_lens.html"} <= {p.name for p in tmp_path.iterdir()}
