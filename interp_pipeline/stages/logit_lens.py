"""The logit_lens stage: every layer's residual stream through the final LayerNorm and the unembedding.

The lens is interp_pipeline.analysis.logit_lens (``cache.accumulated_resid(apply_ln=True)``'s
semantics, on a HookedTransformer or a TransformerBridge); the figures analysis.look_figures
(PNG) and analysis.look_pages (the stage's HTML page).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.prompt_set import check_prompt_params, check_prompt_sources
from interp_pipeline.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.stages.inspect import model_label
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor

PER_STATE = ("answer_prob", "answer_rank", "answer_top1", "kl_to_final", "agreement")
# Each per-state metric twice: with the state as step (one chart in MLflow), and by state name
# (answer_prob/0_pre ... answer_prob/final_post), which expect: can name.
METRICS = ("n_sequences", *PER_STATE, *(f"{name}/*" for name in PER_STATE))


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    check_prompt_sources(params, inputs)


@stage("logit_lens", outputs=("lens",), preflight=check_prompt_params, check_shapes=_check_shapes,
       metrics=METRICS, summary=("answer_prob/final_post", "agreement/final_post"))
def logit_lens(
    model: Any,
    tokens: Int[Tensor, "batch pos"] | None = None,
    pairs: dict[str, Tensor] | None = None,
    prompts: list[str] | None = None,
    answer: str | None = None,
    prepend_bos: bool = True,
    positions: Any = "last",
    top_k: int = 5,
    show_prompt: int = 0,
    max_positions: int = 24,
    batch_size: int = 16,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Any]:
    """The logit lens of each layer: top-k tokens, the answer's probability and rank, KL to the final logits.

    The sequences are ``prompts`` (text; ``answer`` the expected next token after each), or a
    data stage's ``tokens`` (every position's actual next token is its answer) or ``pairs``
    (the answer at END). Per state (``0_pre`` ... ``final_post``), averaged over ``positions``:
    ``answer_prob``, ``answer_rank`` (0 = top), ``answer_top1``, ``kl_to_final`` (KL(final ||
    layer), nats) and ``agreement`` (the layer's top-1 is the model's). Heatmaps of sequence
    ``show_prompt`` (PNG and one HTML page) and a table per state (markdown).
    """
    from interp_pipeline.analysis.logit_lens import lens_metrics, lens_table_markdown, run_logit_lens
    from interp_pipeline.analysis.prompt_set import prompt_set

    check_prompt_params({"positions": positions, "prompts": prompts})
    sequences = prompt_set(model, tokens=tokens, pairs=pairs, prompts=prompts, answer=answer, prepend_bos=prepend_bos)
    if show_prompt >= len(sequences):
        raise ConfigError("show_prompt", f"expected a sequence index below {len(sequences)}, found {show_prompt}")
    result = run_logit_lens(model, sequences, top_k=top_k, batch_size=batch_size)
    metrics = lens_metrics(result, sequences, positions)
    for step, label in enumerate(result.labels):
        tracker.log_metrics({name: values[step] for name, values in metrics.items()}, step=step)
        tracker.log_metrics({f"{name}/{label}": values[step] for name, values in metrics.items()})
    tracker.log_metrics({"n_sequences": len(sequences)})
    tracker.log_text(lens_table_markdown(result.labels, metrics), "logit_lens.md")
    _log_figures(tracker, model, sequences, result, metrics, show_prompt, max_positions)
    shown = result.sequences[show_prompt]
    return {"states": result.labels, "metrics": metrics, "shown_prompt": show_prompt,
            "str_tokens": sequences.str_tokens[show_prompt],
            "top_tokens": [[[sequences_decode(model, t) for t in pos] for pos in state] for state in shown.top_ids],
            "top_probs": shown.top_probs.tolist()}


def sequences_decode(model: Any, token: Any) -> str:
    from interp_pipeline.analysis.prompt_set import str_tokens_of

    return str_tokens_of(model, [int(token)])[0]


def _log_figures(tracker: Tracker, model: Any, sequences: Any, result: Any, metrics: dict[str, list[float]],
                 show: int, max_positions: int) -> None:
    """The shown sequence's heatmaps (the lens's top-1 probability; the actual next token's, where every
    position has one), and the per-layer summary, as PNGs and on one HTML page."""
    import numpy as np

    from interp_pipeline.analysis import look_figures, look_pages
    from interp_pipeline.html_page import html_page, html_table

    name, lens = model_label(model), result.sequences[show]
    start = max(0, len(sequences.tokens[show]) - max_positions)
    cells = [[sequences_decode(model, t) for t in row[start:, 0]] for row in lens.top_ids]
    columns = [f"{p}: {t}" for p, t in enumerate(sequences.str_tokens[show])][start:]
    prompt = f"prompt {show}: {sequences.label(show)!r}"
    heatmaps = [("top1", lens.top_probs[:, start:, 0], "probability of the top-1 token")]
    target = lens.target_prob[:, start:]
    if not np.isnan(target).all():  # the last position has no next token: a grey cell
        heatmaps.append(("answer", target, "probability of the actual next token"))
    page = []
    for key, values, scale in heatmaps:
        title = f"{name}: logit lens, {scale}\n{prompt}"
        tracker.log_figure(look_figures.lens_heatmap_figure(values, cells, result.labels, columns, title, scale),
                           f"logit_lens_{key}")
        page.append(look_pages.lens_heatmap_plot(values, cells, result.labels, columns, title.replace("\n", " "),
                                                 scale))
    about = f"prompt: {sequences.label(0)!r}" if len(sequences) == 1 else f"{len(sequences)} sequences"
    summary_title = f"{name}: logit lens per layer ({about})"
    tracker.log_figure(look_figures.lens_layers_figure(result.labels, metrics, summary_title), "logit_lens_layers")
    rows = [{"state": label, **{m: values[i] for m, values in metrics.items()}} for i, label in enumerate(result.labels)]
    tracker.log_text(html_page(f"{name}: logit lens", [*page, "<h2>Per layer (means over the chosen positions)</h2>",
                                                       html_table(rows, text_columns=("state",))],
                               meta=f"model: {name}; {about}; heatmaps: {prompt}"), "logit_lens.html")
