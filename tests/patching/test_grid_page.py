"""patching.html: one figure per grid sized to its labels, a header, top-k tables, plotly.js shared
beside the page; rendered in headless Chromium."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import numpy as np
import pytest

from interp_pipeline.patching.labelled import LabelledArray, position_labels
from interp_pipeline.patching.plots import heatmap_html
from interp_pipeline.patching.grid_report import grid_page_parts
from interp_pipeline.tracking.base import NullRun, RecordingTracker

# GPT-2 small's shape on an IOI prompt: what the page was too crowded for.
TOKENS = ["<|endoftext|>", "When", " Mary", " and", " John", " went", " to", " the", " store", ",", " John",
          " gave", " a", " drink", " to"]
ATTRS = {"metric": "logit_diff", "normalized": True, "method": "exact", "position_labels": "prompt 0's tokens"}
HEADER = {"model": "gpt2 (12 layers x 12 heads, d_model 768)", "prompt 0 clean": "When Mary and John went to",
          "metric": "logit_diff", "normalization": "(patched - corrupted) / (clean - corrupted)"}


def _arrays() -> list[LabelledArray]:
    rng = np.random.default_rng(0)
    pos = {"pos": position_labels(TOKENS)}
    return [
        LabelledArray(rng.standard_normal((12, 15)), ("layer", "pos"), pos, name="resid_pre", attrs=ATTRS),
        LabelledArray(rng.standard_normal((12, 12)), ("layer", "head"), name="head_out", attrs=ATTRS),
        LabelledArray(rng.standard_normal((12, 12, 15)), ("layer", "head", "pos"), pos, name="head_out_by_pos",
                      attrs=ATTRS),
        LabelledArray(rng.standard_normal((3, 12, 15)), ("component", "layer", "pos"),
                      {"component": ["resid_pre", "attn_out", "mlp_out"], **pos}, name="block_every", attrs=ATTRS),
    ]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    tracker = RecordingTracker(NullRun(), folder)
    tracker.log_html_page(grid_page_parts(_arrays(), HEADER, top_k=5), "patching.html", "Activation patching")
    tracker.log_html_page(grid_page_parts(_arrays()[:1]), "second.html", "Another page")
    return folder


def test_the_page_is_small_and_loads_one_shared_plotly_js(page):
    html = (page / "patching.html").read_text()
    assert (page / "patching.html").stat().st_size < 1_000_000
    assert "plotly.js v" not in html and html.count('<script src="plotly.min.mjs"></script>') == 1
    assert (page / "plotly.min.mjs").read_text().count("plotly.js v") >= 1  # written once, for both pages
    assert '<script src="plotly.min.mjs"></script>' in (page / "second.html").read_text()
    for key, value in HEADER.items():
        assert f"<th>{key}</th><td class=\"text\">{value}</td>" in html
    assert html.count("top 5 by |value|") == 4  # a top-k table per grid


def _boxes(figure):
    """Each panel's plot area in pixels, grown by the room its labels take (from the layout itself)."""
    layout = figure.layout
    margin = layout.margin
    plot_w = layout.width - margin.l - margin.r
    plot_h = layout.height - margin.t - margin.b
    boxes = []
    for trace in figure.data:
        x = layout[trace.xaxis.replace("x", "xaxis")].domain
        y = layout[trace.yaxis.replace("y", "yaxis")].domain
        boxes.append((x[0] * plot_w, (1 - y[1]) * plot_h, x[1] * plot_w, (1 - y[0]) * plot_h))
    return boxes


def test_panels_keep_room_for_their_labels_and_fit_the_page():
    for array in _arrays():
        figure = heatmap_html(array)
        assert figure.layout.width <= 1500
        boxes = _boxes(figure)
        widths = {round(b[2] - b[0]) for b in boxes}
        assert len(widths) == 1 and widths.pop() / array.shape[-1] >= 14  # cells wide enough for a label each
        # Between two panels side by side: the longest row label (6.5 px a character) fits.
        room = 6.5 * max(len(str(r)) for r in array.coords[array.dims[-2]])
        for a, b in itertools.combinations(boxes, 2):
            if abs(a[1] - b[1]) < 1:  # same row of panels
                assert abs(b[0] - a[2]) >= room or abs(a[0] - b[2]) >= room
            else:  # rows apart: room for rotated position labels below
                assert abs(b[1] - a[3]) >= 40 or abs(a[1] - b[3]) >= 40


def test_chromium_draws_every_figure_with_the_shared_plotly_js(page):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed to render the page (apt-get install -y chromium)"
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           "--dump-dom", (page / "patching.html").as_uri()], capture_output=True, text=True,
                          timeout=120)
    dom = done.stdout
    # plotly.js draws each figure as an svg.main-svg; without the shared file nothing is drawn.
    assert len(re.findall(r'class="plot-container plotly"', dom)) == 4, done.stderr[-2000:]
    assert dom.count('class="main-svg"') >= 4
