"""A model's first look on some prompts (TransformerLens's first lesson): tokens, residual-stream
norms per layer, attention patterns, and the next-token predictions.

One forward pass per batch of equal-length sequences (no padding reaches the model), with
only the hooks these read cached; works on a HookedTransformer and a TransformerBridge in
compatibility mode alike (both name their hooks ``blocks.L.hook_resid_pre``,
``blocks.L.attn.hook_pattern``). :func:`first_look` is the inspect_model stage's work: these
logged as markdown tables, PNGs (analysis.look_figures) and one HTML page (analysis.look_pages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import InspectConfig
from interp_pipeline.analysis.prompt_set import (
    NO_TARGET, PromptSet, batches, check_prompt_settings, check_prompt_sources, select_positions,
)
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.common.progress import progress
from interp_pipeline.tracking.base import Tracker

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

# The residual stream at three points of each block; attention-only models have no resid_mid
# (TransformerLens calls no hook_resid_mid there), so it is read only where the forward calls it.
RESID_POINTS = ("resid_pre", "resid_mid", "resid_post")


@dataclass
class Inspection:
    norms: dict[str, np.ndarray]  # resid point -> [sequence, layer]: mean L2 norm over positions
    patterns: np.ndarray  # [layer, head, q, k] of the shown sequence, for the chosen layers and heads
    predictions: list[dict[str, Any]]  # a row per (sequence, position, rank): the top-k next tokens


def _norm_positions(tokens: Any, bos: int | None, exclude_bos: bool) -> slice:
    # BOS's residual stream is an outlier (hundreds of times the others' norm in GPT-2: an
    # attention sink), so a mean with it would mostly measure BOS.
    skip = exclude_bos and bos is not None and len(tokens) > 1 and int(tokens[0]) == bos
    return slice(1 if skip else 0, None)


def _bos_id(model: Any) -> int | None:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return None
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def prediction_rows(prompts: PromptSet, index: int, logits: Any, positions: Sequence[int], top_k: int,
                    decode: Any) -> list[dict[str, Any]]:
    """The top-k next tokens at ``positions`` of sequence ``index`` (``logits``: [pos, vocab])."""
    probs = logits.float().softmax(dim=-1)
    rows = []
    for pos in positions:
        values, ids = probs[pos].topk(min(top_k, probs.shape[-1]))
        target = int(prompts.targets[index][pos])
        for rank, (p, token) in enumerate(zip(values.tolist(), ids.tolist())):
            rows.append({"prompt": index, "position": pos, "token": prompts.str_tokens[index][pos],
                         "rank": rank + 1, "prediction": decode(token), "prob": p,
                         "is_target": target != NO_TARGET and token == target,
                         "target": decode(target) if target != NO_TARGET else "",
                         "target_prob": float(probs[pos, target]) if target != NO_TARGET else float("nan")})
    return rows


def inspect_prompts(model: Any, prompts: PromptSet, *, layers: Sequence[int], heads: Sequence[int],
                    positions: Any, top_k: int, show: int, exclude_bos: bool, batch_size_prompts: int) -> Inspection:
    """Norms of every sequence, attention patterns of sequence ``show``, top-k at ``positions``."""
    import numpy as np
    import torch

    from interp_pipeline.analysis.prompt_set import str_tokens_of

    n_layers, bos = model.cfg.n_layers, _bos_id(model)
    wanted = {f"blocks.{layer}.hook_{point}" for layer in range(n_layers) for point in RESID_POINTS}
    wanted |= {f"blocks.{layer}.attn.hook_pattern" for layer in layers}
    norms = {point: np.full((len(prompts), n_layers), np.nan) for point in RESID_POINTS}
    patterns, predictions = None, []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for group in progress(batches(prompts, batch_size_prompts), desc="inspect", unit="batch"):
            tokens = torch.stack([prompts.tokens[i] for i in group]).to(device)
            logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in wanted)
            keep = _norm_positions(prompts.tokens[group[0]], bos, exclude_bos)
            for point in RESID_POINTS:
                for layer in range(n_layers):
                    name = f"blocks.{layer}.hook_{point}"
                    if name in cache:
                        norms[point][group, layer] = cache[name][:, keep].norm(dim=-1).mean(dim=-1).cpu().numpy()
            if show in group:
                row = group.index(show)
                patterns = np.stack([cache["pattern", layer][row, list(heads)].cpu().numpy() for layer in layers])
            for row, index in enumerate(group):
                picked = select_positions(positions, len(prompts.tokens[index]))
                predictions += prediction_rows(prompts, index, logits[row].cpu(), picked, top_k,
                                               lambda t: str_tokens_of(model, [t])[0])
            del cache
    predictions.sort(key=lambda r: (r["prompt"], r["position"], r["rank"]))
    present = {point: values for point, values in norms.items() if not np.isnan(values).all()}
    return Inspection(present, patterns, predictions)


def prediction_metrics(predictions: list[dict[str, Any]]) -> dict[str, float]:
    """Means over every (sequence, chosen position): the top-1 probability, and where a target is
    known its probability, and the fraction of positions whose top-1 it is."""
    import numpy as np

    top1 = [r for r in predictions if r["rank"] == 1]
    metrics = {"top1_prob": float(np.mean([r["prob"] for r in top1]))}
    with_target = [r for r in top1 if r["target"] != ""]
    if with_target:
        metrics["answer_prob"] = float(np.mean([r["target_prob"] for r in with_target]))
        metrics["answer_top1"] = float(np.mean([r["is_target"] for r in with_target]))
    return metrics


def tokens_markdown(prompts: PromptSet, max_sequences: int) -> str:
    """A table per sequence (up to ``max_sequences``): position, id, string token."""
    parts = []
    for i in range(min(len(prompts), max_sequences)):
        parts.append(f"### prompt {i}: {prompts.label(i, 200)}\n")
        parts.append("| position | id | token |\n|---:|---:|---|")
        for pos, (token, text) in enumerate(zip(prompts.tokens[i].tolist(), prompts.str_tokens[i])):
            parts.append(f"| {pos} | {token} | `{text!r}` |")
        parts.append("")
    if len(prompts) > max_sequences:
        parts.append(f"({len(prompts) - max_sequences} more sequences not shown)\n")
    return "\n".join(parts)


def predictions_markdown(predictions: list[dict[str, Any]]) -> str:
    lines = ["| prompt | position | token | rank | prediction | prob | target |", "|---:|---:|---|---:|---|---:|---|"]
    for r in predictions:
        mark = " ✓" if r["is_target"] else ""
        lines.append(f"| {r['prompt']} | {r['position']} | `{r['token']!r}` | {r['rank']} | "
                     f"`{r['prediction']!r}`{mark} | {r['prob']:.4f} | `{r['target']!r}` |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the inspect_model stage's work


def check_settings(settings: InspectConfig) -> None:
    """What the schema cannot say: ``positions``, ``prompts``, and ``layers``/``heads`` non-empty when given."""
    check_prompt_settings(settings)
    for key in ("layers", "heads"):
        value = getattr(settings, key)
        if value is not None and (isinstance(value, str) or not isinstance(value, Sequence) or not value):
            raise ConfigError(key, f"expected a non-empty list of indices, or null for all, found {value!r}")


def check_inputs(settings: InspectConfig, inputs: Mapping[str, Any]) -> None:
    """One source of sequences, the prompts against the tokenizer, and layers and heads against the model's
    shape (``inputs``: the shapes of the stage's inputs, before the model is built or trained)."""
    check_prompt_sources(settings, inputs)
    model = inputs.get("model")
    if model is None:
        return
    for i, layer in enumerate(settings.layers or []):
        model.check_layer(f"layers[{i}]", layer)
    for i, head in enumerate(settings.heads or []):
        model.check_head(f"heads[{i}]", head)


def first_look(model: Any, tokens: Tensor | None, pairs: Mapping[str, Tensor] | None, settings: InspectConfig,
               tracker: Tracker) -> dict[str, Any]:
    """The inspect_model stage: :func:`inspect_prompts` on ``settings.prompts`` or the data stage's ``tokens``
    or ``pairs``, logged (norms per layer as steps, prediction metrics, tables, PNGs, one HTML page); returns
    the tables' rows, the norms and the metrics."""
    from interp_pipeline.analysis.prompt_set import prompt_set

    check_settings(settings)
    sequences = prompt_set(model, tokens=tokens, pairs=pairs, prompts=settings.prompts, answer=None,
                           prepend_bos=settings.prepend_bos)
    show, shown_rows = settings.show_prompt, settings.max_table_prompts
    if show >= len(sequences):
        raise ConfigError("show_prompt", f"expected a sequence index below {len(sequences)}, found {show}")
    layers = list(range(model.cfg.n_layers)) if settings.layers is None else list(settings.layers)
    heads = list(range(model.cfg.n_heads)) if settings.heads is None else list(settings.heads)
    result = inspect_prompts(model, sequences, layers=layers, heads=heads, positions=settings.positions,
                             top_k=settings.top_k, show=show, exclude_bos=settings.exclude_bos,
                             batch_size_prompts=settings.batch_size_prompts)

    for layer in range(model.cfg.n_layers):
        tracker.log_metrics({f"norm/{point}": float(values[:, layer].mean()) for point, values in result.norms.items()},
                            step=layer)
    metrics = {"n_sequences": len(sequences), **prediction_metrics(result.predictions)}
    tracker.log_metrics(metrics)
    _log_artifacts(tracker, model, sequences, result, layers, heads, show, shown_rows)
    return {
        "str_tokens": sequences.str_tokens[:shown_rows],
        "norms": {point: values.tolist() for point, values in result.norms.items()},
        "predictions": [r for r in result.predictions if r["prompt"] < shown_rows],
        "metrics": metrics,
    }


def _log_artifacts(tracker: Tracker, model: Any, sequences: PromptSet, result: Inspection, layers: list[int],
                   heads: list[int], show: int, max_table_prompts: int) -> None:
    """tokens.md, top_predictions.md, the norms' and attention patterns' PNGs, and inspect.html."""
    from interp_pipeline.analysis import look_figures, look_pages
    from interp_pipeline.common.html_page import html_page, html_table
    from interp_pipeline.models.labels import model_label

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
