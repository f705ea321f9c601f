"""PNG figures of the look-inside stages (matplotlib): residual norms, attention grids, logit-lens heatmaps.

Each is sized from its content (tokens, heads, layers) so that it is readable when the PNG
is opened at its default size: a cell per token pair or per (layer, position) of at least a
few millimetres, token labels in a font that shrinks with their number but not below 5 pt.
Every figure's title names the model, the prompt and the quantity shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# Tokens longer than this are cut in cell texts and tick labels ("…" marks the cut).
MAX_LABEL_CHARS = 10


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def token_label(text: str, max_chars: int = MAX_LABEL_CHARS) -> str:
    """A token as a tick label: whitespace made visible, so " the" and "the" differ, and cut short."""
    shown = repr(text)[1:-1] if text.strip() != text or not text else text
    shown = shown.replace(" ", "·") if text.startswith(" ") or text.endswith(" ") else shown
    return shown if len(shown) <= max_chars else shown[:max_chars - 1] + "…"


def model_label(model: Any) -> str:
    """The model's name for titles: TransformerLens's ``cfg.model_name`` ("custom" for toy models,
    then its size instead)."""
    name = getattr(model.cfg, "model_name", None)
    if name and name != "custom":
        return str(name)
    return f"{model.cfg.n_layers}-layer model (d_model {model.cfg.d_model})"


def _font_size(n_labels: int) -> float:
    return max(5.0, min(9.0, 220.0 / max(n_labels, 1)))


def norms_figure(norms: Mapping[str, np.ndarray], title: str) -> Any:
    """Mean residual-stream norm per layer, a line per point of the block (mean over sequences,
    shaded between the smallest and largest sequence's when there are several)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for point, values in norms.items():
        layers = range(values.shape[1])
        ax.plot(layers, values.mean(axis=0), marker="o", label=point)
        if values.shape[0] > 1:
            ax.fill_between(layers, values.min(axis=0), values.max(axis=0), alpha=0.15)
    n_layers = next(iter(norms.values())).shape[1]
    ax.set_xticks(range(n_layers), [f"L{layer}" for layer in range(n_layers)])
    ax.set_xlabel("layer")
    ax.set_ylabel("mean L2 norm over positions")
    ax.set_title(title, fontsize=10)
    ax.legend(title="hook")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def attention_grid_figure(patterns: np.ndarray, layers: Sequence[int], heads: Sequence[int],
                          str_tokens: Sequence[str], title: str) -> Any:
    """Attention patterns ``[layer, head, query, key]``: a panel per (layer, head), layers down and
    heads across, query tokens on the first column's y axis, key tokens on the last row's x axis."""
    plt = _pyplot()
    n_rows, n_cols, n_tok = len(layers), len(heads), len(str_tokens)
    cell = max(1.7, 0.13 * n_tok)  # inches per panel: a token row of ~3 mm at least
    # No sharex/sharey: every panel has the same extent anyway, and shared axes make each panel's
    # set_ticks walk all its siblings, quadratic in panels (GPT-2 small's 12 x 12 grid: minutes).
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.2 + cell * n_cols, 1.4 + cell * n_rows), squeeze=False)
    labels = [token_label(t) for t in str_tokens]
    font = _font_size(n_tok)
    image = None
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r][c]
            image = ax.imshow(patterns[r, c], cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
            ax.set_xticks(range(n_tok), labels, rotation=90, fontsize=font)
            ax.set_yticks(range(n_tok), labels, fontsize=font)
            ax.tick_params(length=1.5, labelbottom=r == n_rows - 1, labelleft=c == 0)
            if r == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"layer {layer}\nquery token", fontsize=9)
            if r == n_rows - 1:
                ax.set_xlabel("key token", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    bar = fig.colorbar(image, ax=axes, fraction=0.02, pad=0.01)
    bar.set_label("attention probability (query → key)")
    return fig


def lens_heatmap_figure(values: np.ndarray, cell_tokens: Sequence[Sequence[str]], states: Sequence[str],
                        position_labels: Sequence[str], title: str, scale_label: str) -> Any:
    """States down, positions across, coloured by ``values`` [state, pos] on [0, 1] (nan: grey), with the
    lens's top-1 token written in each cell."""
    import numpy as np

    plt = _pyplot()
    n_states, n_pos = values.shape
    fig, ax = plt.subplots(figsize=(2.2 + 0.78 * n_pos, max(3.4, 1.8 + 0.42 * n_states)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")  # no value (no next token): grey
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    font = max(5.0, min(8.0, 160.0 / n_pos))
    for s in range(n_states):
        for p in range(n_pos):
            ax.text(p, s, token_label(cell_tokens[s][p], 8), ha="center", va="center", fontsize=font,
                    color="black" if not values[s, p] <= 0.6 else "white")
    ax.set_xticks(range(n_pos), [token_label(t) for t in position_labels], rotation=60, ha="right",
                  fontsize=font + 1)
    ax.set_yticks(range(n_states), list(states))
    ax.set_xlabel("position: input token (each cell: the top token predicted next)")
    ax.set_ylabel("layer (the residual\nstream entering it)")
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    bar.set_label(scale_label)
    fig.tight_layout()
    return fig


def lens_layers_figure(states: Sequence[str], metrics: Mapping[str, Sequence[float]], title: str) -> Any:
    """Per layer: the answer's probability, the top-1 agreement with the final logits (both on
    [0, 1], left axis) and the KL divergence to the final distribution (right axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = range(len(states))
    for name in ("answer_prob", "answer_top1", "agreement"):
        if name in metrics:
            ax.plot(x, metrics[name], marker="o", label=name)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("probability / fraction of positions")
    ax.set_xticks(list(x), list(states))
    ax.set_xlabel("layer (residual stream entering it)")
    right = ax.twinx()
    right.plot(x, metrics["kl_to_final"], marker="s", linestyle="--", color="grey", label="kl_to_final")
    right.set_ylabel("KL(final ‖ layer), nats")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center left")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
