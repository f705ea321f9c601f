"""What the circuit_discovery stage computes: every method's edge scores on one prompt-pairs batch,
its faithfulness curve and smallest faithful circuit, the circuit of ``n_edges`` edges, and how it
agrees with exact patching (per-head ``head_out`` patching, and the exact edge scores when
``exact`` is among the methods); everything logged (circuits/report.py draws and writes it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.circuits.config import CircuitsConfig
from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.common.progress import progress
from interp_pipeline.tracking.base import Tracker

if TYPE_CHECKING:
    from torch import Tensor


def check_settings(settings: CircuitsConfig) -> None:
    """What the schema cannot say: method names, the curve's fractions, a threshold when selecting by one."""
    from interp_pipeline.circuits.scoring import METHODS

    if not settings.methods:
        raise ConfigError("methods", f"expected at least one of {one_of(METHODS)}, found none")
    for index, method in enumerate(settings.methods):
        if method not in METHODS:
            raise ConfigError(f"methods[{index}]", f"expected one of {one_of(METHODS)}, found {method!r}",
                              suggestion=did_you_mean(str(method), METHODS))
    if len(set(settings.methods)) != len(settings.methods):
        raise ConfigError("methods", f"expected each method once, found {list(settings.methods)}")
    fractions = list(settings.fractions)
    if len(fractions) < 2 or any(not 0 <= f <= 1 for f in fractions) or fractions != sorted(fractions):
        raise ConfigError("fractions", f"expected at least two increasing fractions in [0, 1], found {fractions}")
    if settings.selection == "threshold" and settings.threshold is None:
        raise ConfigError("threshold", "selection: threshold needs a threshold, found none")


def check_inputs(settings: CircuitsConfig, inputs: Mapping[str, Any]) -> None:
    """The circuit's size against the model's graph (``inputs``: the inputs' shapes), before the model is built."""
    if inputs.get("model") is not None:
        _check_size(settings, inputs["model"])
    keys = getattr(inputs.get("pairs"), "keys", None)  # a pairs stage that says what it holds
    if keys is not None:
        _check_pairs(dict.fromkeys(keys), settings.metric)


def _check_size(settings: CircuitsConfig, cfg: Any) -> Any:
    from interp_pipeline.circuits.graph import Graph

    graph = Graph.of(cfg)
    if settings.n_edges > graph.n_edges:
        kv = f", {graph.n_kv_heads} key/value heads" if graph.grouped else ""
        raise ConfigError("n_edges", f"expected at most the graph's {graph.n_edges} edges ({cfg.n_layers} layers of "
                                     f"{cfg.n_heads} heads{kv}), found {settings.n_edges}")
    return graph


def metric_names(settings: CircuitsConfig) -> list[str]:
    """The metric names the stage can log (glob patterns), for expect: keys before the run; a misspelt
    method is named as such rather than as the expect: key it leaves without a metric."""
    check_settings(settings)
    return [f"clean_{settings.metric}", f"corrupted_{settings.metric}", f"empty_{settings.metric}", "graph/*",
            *(f"{method}/*" for method in settings.methods)]


