"""The causal_tracing stage (Meng et al. 2022, "Locating and Editing Factual Associations in GPT", §2.1).

The tracing is interp_pipeline.tracing.engine (batched, started at the restored layer; a
HookedTransformer or a TransformerBridge), the average over prompts tracing.average
(sums only: memory does not grow with the prompts), the figures tracing.plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor

KIND_CHOICES = ("hidden", "mlp", "attn")


def _metrics(params: Mapping[str, Any]) -> tuple[str, ...]:
    from interp_pipeline.tracing.average import POSITION_CLASSES

    kinds = tuple(params.get("kinds") or KIND_CHOICES)
    if not set(kinds) <= set(KIND_CHOICES):
        raise ValueError("unknown kinds: the params' pre-flight names them")
    per_kind = tuple(f"{kind}/{name}" for kind in kinds
                     for name in ("peak_class", "peak_layer", "peak_aie", "early_site_class", "early_site_layer",
                                  *(f"aie/{c}" for c in POSITION_CLASSES), *(f"peak_layer/{c}" for c in POSITION_CLASSES)))
    return ("prompts_traced", "prompts_unknown", "clean_p", "corrupted_p", "noise_std", "window", *per_kind)


def _check_params(params: dict[str, Any]) -> None:
    kinds = params.get("kinds", list(KIND_CHOICES))
    if isinstance(kinds, str) or not isinstance(kinds, (list, tuple)) or not kinds:
        raise ConfigError("kinds", f"expected a non-empty list of {one_of(KIND_CHOICES)}, found {kinds!r}")
    for i, kind in enumerate(kinds):
        if kind not in KIND_CHOICES:
            raise ConfigError(f"kinds[{i}]", f"expected one of {one_of(KIND_CHOICES)}, found {kind!r}",
                              suggestion=did_you_mean(str(kind), KIND_CHOICES))
    for key, minimum in (("samples", 1), ("max_batch", 1), ("figures", 0), ("seed", 0)):
        value = params.get(key, minimum)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(key, f"expected an integer >= {minimum}, found {value!r}")
    for key in ("window", "max_prompts"):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(key, f"expected null or an integer >= 1, found {value!r}")
    for key in ("noise", "noise_std"):
        value = params.get(key)
        if key == "noise_std" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(key, f"expected a number > 0, found {value!r}")


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """The window and the restored kinds against the model's shape, before the model loads or trains."""
    shape = inputs.get("model")
    if shape is None or not hasattr(shape, "n_layers"):
        return
    window = params.get("window")
    if window is not None and window > shape.n_layers:
        raise ConfigError("window", f"expected at most the model's {shape.n_layers} layers, found {window}")
    if shape.attn_only and "mlp" in params.get("kinds", KIND_CHOICES):
        raise ConfigError("kinds", "the model is attention only: it has no MLP outputs to restore (drop 'mlp')")


@stage("causal_tracing", outputs=("aie", "examples"), preflight=_check_params, check_shapes=_check_shapes,
       metrics=_metrics, summary=("prompts_traced", "mlp/peak_class", "attn/peak_class", "hidden/peak_aie"))
