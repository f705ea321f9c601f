"""Causal tracing of a facts dict, start to end: the prompts traced, their average, the metrics and figures.

The tracing is interp_pipeline.tracing.engine (batched, started at the restored layer; a
HookedTransformer or a TransformerBridge), the average over prompts tracing.average (sums
only: memory does not grow with the prompts), the figures tracing.plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.tracing.average import POSITION_CLASSES
from interp_pipeline.tracing.engine import KINDS

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.tracing.config import CausalTracingConfig
    from interp_pipeline.tracking.base import Tracker

# Per kind: where the AIE peaks, the paper's "early site" (the peak before the last token), the peak per class.
PER_KIND = ("peak_class", "peak_layer", "peak_aie", "early_site_class", "early_site_layer",
            *(f"aie/{c}" for c in POSITION_CLASSES), *(f"peak_layer/{c}" for c in POSITION_CLASSES))


def check_kinds(kinds: Sequence[str]) -> None:
    """``kinds``: a non-empty list of hidden, mlp and attn (a list: beyond what a schema's ``choice`` says)."""
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise ConfigError("kinds", f"expected a non-empty list of {one_of(KINDS)}, found {kinds!r}")
    for i, kind in enumerate(kinds):
        if kind not in KINDS:
            raise ConfigError(f"kinds[{i}]", f"expected one of {one_of(KINDS)}, found {kind!r}",
                              suggestion=did_you_mean(str(kind), KINDS))


def check_fits_model(settings: CausalTracingConfig, n_layers: int, attn_only: bool) -> None:
    """The window and the restored kinds against the model's shape (before it loads or trains, from pre-flight)."""
    if settings.window is not None and settings.window > n_layers:
        raise ConfigError("window", f"expected at most the model's {n_layers} layers, found {settings.window}")
    if attn_only and "mlp" in settings.kinds:
        raise ConfigError("kinds", "the model is attention only: it has no MLP outputs to restore (drop 'mlp')")


def metric_names(settings: CausalTracingConfig) -> tuple[str, ...]:
    check_kinds(settings.kinds)
    per_kind = tuple(f"{kind}/{name}" for kind in settings.kinds for name in PER_KIND)
    return ("prompts_traced", "prompts_unknown", "clean_p", "corrupted_p", "noise_std", "embedding_std", "window",
            *per_kind)


def trace_facts(model: Any, facts: Mapping[str, Tensor], settings: CausalTracingConfig,
                tracker: Tracker) -> dict[str, dict[str, Tensor]]:
    """Trace ``facts`` (or a sample of ``max_prompts`` of them) on ``model``; log the metrics and figures.

    Returns ``aie`` ({kind: AIE [position class, layer]}, ``counts``: prompts per class) and
    ``examples`` (the scores of the first ``figures`` traced prompts, see :func:`_examples_output`).
    """
    import torch

    from interp_pipeline.facts.prompts import select
    from interp_pipeline.common.progress import progress
    from interp_pipeline.tracing.average import AverageEffects
    from interp_pipeline.tracing.engine import CausalTracer, default_window, embedding_std
    from interp_pipeline.tracing.plots import log_figures

    kinds, n_layers = tuple(settings.kinds), model.cfg.n_layers
    check_kinds(kinds)
    check_fits_model(settings, n_layers, model.cfg.attn_only)
    window = settings.window or default_window(n_layers)
    # Over the whole prompt set, as ROME's std is over its whole dataset's subjects (before any sample).
    unit = embedding_std(model, facts)
    if settings.max_prompts is not None and settings.max_prompts < len(facts["tokens"]):
        generator = torch.Generator().manual_seed(settings.seed)
        origin = torch.randperm(len(facts["tokens"]), generator=generator)[:settings.max_prompts].sort().values
        facts = select(facts, origin)
    else:
        origin = torch.arange(len(facts["tokens"]))
    std = float(settings.noise_std) if settings.noise_std is not None else settings.noise * unit
    tracer = CausalTracer(model, facts, noise_std=std, samples=settings.samples, window=window, kinds=kinds,
                          seed=settings.seed, batch_size_prompts=settings.batch_size_prompts)
    average = AverageEffects(kinds, n_layers, settings.average)
    examples: list[tuple[int, dict[str, Tensor], float, float]] = []
    unknown = 0
    groups = list(tracer.groups())
    for rows in progress(groups, desc="causal tracing", total=len(groups), unit="group"):
        trace = tracer.trace(rows)
        keep = trace.clean_top1 if settings.only_known else torch.ones(len(rows), dtype=torch.bool)
        unknown += int((~trace.clean_top1).sum())
        average.add(trace, facts, keep)
        for g in keep.nonzero().flatten().tolist():
            if len(examples) < settings.figures:
                examples.append((int(trace.rows[g]), {k: v[g] for k, v in trace.scores.items()},
                                 float(trace.clean[g]), float(trace.corrupted[g])))
    if average.prompts == 0:
        raise ValueError("no prompt was traced: the model predicts none of the objects (only_known: true)")

    aie = average.averages()
    tracker.log_metrics({
        "prompts_traced": average.prompts, "prompts_unknown": unknown, "clean_p": average.clean / average.prompts,
        "corrupted_p": average.corrupted / average.prompts, "noise_std": std, "embedding_std": unit, "window": window,
        **peak_metrics(aie, kinds, n_layers),
    })
    log_figures(tracker, model, facts, aie, examples, window)
    return {"aie": aie, "examples": _examples_output(examples, facts, origin, kinds)}


def peak_metrics(aie: Mapping[str, Tensor], kinds: Sequence[str], n_layers: int) -> dict[str, float]:
    """Per kind, the position class (0..5, POSITION_CLASSES) and layer where the AIE peaks, the same
    before the last token (the paper's "early site"), and the peak per class."""
    import torch

    metrics: dict[str, float] = {}
    for kind in kinds:
        grid = torch.nan_to_num(aie[kind], nan=float("-inf"))
        best = int(grid.argmax())
        metrics[f"{kind}/peak_class"] = best // n_layers
        metrics[f"{kind}/peak_layer"] = best % n_layers
        metrics[f"{kind}/peak_aie"] = float(grid.max())
        # The paper's "early site": the strongest effect at any position before the last token.
        early = int(grid[:-1].argmax())
        metrics[f"{kind}/early_site_class"] = early // n_layers
        metrics[f"{kind}/early_site_layer"] = early % n_layers
        for c, name in enumerate(POSITION_CLASSES):
            if aie["counts"][c] > 0:
                metrics[f"{kind}/aie/{name}"] = float(aie[kind][c].max())
                metrics[f"{kind}/peak_layer/{name}"] = int(aie[kind][c].argmax())
    return metrics


def _examples_output(examples: list[Any], facts: Mapping[str, Tensor], origin: Tensor,
                     kinds: tuple[str, ...]) -> dict[str, Tensor]:
    """The drawn prompts' scores [prompt, layer, position] per kind, with each prompt's row in the
    stage's input facts (``prompt``) and its clean and corrupted probabilities."""
    import torch

    width = facts["tokens"].shape[1]
    n_layers = next(iter(examples[0][1].values())).shape[0] if examples else 0
    out = {"prompt": origin[[e[0] for e in examples]].to(torch.int64),
           "clean": torch.tensor([e[2] for e in examples]), "corrupted": torch.tensor([e[3] for e in examples])}
    for kind in kinds:
        grids = torch.full((len(examples), n_layers, width), float("nan"))
        for i, (_, scores, _, _) in enumerate(examples):
            grids[i, :, :scores[kind].shape[1]] = scores[kind]
        out[f"scores_{kind}"] = grids
    return out
