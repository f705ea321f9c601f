"""The paper's causal-tracing figures (Meng et al. 2022, Figs. 1 and 2), as matplotlib PNGs.

- :func:`trace_figure`: one prompt, three heatmaps side by side (restored hidden state,
  MLP window, attention window), input tokens down (the subject's marked with ``*`` as
  in the paper), layers across, coloured by the object's probability after the
  restoration, the colour scale starting at the corrupted run's probability.
- :func:`average_figure`: the same three heatmaps of the average indirect effect over
  prompts, rows the paper's aligned position classes.
- :func:`layer_curves_figure`: the AIE by layer at the last subject token, one line per
  kind (the paper's Fig. 2 line plots, shown together).
- :func:`log_figures`: the causal_tracing stage's figures, all three, logged to its tracker.

Colour maps follow the ROME repository's: Purples (hidden), Greens (MLP), Reds (attention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.look_figures import _font_size, _pyplot, token_label
from interp_pipeline.models.labels import model_label
from interp_pipeline.tracing.average import POSITION_CLASSES, POSITION_LABELS

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from interp_pipeline.tracking.base import Tracker

KIND_TITLES = {"hidden": "single restored layer", "mlp": "restored MLP", "attn": "restored attention"}
KIND_COLORS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}
KIND_LINES = {"hidden": "tab:purple", "mlp": "tab:green", "attn": "tab:red"}


def _window_note(kind: str, window: int) -> str:
    return "" if kind == "hidden" else f" (window {window})"


def _panels(values: Mapping[str, np.ndarray], row_labels: Sequence[str], title: str, scale_label: str,
            window: int, vmin: Mapping[str, float] | None = None) -> Any:
    import numpy as np

    plt = _pyplot()
    kinds = list(values)
    n_rows, n_layers = next(iter(values.values())).shape
    width = 1.6 + max(2.6, 0.28 * n_layers)
    fig, axes = plt.subplots(1, len(kinds), figsize=(width * len(kinds), max(2.6, 1.4 + 0.36 * n_rows)),
                             squeeze=False)
    font = _font_size(n_rows)
    for ax, kind in zip(axes[0], kinds):
        cmap = plt.get_cmap(KIND_COLORS.get(kind, "viridis")).with_extremes(bad="lightgrey")
        grid = np.ma.masked_invalid(values[kind])
        low = (vmin or {}).get(kind)
        image = ax.imshow(grid, cmap=cmap, aspect="auto", vmin=low, interpolation="nearest")
        ax.set_yticks(range(n_rows), list(row_labels), fontsize=font)
        step = max(1, n_layers // 12)
        ax.set_xticks(range(0, n_layers, step), [str(layer) for layer in range(0, n_layers, step)])
        ax.set_xlabel("layer (its window's centre)" if kind != "hidden" else "layer")
        ax.set_title(f"Impact of {KIND_TITLES.get(kind, kind)}{_window_note(kind, window)}", fontsize=9)
        bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        bar.set_label(scale_label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def trace_figure(scores: Mapping[str, np.ndarray], tokens: Sequence[str], subject: tuple[int, int],
                 corrupted: float, clean: float, object_label: str, window: int, title: str) -> Any:
    """One prompt: ``scores[kind]`` [n_layers, n_pos] -> heatmaps [pos, layer] with token labels."""
    labels = [token_label(t) + ("*" if subject[0] <= i <= subject[1] else "") for i, t in enumerate(tokens)]
    values = {kind: grid.T[:len(tokens)] for kind, grid in scores.items()}
    heading = f"{title}\np({token_label(object_label)}): clean {clean:.3f}, corrupted {corrupted:.3f}"
    return _panels(values, labels, heading, f"p({token_label(object_label)})", window,
                   vmin={kind: corrupted for kind in values})


def average_figure(aie: Mapping[str, np.ndarray], counts: Sequence[float], window: int, title: str) -> Any:
    """``aie[kind]`` [class, n_layers] -> heatmaps with the paper's position labels (and the score rows each
    class averaged: tokens when pooled, prompts per prompt)."""
    labels = [f"{label} (n={int(n)})" for label, n in zip(POSITION_LABELS, counts)]
    return _panels(dict(aie), labels, title, "average indirect effect", window)


def layer_curves_figure(curves: Mapping[str, np.ndarray], window: int, title: str) -> Any:
    """``curves[kind]`` [n_layers]: the AIE by layer at one position class, a line per kind."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for kind, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", color=KIND_LINES.get(kind),
                label=f"{KIND_TITLES.get(kind, kind)}{_window_note(kind, window)}")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("layer")
    ax.set_ylabel("average indirect effect on p(object)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def log_figures(tracker: Tracker, model: Any, facts: Mapping[str, Tensor], aie: Mapping[str, Tensor],
                examples: Sequence[Any], window: int) -> None:
    """The average figure, the last subject token's layer curves, and one trace figure per example
    (``(prompt, scores, clean, corrupted)``: interp_pipeline.tracing.run.trace_facts's)."""
    label = model_label(model)
    kinds = [k for k in aie if k != "counts"]
    grids = {kind: aie[kind].numpy() for kind in kinds}
    tracker.log_figure(average_figure(grids, aie["counts"].tolist(), window,
                                      f"{label}: average indirect effect over {int(aie['counts'][-1])} prompts"),
                       "causal_trace_average")
    last_subject = POSITION_CLASSES.index("last_subject")
    tracker.log_figure(layer_curves_figure({kind: grids[kind][last_subject] for kind in kinds}, window,
                                           f"{label}: AIE at the last subject token"), "causal_trace_last_subject")
    for i, (prompt, scores, clean, corrupted) in enumerate(examples):
        length = int(facts["length"][prompt])
        tokens = [model.tokenizer.decode([t]) if model.tokenizer is not None else str(t)
                  for t in facts["tokens"][prompt, :length].tolist()]
        obj = int(facts["object"][prompt])
        object_label = model.tokenizer.decode([obj]) if model.tokenizer is not None else str(obj)
        subject = (int(facts["subject_first"][prompt]), int(facts["subject_last"][prompt]))
        text = model.tokenizer.decode(facts["tokens"][prompt, :length].tolist(), skip_special_tokens=True) \
            if model.tokenizer is not None else ""
        figure = trace_figure({k: v.numpy() for k, v in scores.items()}, tokens, subject, corrupted, clean,
                              object_label, window, f"{label}: {text!r}")
        tracker.log_figure(figure, f"causal_trace_prompt{i}")
