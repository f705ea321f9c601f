"""The sae_features stage called as a function: what it logs and returns, on the planted-feature SAE."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.stages.sae_features import sae_features  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402
from tests.support.saes import PLANTED, TOKEN_WORD, planted_feature  # noqa: E402


@pytest.fixture(scope="module")
def planted():
    return planted_feature()


def test_the_stage_logs_figures_tables_and_a_dashboard_of_the_planted_feature(planted, tmp_path):
    tracker = RecordingTracker(NullRun(), tmp_path)
    prompt = planted.tokens[:1]  # holds TOKEN_WORD at position 3
    result = sae_features(planted.model, planted.sae, prompt, planted.tokens, top_k=3, dashboard_features=4,
                          contexts=2, model_label="planted model", tracker=tracker)
    metrics = result["metrics"]
    assert (metrics["d_in"], metrics["d_sae"], metrics["expansion"]) == (16, 32, 2)
    assert metrics["prompt_tokens"] == 15  # BOS left out
    assert metrics["dashboard/tokens"] == 6 * 15
    assert metrics["dashboard/features"] == 4 and metrics["dashboard/min_contexts"] >= 1
    (found,) = result["prompts"]
    assert found["tokens"][3] == TOKEN_WORD and found["top_ids"][3][0] == PLANTED
    assert found["top_values"][3][0] == pytest.approx(planted.activation(3), abs=1e-5)
    first = result["dashboard"][0]
    assert first["feature"] == PLANTED  # the strongest on the prompt comes first
    assert [(c["sequence"], c["position"]) for c in first["contexts"]] == [(4, 15), (2, 10)]
    assert tracker.last["l0_mean"] == metrics["l0_mean"] and tracker.tags["sae.hook"] == "blocks.0.hook_resid_pre"

    page = (tmp_path / "feature_dashboard.html").read_text()
    assert "<script" not in page  # no JavaScript at all: tables, CSS and SVG
    assert page.count("<div class=\"card\">") == 4 and page.count("<svg") == 4
    assert f"<h2>feature {PLANTED}</h2>" in page and "span class=\"tok max\"" in page
    assert "planted model" in page
    for name in ("top_features_heatmap.png", "l0_per_token.png", "top_features.md", "sae_features.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert f"f{PLANTED} {planted.activation(3):.3g}" in (tmp_path / "top_features.md").read_text()


def test_a_hook_the_model_lacks_or_a_bad_setting_names_the_key(planted):
    wrong = r"^hook: expected a hook name of this model, found 'blocks\.3\.hook_resid_pre'"
    with pytest.raises(ConfigError, match=wrong):
        sae_features(planted.model, planted.sae, planted.tokens[:1], hook="blocks.3.hook_resid_pre")
    with pytest.raises(ConfigError, match=r"^top_k: expected an integer >= 1, found 0"):
        sae_features(planted.model, planted.sae, planted.tokens[:1], top_k=0)
