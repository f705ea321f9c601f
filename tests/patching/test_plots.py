"""Heatmaps (matplotlib and plotly) and top-k logging of labelled patching results."""

from __future__ import annotations

import io
import json
import posixpath
import re
from pathlib import Path

import numpy as np
import pytest

from interp_pipeline.patching.labelled import LabelledArray, position_labels
from interp_pipeline.patching.plots import MAX_TICKS, heatmap_figure, heatmap_html
from interp_pipeline.patching.grid_report import log_grid_figures, log_top_k
from interp_pipeline.tracking.base import NULL_TRACKER, NullRun, RecordingTracker

TOKENS = ["<|endoftext|>", "When", " John", " and", " Mary"]


def _heads() -> LabelledArray:
    values = np.array([[0.5, 7.0, -1.0], [2.0, 0.0, -9.0], [5.0, -3.0, 1.5]])
    return LabelledArray(values, ("layer", "head"), name="head_out",
                         attrs={"metric": "logit_diff", "normalized": True, "method": "exact"})


def _positions(tokens: list[str] = TOKENS) -> LabelledArray:
    values = np.linspace(-2.0, 1.0, 2 * len(tokens)).reshape(2, len(tokens))
    return LabelledArray(values, ("layer", "pos"), {"pos": position_labels(tokens)}, name="resid_pre",
                         attrs={"metric": "logit_diff"})


def _block() -> LabelledArray:
    values = np.arange(3 * 2 * 5, dtype=np.float64).reshape(3, 2, 5) - 10.0
    values[1, 0, 3] = np.nan
    return LabelledArray(values, ("component", "layer", "pos"),
                         {"component": ["resid_pre", "attn_out", "mlp_out"], "pos": position_labels(TOKENS)},
                         name="block_every", attrs={"metric": "kl"})


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def _panels(figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible() and ax.images]


def _ticks(labels) -> list[str]:
    return [label.get_text() for label in labels]


class _Run(NullRun):
    def __init__(self) -> None:
        self.artifacts: list[tuple[str, str | None]] = []
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.update(metrics)

    def set_tags(self, tags) -> None:
        self.tags.update(tags)

    def log_artifact(self, path, artifact_path=None) -> None:
        self.artifacts.append((Path(path).name, artifact_path))


def _mlflow_accepts(name: str) -> bool:
    # MLflow's rule for metric and tag names (mlflow.utils.validation), without importing it.
    norm = posixpath.normpath(name)
    return (re.fullmatch(r"[/\w.\- ]*", name) is not None and norm == name and norm != "."
            and not norm.startswith(("..", "/")))


# --- matplotlib ---------------------------------------------------------------------

