"""The logit lens (nostalgebraist 2020): each layer's residual stream read out as if it were the last.

The readout is TransformerLens's ``cache.accumulated_resid(apply_ln=True)`` followed by
the unembedding: the residual stream entering each block (``resid_pre``, labelled
``0_pre``, ``1_pre``, ...) and the final one (``resid_post`` of the last block,
``final_post``), each through ``model.ln_final`` with its normalisation statistics
recomputed from that state, then ``model.unembed``. Calling the model's own modules,
rather than a formula with ``W_U``, is what makes the same code right for a
HookedTransformer (LayerNorm folded into ``W_U``: ``ln_final`` only centres and scales)
and a TransformerBridge in compatibility mode (whose modules wrap the Hugging Face
ones); the final state then gives the model's logits exactly (tested against
``run_with_cache`` on both).

Everything per (state, position) is reduced as soon as a state's logits exist, so
GPT-2's 50,257-wide vocabulary never sits in memory for all states at once. :func:`lens_report`
is the logit_lens stage's work: the lens logged as metrics per state, a markdown table, PNGs
(analysis.look_figures) and one HTML page (analysis.look_pages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import LogitLensConfig
from interp_pipeline.analysis.prompt_set import NO_TARGET, PromptSet, batches, check_prompt_settings, select_positions
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.common.progress import progress
from interp_pipeline.tracking.base import Tracker

if TYPE_CHECKING:
    import numpy as np
    from jaxtyping import Float
    from torch import Tensor

RESID_HOOKS = ("hook_resid_pre", "hook_resid_post")


def state_labels(n_layers: int) -> list[str]:
    """TransformerLens's accumulated_resid labels: ``0_pre`` ... ``{n-1}_pre``, ``final_post``."""
    return [f"{layer}_pre" for layer in range(n_layers)] + ["final_post"]


def residual_states(cache: Any, n_layers: int) -> Float[Tensor, "state batch pos d_model"]:
    """The residual stream entering each block, and after the last one (accumulated_resid's stack)."""
    import torch

    return torch.stack([cache["resid_pre", layer] for layer in range(n_layers)]
                       + [cache["resid_post", n_layers - 1]])


def lens_logits(model: Any, state: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos vocab"]:
    """One residual state read out: the final LayerNorm (statistics of this state), then the unembedding."""
    return model.unembed(model.ln_final(state))


@dataclass
class SequenceLens:
    """One sequence's lens, per state and position: top-k tokens, and how the target fares."""

    top_ids: np.ndarray  # int [state, pos, k]
    top_probs: np.ndarray  # float [state, pos, k]
    target_prob: np.ndarray  # float [state, pos], nan where no target
    target_rank: np.ndarray  # float [state, pos] (0 = top), nan where no target
    kl_to_final: np.ndarray  # float [state, pos]: KL(final || state) in nats
    agrees: np.ndarray  # bool [state, pos]: the state's top-1 is the model's top-1


@dataclass
class LensResult:
    labels: list[str]
    sequences: list[SequenceLens] = field(default_factory=list)


def _reduce_state(logits: Tensor, final_logprobs: Tensor, targets: Tensor, top_k: int) -> dict[str, Tensor]:
    """Per (batch, pos): top-k, the target's probability and rank, KL to the final distribution, agreement."""
    import torch

    logprobs = logits.float().log_softmax(dim=-1)
    top_logprobs, top_ids = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1)
    safe = targets.clamp(min=0).unsqueeze(-1)
    target_logprob = logprobs.gather(-1, safe)
    rank = (logprobs > target_logprob).sum(dim=-1).float()
    has_target = targets != NO_TARGET
    nan = torch.tensor(float("nan"))
    final_probs = final_logprobs.exp()
    return {
        "top_ids": top_ids, "top_probs": top_logprobs.exp(),
        "target_prob": torch.where(has_target, target_logprob.squeeze(-1).exp(), nan),
        "target_rank": torch.where(has_target, rank, nan),
        "kl_to_final": (final_probs * (final_logprobs - logprobs)).sum(dim=-1).clamp(min=0),
        "agrees": top_ids[..., 0] == final_logprobs.argmax(dim=-1),
    }


def run_logit_lens(model: Any, prompts: PromptSet, *, top_k: int, batch_size_prompts: int) -> LensResult:
    """The lens of every sequence in ``prompts`` at every position (reduced: see :class:`SequenceLens`)."""
    import numpy as np
    import torch

    n_layers = model.cfg.n_layers
    result = LensResult(state_labels(n_layers), [None] * len(prompts))  # type: ignore[list-item]
    device = next(model.parameters()).device
    groups = batches(prompts, batch_size_prompts)
    with torch.inference_mode():
        for group in progress(groups, desc="logit lens", unit="batch"):
            tokens = torch.stack([prompts.tokens[i] for i in group]).to(device)
            targets = torch.stack([prompts.targets[i] for i in group]).to(device)
            logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(RESID_HOOKS))
            final_logprobs = logits.float().log_softmax(dim=-1)
            per_state = [_reduce_state(lens_logits(model, state), final_logprobs, targets, top_k)
                         for state in residual_states(cache, n_layers)]
            del cache
            for row, index in enumerate(group):
                arrays = {name: np.stack([s[name][row].cpu().numpy() for s in per_state]) for name in per_state[0]}
                result.sequences[index] = SequenceLens(**arrays)
    return result


