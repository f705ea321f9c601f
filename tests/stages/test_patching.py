"""The activation_patching stage: labelled results, what it logs, and its config errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.patching.labelled import LabelledArray  # noqa: E402
from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages  # noqa: E402
from interp_pipeline.storage.cache_codecs import codec_for  # noqa: E402
from interp_pipeline.stages.patching import activation_patching  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402
from tests.support.models import random_pairs, tiny_model  # noqa: E402


def test_results_are_labelled_logged_and_stored(tmp_path, caplog):
    caplog.set_level("INFO", logger="interp_pipeline.patching.run")
    model = tiny_model(n_layers=2, n_heads=3)
    pairs = random_pairs(4, 6)
    tracker = RecordingTracker(NullRun(), tmp_path / "artifacts")
    results = activation_patching(
        model, pairs, grids=["resid_pre", "head_out", "block_every"], path=[{"receivers": "final"}],
        batch_size_prompts=8, top_k=3, tracker=tracker,
    )
    assert set(results) == {"resid_pre", "head_out", "block_every", "path_to_final", "resid_pre.attribution",
                            "head_out.attribution", "block_every.attribution"}
    head_out = results["head_out"]
    assert isinstance(head_out, LabelledArray)
    assert head_out.dims == ("layer", "head") and head_out.shape == (2, 3)
    assert results["block_every"].dims == ("component", "layer", "pos")
    assert results["block_every"].coords["component"] == ["resid_pre", "attn_out", "mlp_out"]
    assert len(results["resid_pre"].coords["pos"]) == 6
    # END is the same position in half the prompts only (random_pairs varies it): no role label.
    assert not any(label.endswith("END") for label in results["resid_pre"].coords["pos"])
    assert head_out.attrs["metric"] == "logit_diff" and head_out.attrs["normalized"] is True
    assert "patching HookedTransformer: fast path" in caplog.text  # which engine ran is in the log

    # Every head's value is a metric (expect: can name it), and the top-k too.
    assert tracker.last["head_out/L1H2"] == pytest.approx(float(head_out.values[1, 2]))
    assert tracker.last["path_to_final/L0H0"] == pytest.approx(float(results["path_to_final"].values[0, 0]))
    assert "clean_logit_diff" in tracker.last and "corrupted_logit_diff" in tracker.last
    assert -1 <= tracker.last["head_out/attribution_corr"] <= 1
    top = max(abs(v) for v in head_out.values.ravel())
    assert abs(tracker.last["head_out/top1"]) == pytest.approx(top)
    files = {p.name for p in (tmp_path / "artifacts").rglob("*")}
    assert {"head_out.png", "block_every.png", "path_to_final.png", "patching.html", "top_components.md"} <= files
    page = (tmp_path / "artifacts" / "patching.html").read_text()
    assert "plotly.js v" not in page and '<script src="plotly.min.mjs">' in page  # shared, beside the page
    assert (tmp_path / "artifacts" / "plotly.min.mjs").stat().st_size > 1_000_000
    assert "prompt 0 clean" in page and "normalization" in page and "head_out" in page

    # The stage's output goes through the stage cache's codec and back.
    codec = codec_for(results)
    codec.save(results, tmp_path / f"results{codec.suffix}")
    loaded = codec.load(tmp_path / f"results{codec.suffix}")
    assert set(loaded) == set(results)
    assert (loaded["head_out"].values == head_out.values).all()


def test_positions_shared_by_every_prompt_are_labelled_with_their_role():
    model = tiny_model(n_layers=1, n_heads=2)
    pairs = random_pairs(3, 6)
    pairs["end"][:] = 5
    pairs["s2_pos"] = torch.tensor([3, 3, 3])
    pairs["io_pos"] = torch.tensor([1, 2, 1])  # ABBA and BABA mixed: IO moves, so no label
    results = activation_patching(model, pairs, grids=["resid_pre"], attribution=False)
    labels = results["resid_pre"].coords["pos"]
    assert labels[3].endswith(" S2") and labels[5].endswith(" END")
    assert not any(label.endswith(" IO") for label in labels)


def test_stage_config_errors_name_the_key():
    """Pre-flight as the runner calls it: the settings resolved against PatchingConfig (unknown keys,
    ranges and choices), then the stage's own checks (grid names, path entries)."""
    load_stage_modules()
    definition = registered_stages()["activation_patching"]

    def preflight(params):
        definition.preflight(definition.settings(params))

    with pytest.raises(ConfigError, match=r"grids\[1\]: .*found 'head_outt' \(did you mean 'head_out'\?\)"):
        preflight({"grids": ["resid_pre", "head_outt"]})
    with pytest.raises(ConfigError, match=r"^metric: .*found 'logit_dif' \(did you mean 'logit_diff'\?\)"):
        preflight({"grids": ["resid_pre"], "metric": "logit_dif"})
    with pytest.raises(ConfigError, match=r"^batch_size_prompts: expected an integer >= 1, found 0"):
        preflight({"grids": ["resid_pre"], "batch_size_prompts": 0})
    with pytest.raises(ConfigError, match=r"^engine: .*found 'fastest'"):
        preflight({"engine": "fastest"})
    with pytest.raises(ConfigError, match=r"^grids: expected at least one grid \(or a path entry\), found none"):
        preflight({"grids": []})
    with pytest.raises(ConfigError, match=r"path\[0\].receivers"):
        preflight({"grids": ["resid_pre"], "path": [{"receivers": "everything"}]})
    with pytest.raises(ConfigError, match=r"^sweeps: expected a setting of PatchingConfig \(.*grids.*\), found 'sweeps'"):
        preflight({"sweeps": ["resid_pre"]})


def test_model_dependent_errors():
    model = tiny_model(n_layers=2, attn_only=True)
    pairs = random_pairs(2, 5)
    with pytest.raises(ConfigError, match=r"grids\[0\]: 'block_every' patches mlp_out.*attention-only"):
        activation_patching(model, pairs, grids=["block_every"])
    with pytest.raises(ConfigError, match=r"path\[0\].receivers\[0\]: expected \[layer, head\] with layer < 2"):
        activation_patching(model, pairs, grids=["head_out"], path=[{"receivers": [[9, 9]], "input": "q"}])


def test_batch_size_prompts_smaller_than_the_prompts_splits_instead_of_failing():
    model = tiny_model(n_layers=1, n_heads=2)
    pairs = random_pairs(5, 6)
    small = activation_patching(model, pairs, grids=["head_out_by_pos"], batch_size_prompts=2, attribution=False)
    large = activation_patching(model, pairs, grids=["head_out_by_pos"], batch_size_prompts=500, attribution=False)
    assert abs(small["head_out_by_pos"].values - large["head_out_by_pos"].values).max() < 1e-5
