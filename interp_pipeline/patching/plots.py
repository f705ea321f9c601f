"""Heatmaps and top-k tables of patching results (:class:`~interp_pipeline.patching.labelled.LabelledArray`).

Both figures use one colour convention, TransformerLens's patching demos' own: the
diverging RdBu scale centred on zero with symmetric limits (+-max|value| over the
whole array), so blue is positive, red negative, white zero, and a colour means the
same number in every panel. A 2-D array is one heatmap (first dim down, second
across); a 3-D array is one panel per entry of its first dim (TransformerLens's
facet_col for the ``*_every`` grids); past 3-D the middle dims are flattened into
the rows, labelled "L3 pos 5 ..." (``transpose`` or ``sel`` first for another view).
NaN cells (not computed) are grey.

:func:`heatmap_figure` gives a matplotlib Figure (the PNG), :func:`heatmap_html` a
plotly Figure (the interactive HTML, with each cell's label and value on hover).
The caller closes a matplotlib figure it does not hand to a tracker (``plt.close``);
interp_pipeline.patching.grid_report's :func:`log_grid_figures` closes its own.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.html_page import escape
from interp_pipeline.patching.labelled import LabelledArray, component_label

if TYPE_CHECKING:
    import numpy as np

COLORSCALE = "RdBu"  # low red, high blue in both matplotlib and plotly
NAN_COLOR = "#d9d9d9"
# Past this many labels on an axis only every n-th is drawn; more would overlap.
MAX_TICKS = 60
MIN_FIGURE_WIDTH = 640  # px of an HTML figure: its title and plotly's toolbar side by side
# Panels per row for a 3-D array; more panels wrap onto further rows.
MAX_PANEL_COLUMNS = 4
# MLflow metric and tag names: letters, digits, _ - . / and space (colons too, but not
# on Windows), and no path tricks (see _metric_name).


@dataclass
class _Grid:
    """An array as panels of one 2-D grid each: values [panel, row, col] and their labels."""

    values: np.ndarray
    cell_labels: np.ndarray | None  # object array [panel, row, col] of component_label, when asked for
    panel_titles: list[str | None]
    rows: list[str]
    cols: list[str]
    row_dim: str
    col_dim: str


def _grid(array: LabelledArray, cell_labels: bool = False) -> _Grid:
    import numpy as np

    values = np.asarray(array.values, dtype=np.float64)
    cells = None
    if cell_labels:  # only the HTML hovers with them; a big grid has many
        cells = np.empty(array.shape, dtype=object)
        for index in np.ndindex(array.shape):
            cells[index] = array.label(index)
    dims, coords = array.dims, array.coords
    if array.ndim == 1:
        return _Grid(values.reshape(1, 1, -1), _reshape(cells, (1, 1, -1)), [None], [""], coords[dims[0]], "",
                     dims[0])
    if array.ndim == 2:
        return _Grid(values[None], _reshape(cells, (1, *array.shape)), [None], coords[dims[0]], coords[dims[1]],
                     dims[0], dims[1])
    middle = dims[1:-1]
    if len(middle) == 1:
        rows = coords[middle[0]]
    else:
        rows = [component_label(middle, combo) for combo in itertools.product(*(coords[d] for d in middle))]
    shape = (array.shape[0], len(rows), array.shape[-1])
    titles: list[str | None] = [component_label(dims[:1], [label]) for label in coords[dims[0]]]
    return _Grid(values.reshape(shape), _reshape(cells, shape), titles, rows, coords[dims[-1]], " x ".join(middle),
                 dims[-1])


def _reshape(cells: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    return None if cells is None else cells.reshape(shape)


def color_limit(array: LabelledArray) -> float:
    """max|value| over the finite cells: the colour scale runs from minus this to plus this (1.0 if all are 0)."""
    import numpy as np

    finite = np.abs(array.values[np.isfinite(array.values)])
    limit = float(finite.max()) if finite.size else 0.0
    return limit if limit > 0 else 1.0


def colorbar_label(array: LabelledArray) -> str:
    """The metric from ``attrs`` ("logit_diff (normalized)"), else "value"."""
    label = str(array.attrs.get("metric", "value"))
    if array.attrs.get("normalized") or array.attrs.get("normalised"):  # "normalised": results stored before the rename
        label += " (normalized)"
    return label


def _default_title(array: LabelledArray) -> str:
    method = array.attrs.get("method")
    return f"{array.name} ({method})" if method else array.name


def _panel_columns(n_panels: int) -> int:
    return n_panels if n_panels <= MAX_PANEL_COLUMNS else math.ceil(math.sqrt(n_panels))


def _tick_step(n: int) -> int:
    return max(1, math.ceil(n / MAX_TICKS))


def _rotate(labels: list[str]) -> bool:
    # Short labels (layer and head numbers) read well level; tokens need turning.
    return any(len(label) > 3 for label in labels)


def _mpl_text(text: str) -> str:
    # matplotlib reads text between two "$" as mathtext: a "$" token would break the figure.
    return text.replace("$", r"\$")


def heatmap_figure(array: LabelledArray, title: str | None = None) -> Any:
    """A matplotlib Figure of ``array`` (see the module docstring for the layout); title defaults to its name.

    The figure grows with the number of labels; the caller closes it (``plt.close``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = _grid(array)
    n_panels, n_rows, n_cols = grid.values.shape
    columns = _panel_columns(n_panels)
    panel_rows = math.ceil(n_panels / columns)
    rotate = _rotate(grid.cols)
    cell = 0.28 if max(n_rows, n_cols) <= 40 else 0.16
    x_room = min(0.065 * max(len(c) for c in grid.cols), 1.8) if rotate else 0.25
    y_room = min(0.065 * max(len(r) for r in grid.rows), 1.8)
    panel_w = min(max(0.9 + cell * n_cols, 2.6), 24.0) + y_room
    panel_h = min(max(0.7 + cell * n_rows, 1.8), 18.0) + x_room + (0.3 if n_panels > 1 else 0.0)
    figure, axes = plt.subplots(panel_rows, columns, squeeze=False, layout="constrained",
                                figsize=(columns * panel_w + 1.3, panel_rows * panel_h + 0.5))
    limit = color_limit(array)
    cmap = plt.get_cmap(COLORSCALE).with_extremes(bad=NAN_COLOR)
    x_step, y_step = _tick_step(n_cols), _tick_step(n_rows)
    fontsize = 8 if max(n_rows, n_cols) <= 40 else 6
    used = []
    for p, ax in enumerate(axes.flat):
        if p >= n_panels:
            ax.set_visible(False)
            continue
        used.append(ax)
        image = ax.imshow(grid.values[p], cmap=cmap, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(0, n_cols, x_step), [_mpl_text(c) for c in grid.cols[::x_step]], fontsize=fontsize,
                      rotation=60 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor")
        ax.set_yticks(range(0, n_rows, y_step), [_mpl_text(r) for r in grid.rows[::y_step]], fontsize=fontsize)
        # Panels share their axes: labels on the left column and on each column's lowest panel only.
        if p % columns == 0:
            ax.set_ylabel(_mpl_text(_axis_title(array, grid.row_dim)))
        else:
            ax.tick_params(labelleft=False)
        if p + columns >= n_panels:
            ax.set_xlabel(_mpl_text(_axis_title(array, grid.col_dim)))
        else:
            ax.tick_params(labelbottom=False)
        if grid.panel_titles[p] is not None:
            ax.set_title(_mpl_text(grid.panel_titles[p]), fontsize=10)
    colorbar = figure.colorbar(image, ax=used, shrink=0.9 if panel_rows == 1 else 0.6)
    colorbar.set_label(_mpl_text(colorbar_label(array)))
    heading = title or _default_title(array)
    source = array.attrs.get("position_labels")
    if source and {"pos", "dest_pos"} & set(array.dims):
        heading += f"\nposition labels: {source}"
    figure.suptitle(_mpl_text(heading))
    return figure


@dataclass
class _PixelLayout:
    """Where each panel goes, in pixels, so that no label reaches a neighbour (see :func:`heatmap_html`)."""

    columns: int
    cell: float
    y_room: float  # left of each panel: its row labels and the axis title
    x_room: float  # below each panel: its column labels and the axis title
    title_room: float  # above each panel: its title
    n_rows: int
    n_cols: int

    GAP = 24.0  # between a panel's plot and the next panel's row labels
    MARGIN = dict(l=10, r=130, t=60, b=10)  # r: the colour bar and its title

    @property
    def box_w(self) -> float:
        return self.y_room + self.cell * self.n_cols + self.GAP

    @property
    def box_h(self) -> float:
        return self.title_room + self.cell * self.n_rows + self.x_room


def _pixel_layout(grid: _Grid, max_width: float = 1500.0) -> _PixelLayout:
    # Tick labels are 11 px text, about 6.5 px a character; rotated ones (tokens) stand at 60 degrees.
    n_panels, n_rows, n_cols = grid.values.shape
    char = 6.5
    shown_rows = grid.rows[::_tick_step(n_rows)] or [""]
    shown_cols = grid.cols[::_tick_step(n_cols)] or [""]
    y_room = 28 + char * min(max(len(r) for r in shown_rows), 40)
    x_room = 34 + (char * 0.87 * min(max(len(c) for c in shown_cols), 30) + 6 if _rotate(grid.cols) else 18)
    title_room = 26.0 if n_panels > 1 else 0.0
    # Cells of 14-30 px: labels one to a cell stay legible; past MAX_TICKS labels (drawn every
    # n-th) they may be smaller.
    smallest = 14.0 if max(n_rows, n_cols) <= MAX_TICKS else 4.0
    usable = max_width - _PixelLayout.MARGIN["l"] - _PixelLayout.MARGIN["r"]
    columns = n_panels if n_panels <= MAX_PANEL_COLUMNS else math.ceil(math.sqrt(n_panels))
    while columns > 1 and usable / columns - y_room - _PixelLayout.GAP < smallest * n_cols:
        columns -= 1
    cell = (usable / columns - y_room - _PixelLayout.GAP) / n_cols
    largest = 30.0 if max(n_rows, n_cols) > 8 else 44.0  # a 2 x 4 grid of heads need not be a stamp
    cell = max(smallest, min(largest, cell, 700.0 / n_rows if n_rows * smallest <= 700 else smallest))
    return _PixelLayout(columns, cell, y_room, x_room, title_room, n_rows, n_cols)


def heatmap_html(array: LabelledArray, title: str | None = None) -> Any:
    """A plotly Figure of ``array``: one go.Heatmap per panel on one colour scale, each cell's label and value on hover.

    Sized from its labels: each panel's plot area is placed in pixels (axis domains),
    with room for its row labels on the left, its column labels and axis title below
    and its title above, so no label is drawn over a neighbouring panel.
    """
    import plotly.graph_objects as go

    grid = _grid(array, cell_labels=True)
    n_panels, n_rows, n_cols = grid.values.shape
    layout = _pixel_layout(grid)
    panel_rows = math.ceil(n_panels / layout.columns)
    margin = dict(_PixelLayout.MARGIN)
    plot_w = layout.columns * layout.box_w
    plot_h = panel_rows * layout.box_h
    # A small array (2 layers x 4 heads) still gets a figure wide enough that its title and
    # plotly's toolbar do not overlap: the extra width goes to the right of the colour bar.
    margin["r"] += max(0.0, MIN_FIGURE_WIDTH - (plot_w + margin["l"] + margin["r"]))
    width, height = plot_w + margin["l"] + margin["r"], plot_h + margin["t"] + margin["b"]
    limit = color_limit(array)
    metric = escape(colorbar_label(array))
    rotate = _rotate(grid.cols)
    x_step, y_step = _tick_step(n_cols), _tick_step(n_rows)
    figure = go.Figure()
    annotations = []
    for p in range(n_panels):
        row, col = divmod(p, layout.columns)
        x0 = col * layout.box_w + layout.y_room
        y0 = row * layout.box_h + layout.title_room  # from the top
        suffix = "" if p == 0 else str(p + 1)
        x_axis, y_axis = f"xaxis{suffix}", f"yaxis{suffix}"
        figure.update_layout({
            x_axis: dict(domain=[x0 / plot_w, (x0 + layout.cell * n_cols) / plot_w], anchor=f"y{suffix}",
                         tickmode="array", tickvals=list(range(0, n_cols, x_step)),
                         ticktext=[escape(c) for c in grid.cols[::x_step]], tickangle=-60 if rotate else 0,
                         tickfont=dict(size=11), title=dict(text=escape(_axis_title(array, grid.col_dim)),
                                                            font=dict(size=12)), automargin=False),
            y_axis: dict(domain=[1 - (y0 + layout.cell * n_rows) / plot_h, 1 - y0 / plot_h], anchor=f"x{suffix}",
                         tickmode="array", tickvals=list(range(0, n_rows, y_step)),
                         ticktext=[escape(r) for r in grid.rows[::y_step]], autorange="reversed",
                         tickfont=dict(size=11), title=dict(text=escape(_axis_title(array, grid.row_dim)),
                                                            font=dict(size=12)), automargin=False),
        })
        if grid.panel_titles[p] is not None:
            annotations.append(dict(text=escape(grid.panel_titles[p]), showarrow=False, xref="paper", yref="paper",
                                    x=(x0 + layout.cell * n_cols / 2) / plot_w, y=1 - y0 / plot_h,
                                    xanchor="center", yanchor="bottom", font=dict(size=13)))
        text = [[escape(label) for label in line] for line in grid.cell_labels[p]]
        figure.add_trace(go.Heatmap(
            # NaN as None: plotly draws a gap (the grey background) for it; 4 digits keep the page small.
            z=[[None if math.isnan(v) else float(f"{v:.4g}") for v in line] for line in grid.values[p].tolist()],
            x=list(range(n_cols)), y=list(range(n_rows)), text=text, xaxis=f"x{suffix}", yaxis=f"y{suffix}",
            hovertemplate=f"%{{text}}<br>{metric} = %{{z:.4g}}<extra></extra>",
            colorscale=COLORSCALE, zmid=0.0, zmin=-limit, zmax=limit, showscale=p == 0,
            # Title beside the bar, not above it, and a bar of at least 250 px: ticks never collide.
            colorbar=dict(title=dict(text=metric, side="right"), thickness=14, x=1.0, xpad=12, xanchor="left",
                          y=1.0, yanchor="top", len=min(1.0, max(250.0, min(plot_h, 500.0)) / plot_h)),
        ))
    figure.update_layout(title=dict(text=escape(title or _default_title(array)), x=0.0, xref="paper", y=1.0,
                                    yref="container", yanchor="top", pad=dict(t=12, l=10)),
                         width=round(width), height=round(height), margin=margin, annotations=annotations,
                         template="plotly_white", plot_bgcolor=NAN_COLOR)
    return figure


def _axis_title(array: LabelledArray, dim: str) -> str:
    """The dimension's name; on position axes, what the labels are (``attrs["position_labels"]``)."""
    source = array.attrs.get("position_labels")
    return f"{dim}: {source}" if source and dim in ("pos", "dest_pos") else dim
