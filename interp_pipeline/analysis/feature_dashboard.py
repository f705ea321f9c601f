"""Feature dashboards: where each feature fires hardest over a token dataset, and how often.

Neuronpedia's dashboards are made by sae-dashboard, which does not install beside this
project's pins (sae-dashboard 0.8.0 wants transformer-lens 2.17, torch 2.14 with CUDA
wheels, numpy 1.26 and datasets 3.6; we run TransformerLens 3 on torch 2.13's CPU build).
So this builds a compact dashboard of its own: per feature, its max-activating contexts
(the tokens around each of its strongest positions, shaded by the feature's activation
there, the max token outlined) and a histogram of its nonzero activations. The page has
no JavaScript at all (tables, inline CSS and SVG): it opens offline and in MLflow's
artifact viewer, and weighs kilobytes where a plotly page weighs megabytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.sae_features import hook_activations, sae_input, shown, token_strings
from interp_pipeline.common.html_page import escape, html_page, html_table
from interp_pipeline.common.progress import progress

if TYPE_CHECKING:
    from jaxtyping import Bool, Float, Int
    from torch import Tensor

_CONTEXT_STYLE = ("<style>span.tok{display:inline-block;white-space:pre;font-family:monospace;font-size:13px;"
                  "padding:0 1px;margin:0 1px;border-radius:2px}span.max{outline:2px solid #c00;font-weight:bold}"
                  "td.ctx{text-align:left}div.card{border-top:1px solid #ccc;margin-top:1.5em}</style>")


@dataclass
class Context:
    """A window of a sequence around one of a feature's max-activating positions."""

    sequence: int
    position: int
    activation: float
    tokens: list[str]
    activations: list[float]   # the feature's activation at each token of the window
    highlight: int             # the index in the window of the max-activating token


@dataclass
class FeatureCard:
    feature: int
    max_activation: float
    density: float             # fraction of the dataset's counted tokens the feature fires on
    contexts: list[Context]
    histogram: list[int]       # counts of its nonzero activations
    edges: list[float]         # len(histogram) + 1 bin edges
    on_prompts: str = ""       # where it fires hardest on the prompts, for the card's header


def feature_activations(model: Any, sae: Any, tokens: Int[Tensor, "batch pos"], hook: str, features: Sequence[int],
                        *, batch_size: int) -> Float[Tensor, "batch pos n_features"]:
    """The activations of ``features`` only, at every position of ``tokens`` (float32, CPU).

    Batch-wise, keeping only the chosen columns: GPT-2's 24,576 latents over a thousand
    128-token sequences would be 13 GB in full.
    """
    import torch

    columns = torch.as_tensor(list(features), dtype=torch.long)
    found = []
    for batch in progress(torch.split(tokens, batch_size), desc="feature activations", unit="batch"):
        x = sae_input(sae, hook_activations(model, batch, hook)).to(sae.device, sae.dtype)
        with torch.inference_mode():
            found.append(sae.encode(x)[..., columns.to(sae.device)].float().cpu())
    return torch.cat(found)


def max_activating_positions(activations: Float[Tensor, "batch pos"], counted: Bool[Tensor, "batch pos"],
                             n: int) -> list[tuple[int, int, float]]:
    """Up to ``n`` (sequence, position, activation) where the feature is largest and positive,
    among ``counted`` positions, largest first (ties: earlier first)."""
    import torch

    flat = activations.masked_fill(~counted, float("-inf")).flatten()
    # A stable sort rather than topk: tied activations keep their order, so results are reproducible.
    order = torch.sort(flat, descending=True, stable=True).indices[:n]
    width = activations.shape[1]
    return [(int(i) // width, int(i) % width, float(flat[i])) for i in order if flat[i] > 0]


def context_window(sequence: int, position: int, valid_length: int, before: int, after: int) -> tuple[int, int]:
    """[start, stop) of the window around ``position``, inside the sequence's unpadded length."""
    return max(0, position - before), min(valid_length, position + after + 1)


def contexts_of(model: Any, tokens: Tensor, activations: Tensor, valid: Tensor, counted: Tensor, *, n: int,
                before: int, after: int) -> list[Context]:
    """The feature's ``n`` max-activating contexts, each ``before`` tokens left and ``after`` right of its max."""
    lengths = valid.sum(1)
    found = []
    for sequence, position, value in max_activating_positions(activations, counted, n):
        start, stop = context_window(sequence, position, int(lengths[sequence]), before, after)
        ids = tokens[sequence, start:stop].tolist()
        found.append(Context(sequence, position, value, token_strings(model, ids),
                             [round(float(a), 6) for a in activations[sequence, start:stop]], position - start))
    return found


def activation_histogram(activations: Tensor, counted: Tensor, bins: int) -> tuple[list[int], list[float]]:
    """Counts and edges of the feature's nonzero activations at counted positions (none: no bins)."""
    import numpy as np

    values = activations[counted]
    values = values[values != 0].numpy()
    if values.size == 0:
        return [], []
    counts, edges = np.histogram(values, bins=bins)
    return counts.tolist(), [float(e) for e in edges]


def feature_cards(model: Any, tokens: Tensor, activations: Tensor, valid: Tensor, counted: Tensor,
                  features: Sequence[int], *, contexts: int, before: int, after: int, bins: int) -> list[FeatureCard]:
    """A card per feature: its max activation and density over ``tokens``, its top contexts, its histogram."""
    n_counted = max(1, int(counted.sum()))
    cards = []
    for column, feature in enumerate(features):
        acts = activations[..., column]
        fired = (acts != 0) & counted
        counts, edges = activation_histogram(acts, counted, bins)
        cards.append(FeatureCard(
            feature=int(feature),
            max_activation=float(acts[counted].max()) if counted.any() else 0.0,
            density=float(fired.sum()) / n_counted,
            contexts=contexts_of(model, tokens, acts, valid, counted, n=contexts, before=before, after=after),
            histogram=counts, edges=edges))
    return cards


# ---------------------------------------------------------------- the page


def _context_html(context: Context, scale: float) -> str:
    spans = []
    for index, (token, value) in enumerate(zip(context.tokens, context.activations)):
        alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, value / scale))
        css = "tok max" if index == context.highlight else "tok"
        spans.append(f"<span class=\"{css}\" style=\"background:rgba(255,120,0,{alpha:.2f})\" "
                     f"title=\"activation {value:.4g}\">{escape(token.replace(chr(10), chr(0x21B5)))}</span>")
    return "".join(spans)