def lens_metrics(result: LensResult, prompts: PromptSet, positions: Any) -> dict[str, list[float]]:
    """Per state (in ``result.labels``' order), averaged over every sequence's chosen positions:
    ``answer_prob``, ``answer_rank``, ``answer_top1`` (over positions with a target),
    ``kl_to_final`` and ``agreement`` (over all chosen positions)."""
    import numpy as np

    picked = [select_positions(positions, len(seq)) for seq in prompts.tokens]

    def gather(name: str) -> np.ndarray:  # [state, chosen positions of all sequences]
        return np.concatenate([getattr(s, name)[:, p] for s, p in zip(result.sequences, picked)], axis=1)

    prob, rank, top1 = gather("target_prob"), gather("target_rank"), gather("top_ids")[..., 0]
    targets = np.concatenate([prompts.targets[i].numpy()[p] for i, p in enumerate(picked)])
    has_target = targets != NO_TARGET
    metrics = {"kl_to_final": gather("kl_to_final").mean(axis=1), "agreement": gather("agrees").mean(axis=1)}
    if has_target.any():
        metrics["answer_prob"] = prob[:, has_target].mean(axis=1)
        metrics["answer_rank"] = rank[:, has_target].mean(axis=1)
        metrics["answer_top1"] = (top1[:, has_target] == targets[has_target]).mean(axis=1)
    return {name: [float(v) for v in values] for name, values in metrics.items()}


def lens_table_markdown(labels: Sequence[str], metrics: dict[str, list[float]]) -> str:
    """One row per state: each metric's value there."""
    names = list(metrics)
    lines = ["| state | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, label in enumerate(labels):
        lines.append(f"| {label} | " + " | ".join(f"{metrics[n][i]:.4g}" for n in names) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the logit_lens stage's work


def lens_report(model: Any, tokens: Tensor | None, pairs: Mapping[str, Tensor] | None, settings: LogitLensConfig,
                tracker: Tracker) -> dict[str, Any]:
    """The lens of ``settings.prompts`` or the data stage's ``tokens`` or ``pairs``: per-state metrics over
    ``positions`` logged with the state as step and by state name (``answer_prob/final_post``), a table per
    state, the shown sequence's heatmaps; returns the metrics and the shown sequence's top tokens."""
    from interp_pipeline.analysis.prompt_set import prompt_set

    check_prompt_settings(settings)
    sequences = prompt_set(model, tokens=tokens, pairs=pairs, prompts=settings.prompts, answer=settings.answer,
                           prepend_bos=settings.prepend_bos)
    show = settings.show_prompt
    if show >= len(sequences):
        raise ConfigError("show_prompt", f"expected a sequence index below {len(sequences)}, found {show}")
    result = run_logit_lens(model, sequences, top_k=settings.top_k, batch_size_prompts=settings.batch_size_prompts)
    metrics = lens_metrics(result, sequences, settings.positions)
    for step, label in enumerate(result.labels):
        tracker.log_metrics({name: values[step] for name, values in metrics.items()}, step=step)
        tracker.log_metrics({f"{name}/{label}": values[step] for name, values in metrics.items()})
    tracker.log_metrics({"n_sequences": len(sequences)})
    tracker.log_text(lens_table_markdown(result.labels, metrics), "logit_lens.md")
    _log_figures(tracker, model, sequences, result, metrics, show, settings.max_positions)
    shown = result.sequences[show]
    return {"states": result.labels, "metrics": metrics, "shown_prompt": show,
            "str_tokens": sequences.str_tokens[show],
            "top_tokens": [[[_decode(model, t) for t in pos] for pos in state] for state in shown.top_ids],
            "top_probs": shown.top_probs.tolist()}


def _decode(model: Any, token: Any) -> str:
    from interp_pipeline.analysis.prompt_set import str_tokens_of

    return str_tokens_of(model, [int(token)])[0]


def _log_figures(tracker: Tracker, model: Any, sequences: PromptSet, result: LensResult,
                 metrics: dict[str, list[float]], show: int, max_positions: int) -> None:
    """The shown sequence's heatmaps (the lens's top-1 probability; the actual next token's, where every
    position has one), and the per-layer summary, as PNGs and on one HTML page."""
    import numpy as np

    from interp_pipeline.analysis import look_figures, look_pages
    from interp_pipeline.common.html_page import html_page, html_table
    from interp_pipeline.models.labels import model_label

    name, lens = model_label(model), result.sequences[show]
    start = max(0, len(sequences.tokens[show]) - max_positions)
    cells = [[_decode(model, t) for t in row[start:, 0]] for row in lens.top_ids]
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