def causal_tracing(
    model: Any,
    facts: dict[str, Tensor],
    noise: float = 3.0,
    noise_std: float | None = None,
    samples: int = 10,
    window: int | None = None,
    kinds: list[str] | tuple[str, ...] = KIND_CHOICES,
    only_known: bool = True,
    max_prompts: int | None = None,
    seed: int = 0,
    max_batch: int = 1024,
    figures: int = 4,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, dict[str, Tensor]]:
    """Causal tracing of the object's probability over a facts dict (stages/fact_prompts.py).

    Noise: Gaussian on the subject tokens' embeddings, std ``noise`` x the subject embeddings'
    empirical std (or ``noise_std`` itself), ``samples`` draws per prompt seeded by ``seed``.
    ``window``: layers restored together for mlp/attn (null: the paper's 10 of 48, scaled).
    ``only_known``: average only prompts whose clean top-1 prediction is the object (the paper
    traces known facts). ``max_prompts``: a sample of that many prompts (seeded by ``seed``). Outputs ``aie`` ({kind: AIE [position class, layer]}, ``counts``) and
    ``examples`` (per-prompt scores of the first ``figures`` traced prompts). Logs per kind
    the position class (0..5: first/middle/last subject token, first subsequent, further,
    last token) and layer where the AIE peaks (``peak_class``, ``peak_layer``), the same over the
    classes before the last token (``early_site_class``, ``early_site_layer``: the paper's early
    site), the peak per class (``aie/<class>``, ``peak_layer/<class>``), and the figures.
    """
    import torch

    from interp_pipeline.progress import progress
    from interp_pipeline.tracing.average import POSITION_CLASSES, AverageEffects
    from interp_pipeline.tracing.engine import CausalTracer, default_window, embedding_std

    params = {"kinds": list(kinds), "samples": samples, "max_batch": max_batch, "figures": figures, "seed": seed,
              "window": window, "max_prompts": max_prompts, "noise": noise, "noise_std": noise_std}
    _check_params(params)
    n_layers = model.cfg.n_layers
    _check_shapes(params, {"model": _Shape(n_layers, model.cfg.attn_only)})
    window = window or default_window(n_layers)
    if max_prompts is not None and max_prompts < len(facts["tokens"]):
        from interp_pipeline.tracing.fact_prompts import select

        origin = torch.randperm(len(facts["tokens"]), generator=torch.Generator().manual_seed(seed))[:max_prompts]
        origin = origin.sort().values
        facts = select(facts, origin)
    else:
        origin = torch.arange(len(facts["tokens"]))
    std = float(noise_std) if noise_std is not None else noise * embedding_std(model, facts)
    tracer = CausalTracer(model, facts, noise_std=std, samples=samples, window=window, kinds=tuple(kinds), seed=seed,
                          max_batch=max_batch)
    average = AverageEffects(tuple(kinds), n_layers)
    examples: list[tuple[int, dict[str, Tensor], float, float]] = []
    unknown = 0
    groups = list(tracer.groups())
    for rows in progress(groups, desc="causal tracing", total=len(groups), unit="group"):
        trace = tracer.trace(rows)
        keep = trace.clean_top1 if only_known else torch.ones(len(rows), dtype=torch.bool)
        unknown += int((~trace.clean_top1).sum())
        average.add(trace, facts, keep)
        for g in keep.nonzero().flatten().tolist():
            if len(examples) < figures:
                examples.append((int(trace.rows[g]), {k: v[g] for k, v in trace.scores.items()},
                                 float(trace.clean[g]), float(trace.corrupted[g])))
    if average.prompts == 0:
        raise ValueError("no prompt was traced: the model predicts none of the objects (only_known: true)")

    aie = average.averages()
    metrics: dict[str, float] = {
        "prompts_traced": average.prompts, "prompts_unknown": unknown, "clean_p": average.clean / average.prompts,
        "corrupted_p": average.corrupted / average.prompts, "noise_std": std, "window": window,
    }
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
    tracker.log_metrics(metrics)
    _log_figures(tracker, model, facts, aie, examples, window)
    return {"aie": aie, "examples": _examples_output(examples, facts, origin, tuple(kinds))}


class _Shape:
    """What _check_shapes reads of a model's shape, for a stage called with a model directly."""

    def __init__(self, n_layers: int, attn_only: bool):
        self.n_layers, self.attn_only = n_layers, attn_only


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


def _log_figures(tracker: Tracker, model: Any, facts: Mapping[str, Tensor], aie: Mapping[str, Tensor],
                 examples: list[Any], window: int) -> None:
    from interp_pipeline.models.labels import model_label
    from interp_pipeline.tracing.average import POSITION_CLASSES
    from interp_pipeline.tracing.plots import average_figure, layer_curves_figure, trace_figure

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