def svg_histogram(counts: Sequence[int], edges: Sequence[float], title: str, *, width: int = 460,
                  height: int = 170) -> str:
    """A bar chart as inline SVG: activation across (its range labelled), tokens up (the largest count labelled)."""
    if not counts:
        return f"<p>{escape(title)}: no nonzero activations</p>"
    left, right, top, bottom = 46, 10, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts) or 1
    bar_w = plot_w / len(counts)
    bars = "".join(
        f"<rect x=\"{left + i * bar_w:.1f}\" y=\"{top + plot_h * (1 - c / peak):.1f}\" "
        f"width=\"{max(bar_w - 1, 1):.1f}\" "
        f"height=\"{plot_h * c / peak:.1f}\" fill=\"#e67300\"><title>{edges[i]:.3g} to {edges[i + 1]:.3g}: {c}"
        "</title></rect>" for i, c in enumerate(counts))
    text = "font-size=\"11\" font-family=\"sans-serif\""
    return (f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\">"
            f"<text x=\"{width / 2}\" y=\"14\" text-anchor=\"middle\" {text}>{escape(title)}</text>{bars}"
            f"<line x1=\"{left}\" y1=\"{top + plot_h}\" x2=\"{left + plot_w}\" y2=\"{top + plot_h}\" stroke=\"#333\"/>"
            f"<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{top + plot_h}\" stroke=\"#333\"/>"
            f"<text x=\"{left}\" y=\"{top + plot_h + 13}\" {text}>{edges[0]:.3g}</text>"
            f"<text x=\"{left + plot_w}\" y=\"{top + plot_h + 13}\" text-anchor=\"end\" {text}>{edges[-1]:.3g}</text>"
            f"<text x=\"{left + plot_w / 2}\" y=\"{height - 4}\" text-anchor=\"middle\" {text}>"
            "activation (nonzero only)</text>"
            f"<text x=\"{left - 4}\" y=\"{top + 9}\" text-anchor=\"end\" {text}>{peak}</text>"
            f"<text x=\"{left - 4}\" y=\"{top + plot_h}\" text-anchor=\"end\" {text}>0</text>"
            f"<text x=\"12\" y=\"{top + plot_h / 2}\" text-anchor=\"middle\" {text} "
            f"transform=\"rotate(-90 12 {top + plot_h / 2})\">tokens</text></svg>")


def card_html(card: FeatureCard, n_tokens: int) -> str:
    """One feature: a header line, its histogram, and its contexts as a table."""
    header = (f"<div class=\"card\"><h2>feature {card.feature}</h2><p>max activation {card.max_activation:.4g}; "
              f"fires on {100 * card.density:.3g}% of {n_tokens:,} tokens"
              f"{'; ' + escape(card.on_prompts) if card.on_prompts else ''}</p>")
    histogram = svg_histogram(card.histogram, card.edges,
                              f"feature {card.feature}: activation histogram over {n_tokens:,} tokens")
    rows = "".join(f"<tr><td>{rank}</td><td>{c.activation:.4g}</td><td>{c.sequence}:{c.position}</td>"
                   f"<td class=\"ctx\">{_context_html(c, card.max_activation)}</td></tr>"
                   for rank, c in enumerate(card.contexts, 1))
    table = ("<table><tr><th>rank</th><th>activation</th><th>sequence:position</th>"
             f"<th>context (max token outlined, shade = activation)</th></tr>{rows}</table>")
    return header + histogram + table + "</div>"


def dashboard_page(title: str, meta: str, summary: Sequence[dict[str, Any]],
                   prompt_tables: Sequence[tuple[str, Sequence[dict[str, Any]]]], cards: Sequence[FeatureCard],
                   n_tokens: int) -> str:
    """The whole page: the summary, a per-token table per prompt, then a card per feature."""
    parts = [_CONTEXT_STYLE, "<h2>summary</h2>", html_table(summary, text_columns=("metric",))]
    for caption, rows in prompt_tables:
        parts += [f"<h2>{escape(caption)}</h2>",
                  html_table(rows, text_columns=("token", "top features (id activation)"))]
    parts += [card_html(card, n_tokens) for card in cards]
    return html_page(title, parts, meta=meta)


def prompt_peak(feature: int, prompts: Sequence[Any]) -> str:
    """Where ``feature`` is largest among the prompts' top-k lists, as 'on the prompts: 4.2 at ' capital''."""
    best = (0.0, "")
    for prompt in prompts:
        for token, ids, values in zip(prompt.tokens, prompt.top_ids, prompt.top_values):
            for i, v in zip(ids, values):
                if i == feature and v > best[0]:
                    best = (v, token)
    return f"on the prompts: {best[0]:.4g} at {shown(best[1])}" if best[1] else ""
