"""The inspect_model stage: tokens, residual-stream norms, attention patterns and top predictions on prompts.

The work is interp_pipeline.analysis.inspect; the figures analysis.look_figures (PNG) and
analysis.look_pages (the stage's HTML page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.prompt_set import check_prompt_params, check_prompt_sources
from interp_pipeline.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor

METRICS = ("n_sequences", "norm/*", "top1_prob", "answer_prob", "answer_top1")


def _check_params(params: dict[str, Any]) -> None:
    check_prompt_params(params)
    for key in ("layers", "heads"):
        value = params.get(key)
        if value is not None and (isinstance(value, str) or not isinstance(value, Sequence) or not value):
            raise ConfigError(key, f"expected a non-empty list of indices, or null for all, found {value!r}")


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    check_prompt_sources(params, inputs)
    model = inputs.get("model")
    if model is None:
        return
    for i, layer in enumerate(params.get("layers") or []):
        model.check_layer(f"layers[{i}]", layer)
    for i, head in enumerate(params.get("heads") or []):
        model.check_head(f"heads[{i}]", head)


def model_label(model: Any) -> str:
    """The model's name for titles: TransformerLens's ``cfg.model_name`` ("custom" for toy models,
    then its size instead)."""
    name = getattr(model.cfg, "model_name", None)
    if name and name != "custom":
        return str(name)
    return f"{model.cfg.n_layers}-layer model (d_model {model.cfg.d_model})"


@stage("inspect_model", outputs=("inspection",), preflight=_check_params, check_shapes=_check_shapes,
       metrics=METRICS, summary=("top1_prob", "answer_top1"))
def inspect_model(
    model: Any,
    tokens: Int[Tensor, "batch pos"] | None = None,
    pairs: dict[str, Tensor] | None = None,
    prompts: list[str] | None = None,
    prepend_bos: bool = True,
    layers: list[int] | None = None,
    heads: list[int] | None = None,
    positions: Any = "last",
    top_k: int = 5,
    show_prompt: int = 0,
    exclude_bos: bool = True,
    max_table_prompts: int = 8,
    batch_size: int = 16,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Any]:
    """Tokens, residual norms per layer, attention patterns and top-k next tokens, on prompts or a dataset.

    The sequences are ``prompts`` (text), or a data stage's ``tokens`` (each row's actual next
    token is its target) or ``pairs`` (clean prompts, the answer at END). Logs ``norm/resid_pre``
    (and ``_mid``, ``_post``) with the layer as step, the top-k's ``top1_prob`` and, where a
    target is known, ``answer_prob`` and ``answer_top1`` at ``positions``; tables (markdown),
    PNGs (norms, an attention grid of layers x heads for sequence ``show_prompt``) and one HTML page.
    """
    from interp_pipeline.analysis.inspect import inspect_prompts, prediction_metrics
    from interp_pipeline.analysis.prompt_set import prompt_set

    _check_params({"positions": positions, "prompts": prompts, "layers": layers, "heads": heads})
    sequences = prompt_set(model, tokens=tokens, pairs=pairs, prompts=prompts, answer=None, prepend_bos=prepend_bos)
    if show_prompt >= len(sequences):
        raise ConfigError("show_prompt", f"expected a sequence index below {len(sequences)}, found {show_prompt}")
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    heads = list(range(model.cfg.n_heads)) if heads is None else list(heads)
    result = inspect_prompts(model, sequences, layers=layers, heads=heads, positions=positions, top_k=top_k,
                             show=show_prompt, exclude_bos=exclude_bos, batch_size=batch_size)

    for layer in range(model.cfg.n_layers):
        tracker.log_metrics({f"norm/{point}": float(values[:, layer].mean()) for point, values in result.norms.items()},
                            step=layer)
    metrics = {"n_sequences": len(sequences), **prediction_metrics(result.predictions)}
    tracker.log_metrics(metrics)
    _log_artifacts(tracker, model, sequences, result, layers, heads, show_prompt, max_table_prompts)
    return {
        "str_tokens": sequences.str_tokens[:max_table_prompts],
        "norms": {point: values.tolist() for point, values in result.norms.items()},
        "predictions": [r for r in result.predictions if r["prompt"] < max_table_prompts],
        "metrics": metrics,
    }


def _log_artifacts(tracker: Tracker, model: Any, sequences: Any, result: Any, layers: list[int], heads: list[int],
                   show: int, max_table_prompts: int) -> None:
    from interp_pipeline.analysis import look_figures, look_pages
    from interp_pipeline.analysis.inspect import predictions_markdown, tokens_markdown
    from interp_pipeline.html_page import html_page, html_table

    name = model_label(model)
    about = (f"prompt: {sequences.label(0)!r}" if len(sequences) == 1
             else f"{len(sequences)} sequences ({sequences.kind})")
    shown = f"prompt {show}: {sequences.label(show)!r}"
    norms_title = f"{name}: residual-stream norm per layer\n{about}"
    attention_title = f"{name}: attention patterns, {shown}"
    table = [r for r in result.predictions if r["prompt"] < max_table_prompts]
    tracker.log_text(tokens_markdown(sequences, max_table_prompts), "tokens.md")
    tracker.log_text(predictions_markdown(table), "top_predictions.md")
    tracker.log_figure(look_figures.norms_figure(result.norms, norms_title), "resid_norms")
    tracker.log_figure(look_figures.attention_grid_figure(result.patterns, layers, heads, sequences.str_tokens[show],
                                                          attention_title), "attention_patterns")
    token_rows = [{"position": p, "id": int(t), "token": repr(s)}
                  for p, (t, s) in enumerate(zip(sequences.tokens[show].tolist(), sequences.str_tokens[show]))]
    page = html_page(f"{name}: a first look", [
        f"<h2>Tokens of {shown}</h2>", html_table(token_rows, text_columns=("token",)),
        "<h2>Residual-stream norm per layer</h2>", look_pages.norms_plot(result.norms, norms_title.replace("\n", " ")),
        "<h2>Attention patterns</h2>",
        look_pages.attention_plot(result.patterns, layers, heads, sequences.str_tokens[show], attention_title),
        "<h2>Top next-token predictions</h2>",
        html_table([{**r, "token": repr(r["token"]), "prediction": repr(r["prediction"]), "target": repr(r["target"])}
                    for r in table], columns=("prompt", "position", "token", "rank", "prediction", "prob", "target"),
                   text_columns=("token", "prediction", "target")),
    ], meta=f"model: {name}; {about}")
    tracker.log_text(page, "inspect.html")
