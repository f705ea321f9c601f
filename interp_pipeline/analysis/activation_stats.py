"""Activation statistics: run a model over token batches and summarise chosen hooks.

The smoke experiment's analysis: cheap, but it touches what real stages do (hooks by
TransformerLens name, iterative metrics, a figure, a JSON output).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import ActivationStatsConfig
from interp_pipeline.common.errors import ConfigError, did_you_mean
from interp_pipeline.common.progress import progress
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer


def check_hooks(model: HookedTransformer, hooks: list[str]) -> None:
    for hook in hooks:
        if hook not in model.hook_dict:
            raise ConfigError("hooks", f"expected a hook name of this model, found '{hook}'",
                              suggestion=did_you_mean(hook, model.hook_dict))


def activation_stats(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], settings: ActivationStatsConfig,
                     tracker: Tracker = NULL_TRACKER) -> dict[str, dict[str, float]]:
    """Per hook: mean, standard deviation and mean L2 norm (over the last axis) of its activations.

    Logs the loss of each batch (step = batch index), the mean loss, and a bar chart
    of the norms; returns the statistics as a JSON-able mapping.
    """
    import torch

    hooks = settings.hooks
    check_hooks(model, hooks)
    sums = {h: {"count": 0, "sum": 0.0, "sumsq": 0.0, "norm": 0.0, "rows": 0} for h in hooks}
    losses = []
    batches = torch.split(tokens.to(model.cfg.device), settings.batch_size_prompts)
    with torch.inference_mode():
        for step, batch in enumerate(progress(batches, desc="activation stats", unit="batch")):
            loss, cache = model.run_with_cache(batch, names_filter=hooks, return_type="loss")
            losses.append((loss.item(), batch.numel()))
            tracker.log_metrics({"loss": loss.item()}, step=step)
            for hook in hooks:
                acts = cache[hook].double()
                rows = acts.reshape(-1, acts.shape[-1])
                sums[hook]["count"] += acts.numel()
                sums[hook]["sum"] += acts.sum().item()
                sums[hook]["sumsq"] += (acts**2).sum().item()
                sums[hook]["norm"] += rows.norm(dim=-1).sum().item()
                sums[hook]["rows"] += rows.shape[0]

    stats: dict[str, dict[str, float]] = {}
    for hook, s in sums.items():
        mean = s["sum"] / s["count"]
        stats[hook] = {
            "mean": mean,
            "std": max(s["sumsq"] / s["count"] - mean**2, 0.0) ** 0.5,
            "norm_mean": s["norm"] / s["rows"],
        }
    loss_mean = sum(l * n for l, n in losses) / sum(n for _, n in losses)
    tracker.log_metrics({"loss_mean": loss_mean, **{f"norm_mean.{h}": v["norm_mean"] for h, v in stats.items()}})
    tracker.log_figure(_norms_figure(stats), "activation_norms")
    return stats


def _norms_figure(stats: dict[str, dict[str, float]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.2))
    ax.bar(range(len(names)), [stats[n]["norm_mean"] for n in names],
           yerr=[stats[n]["std"] for n in names], color="#4c72b0", capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("mean L2 norm")
    ax.set_title("Activation norm by hook")
    fig.tight_layout()
    return fig