def discover(model: Any, pairs: Mapping[str, Tensor], settings: CircuitsConfig, tracker: Tracker) -> dict[str, Tensor]:
    """Scores, curves and circuits for every method; returns the scores ([n_senders, n_receivers] each)
    and the graph's ``valid`` mask."""
    import torch

    from interp_pipeline.circuits import ablation, scoring
    from interp_pipeline.circuits.circuit import circuit_of, edge_order, threshold_circuit
    from interp_pipeline.circuits.faithfulness import Baselines, faithfulness_curve, smallest_circuit
    from interp_pipeline.circuits.report import CircuitReport, MethodResult
    from interp_pipeline.patching.metrics import Metric

    graph = _check_size(settings, model.cfg)
    device = model.cfg.device
    pairs = {k: v.to(device) for k, v in pairs.items()}
    _check_pairs(pairs, settings.metric)
    metric = Metric(settings.metric, pairs)
    runs = ablation.AblatedRuns(model, graph, pairs, metric, settings.ablation, batch_size_prompts=settings.batch_size_prompts)
    _calibrate(model, pairs, metric)
    baselines = Baselines.of(runs)
    tracker.log_metrics({f"clean_{metric.name}": metric.clean_value, f"corrupted_{metric.name}": metric.corrupted_value,
                         f"empty_{metric.name}": baselines.empty, "graph/edges": graph.n_edges,
                         "graph/nodes": graph.n_senders})
    exact_runs = runs if settings.ablation == "corrupted" else ablation.AblatedRuns(
        model, graph, pairs, metric, "corrupted", batch_size_prompts=settings.batch_size_prompts)
    top_heads = _top_patched_heads(model, pairs, settings) if settings.top_heads else []

    n_batches = -(-pairs["clean"].shape[0] // settings.batch_size_prompts)
    total = sum(ablation.count_exact_passes(graph, pairs["clean"].shape[0], settings.batch_size_prompts)
                if m == "exact" else scoring.count_passes(graph, m, settings.ig_steps, n_batches) for m in settings.methods)
    scores: dict[str, Tensor] = {}
    results: list[MethodResult] = []
    with progress(range(total), desc="edge scores", total=total, unit="pass") as bar:
        for method in settings.methods:
            start = time.perf_counter()
            tick = lambda: bar.update(1)  # noqa: E731
            if method == "exact":
                scores[method] = ablation.exact_scores(exact_runs, on_pass=tick).cpu()
            else:
                scores[method] = scoring.gradient_scores(model, graph, pairs, metric, method, ig_steps=settings.ig_steps,
                                                         batch_size_prompts=settings.batch_size_prompts, on_pass=tick).cpu()
            seconds = time.perf_counter() - start
            order = edge_order(scores[method], graph, "greedy" if settings.selection == "greedy" else "top_n",
                               absolute=settings.absolute)
            curve = faithfulness_curve(runs, order, list(settings.fractions), baselines, prune=settings.prune)
            if settings.selection == "threshold":
                circuit = threshold_circuit(scores[method], graph, float(settings.threshold), absolute=settings.absolute,
                                            prune=settings.prune)
            else:
                circuit = circuit_of(order, settings.n_edges, graph, prune=settings.prune)
            value = float(runs.values(~circuit[None].to(device))[0])
            smallest = smallest_circuit(runs, order, curve, baselines, settings.target_faithfulness, prune=settings.prune)
            results.append(MethodResult(method, scores[method], curve, circuit, baselines.normalized(value), value, smallest,
                                        seconds))
    report = CircuitReport(graph, settings, results, top_heads, baselines, metric)
    report.log(tracker)
    return {**scores, "valid": graph.valid}


def _check_pairs(pairs: Mapping[str, Any], metric: str) -> None:
    """What the metric reads must be in the pairs (a dataset without answer tokens cannot be scored by logit_diff)."""
    needs = {"logit_diff": ("answer", "wrong"), "answer_prob": ("answer",), "loss": ("targets", "loss_mask"),
             "kl": (), "prob_diff": ("candidates", "candidate_sign")}
    missing = [key for key in needs.get(metric, ()) if key not in pairs]
    if missing:
        raise ConfigError("metric", f"{metric} reads the pairs' {', '.join(missing)} tokens, which the prompts "
                                    f"stage does not give")


def _calibrate(model: Any, pairs: Mapping[str, Tensor], metric: Any) -> None:
    import torch

    rows = torch.arange(pairs["clean"].shape[0], device=pairs["clean"].device)
    positions = metric.readout_positions(rows)

    def readout(tokens: Tensor) -> Tensor:
        logits = model(tokens)
        return logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))

    with torch.inference_mode():
        metric.calibrate(readout(pairs["clean"]), readout(pairs["corrupted"]))


def _top_patched_heads(model: Any, pairs: Mapping[str, Tensor], settings: CircuitsConfig) -> list[tuple[int, int, float]]:
    """The heads whose output matters most by exact activation patching (patching/engine.py, normalised
    ``head_out``): (layer, head, value), largest |value| first."""
    from interp_pipeline.patching import engine

    setup = engine.prepare(model, pairs, settings.metric, normalize=True, batch_size_prompts=settings.batch_size_prompts,
                           hook_names=engine.hook_names_for(["head_out"], model.cfg.n_layers))
    values = engine.run_grid("head_out", setup)  # [layer, head]
    flat = values.abs().flatten().argsort(descending=True)[:settings.top_heads]
    n_heads = values.shape[1]
    return [(int(i) // n_heads, int(i) % n_heads, float(values.flatten()[i])) for i in flat]