def test_a_2d_heatmap_is_labelled_and_centred_on_zero() -> None:
    figure = heatmap_figure(_heads())
    (ax,) = _panels(figure)
    image = ax.images[0]
    assert image.get_clim() == (-9.0, 9.0)
    assert image.get_cmap().name.startswith("RdBu")
    assert _ticks(ax.get_xticklabels()) == ["0", "1", "2"]
    assert _ticks(ax.get_yticklabels()) == ["0", "1", "2"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("head", "layer")
    assert image.colorbar.ax.get_ylabel() == "logit_diff (normalized)"
    assert figure.get_suptitle() == "head_out (exact)"


def test_token_labels_go_on_the_position_axis_turned() -> None:
    figure = heatmap_figure(_positions(), title="IOI: resid_pre")
    (ax,) = _panels(figure)
    labels = ax.get_xticklabels()
    assert _ticks(labels) == position_labels(TOKENS)
    assert all(label.get_rotation() == 60 for label in labels)
    assert ax.images[0].get_clim() == (-2.0, 2.0)
    assert figure.get_suptitle() == "IOI: resid_pre"


def test_a_3d_array_is_one_panel_per_component_on_one_scale() -> None:
    figure = heatmap_figure(_block())
    panels = _panels(figure)
    assert [ax.get_title() for ax in panels] == ["resid_pre", "attn_out", "mlp_out"]
    assert {ax.images[0].get_clim() for ax in panels} == {(-19.0, 19.0)}
    assert all(_ticks(ax.get_xticklabels()) == position_labels(TOKENS) for ax in panels)
    assert [ax.get_ylabel() for ax in panels] == ["layer", "", ""]
    others = [ax for ax in figure.axes if ax.get_visible() and ax not in panels]
    assert [ax.get_ylabel() for ax in others] == ["kl"]  # one colourbar for all three


def test_many_panels_wrap_and_4d_arrays_flatten_their_middle_dims() -> None:
    values = np.random.default_rng(0).normal(size=(6, 2, 3, 4))
    array = LabelledArray(values, ("layer", "pos", "head", "dest_pos"),
                          {"pos": position_labels(TOKENS[:2])}, name="four_d")
    figure = heatmap_figure(array)
    panels = _panels(figure)
    assert [ax.get_title() for ax in panels] == [f"L{i}" for i in range(6)]
    assert _ticks(panels[0].get_yticklabels())[:4] == ["pos 0 '<|endoftext|>' H0", "pos 0 '<|endoftext|>' H1",
                                                       "pos 0 '<|endoftext|>' H2", "pos 1 'When' H0"]
    assert panels[0].get_ylabel() == "pos x head"
    # Three panels a row: only the bottom row names the x axis.
    assert [bool(ax.get_xlabel()) for ax in panels] == [False] * 3 + [True] * 3


def test_the_figure_grows_with_the_labels_and_thins_crowded_ticks() -> None:
    small = heatmap_figure(_positions()).get_size_inches()
    many = [f"t{i}" for i in range(150)]
    figure = heatmap_figure(_positions(many))
    assert figure.get_size_inches()[0] > small[0]
    labels = _ticks(_panels(figure)[0].get_xticklabels())
    assert 1 < len(labels) <= MAX_TICKS and labels[0] == "0 't0'"


def test_awkward_values_and_tokens_still_render() -> None:
    # "$" would start matplotlib mathtext; all-zero values have no scale of their own.
    array = LabelledArray(np.zeros((2, 3)), ("layer", "pos"), {"pos": position_labels(["$", " cost", " $5"])},
                          name="zeros")
    figure = heatmap_figure(array)
    (ax,) = _panels(figure)
    assert ax.images[0].get_clim() == (-1.0, 1.0)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_a_1d_array_is_one_row() -> None:
    array = LabelledArray(np.array([1.0, -4.0, 2.0]), ("layer",), name="per_layer")
    (ax,) = _panels(heatmap_figure(array))
    assert ax.images[0].get_array().shape == (1, 3) and ax.get_xlabel() == "layer"
    assert heatmap_html(array).data[0].text[0][1] == "L1"


# --- plotly -------------------------------------------------------------------------

def test_the_html_heatmap_is_centred_and_hovers_with_labels() -> None:
    figure = heatmap_html(_positions())
    (trace,) = figure.data
    assert trace.type == "heatmap"
    assert (trace.zmid, trace.zmin, trace.zmax) == (0.0, -2.0, 2.0)
    assert trace.colorscale[0][1] == "rgb(103,0,31)"  # RdBu: red low, blue high, as in the PNG
    assert trace.text[0][2] == "L0 pos 2 ' John'"
    assert "%{text}" in trace.hovertemplate and "logit_diff" in trace.hovertemplate
    # plotly would read "<|endoftext|>" as a tag and drop it.
    assert figure.layout.xaxis.ticktext[0] == "0 '&lt;|endoftext|&gt;'"
    assert figure.layout.yaxis.autorange == "reversed"
    assert figure.layout.title.text == "resid_pre"


def test_the_html_of_a_3d_array_has_a_panel_per_component_on_one_scale() -> None:
    figure = heatmap_html(_block(), title="block")
    assert len(figure.data) == 3
    assert {(t.zmin, t.zmax) for t in figure.data} == {(-19.0, 19.0)}
    assert [t.showscale for t in figure.data] == [True, False, False]
    assert [a.text for a in figure.layout.annotations] == ["resid_pre", "attn_out", "mlp_out"]
    assert figure.data[1].z[0][3] is None  # the NaN cell: a gap


# --- logging ------------------------------------------------------------------------

def test_grid_figures_are_logged_as_png_and_html(tmp_path: Path, _close_figures) -> None:
    run = _Run()
    tracker = RecordingTracker(run, tmp_path)
    log_grid_figures(tracker, _heads(), prefix="patching/", title="IOI head_out")
    png, html = tmp_path / "patching" / "head_out.png", tmp_path / "patching" / "head_out.html"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "IOI head_out" in html.read_text()
    assert run.artifacts == [("head_out.png", "patching"), ("head_out.html", "patching")]
    assert _close_figures.get_fignums() == []


def test_a_null_tracker_draws_nothing(_close_figures) -> None:
    log_grid_figures(NULL_TRACKER, _heads())
    assert _close_figures.get_fignums() == []


def test_top_k_is_logged_as_metrics_tags_and_a_table(tmp_path: Path) -> None:
    run = _Run()
    tracker = RecordingTracker(run, tmp_path)
    table = log_top_k(tracker, _heads(), k=3, prefix="patching/")
    assert run.metrics == {"patching/head_out/top1": -9.0, "patching/head_out/top2": 7.0,
                           "patching/head_out/top3": 5.0}
    assert run.tags == {"patching/head_out/top1": "L1H2", "patching/head_out/top2": "L0H1",
                        "patching/head_out/top3": "L2H0"}
    saved = json.loads((tmp_path / "patching" / "head_out_top3.json").read_text())
    assert saved["top"][0] == {"rank": 1, "label": "L1H2", "value": -9.0, "coords": {"layer": "1", "head": "2"}}
    assert saved["attrs"]["metric"] == "logit_diff"
    lines = table.splitlines()
    assert lines[0].split() == ["rank", "component", "logit_diff", "(normalized)"]
    assert lines[1].split() == ["1", "L1H2", "-9"] and len(lines) == 4


def test_metric_names_are_made_safe_for_mlflow(tmp_path: Path) -> None:
    run = _Run()
    tracker = RecordingTracker(run, tmp_path)
    array = LabelledArray(np.ones((1, 2)), ("layer", "pos"), {"pos": position_labels(["<bos>", "é"])},
                          name="resid:pre")
    log_top_k(tracker, array, k=2, prefix="/ioi//run../")
    assert run.metrics and all(_mlflow_accepts(name) for name in [*run.metrics, *run.tags])
    assert run.tags["ioi/run../resid_pre/top2"] == "L0 pos 1 'é'"
