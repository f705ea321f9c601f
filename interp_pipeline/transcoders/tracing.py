"""The attribution_graph stage's work: graphs for prompts, pruned, scored, exported and shown on a page.

For each prompt (the ``facts`` input's first ``max_prompts``, or ``prompts`` as text):
the attribution graph (interp_pipeline.transcoders.attribution), how far the replacement
model's logits are from the model's (error nodes on: zero up to float error), the
replacement and completeness scores of the full and the pruned graph, and, when the
prompt is a fact with a known subject, how much of the answer runs through the last
subject token's early features: the share of the pruned graph's feature influence held
by features at that position in layers <= EARLY_LAYERS, whether that position holds the
most early influence of the positions before the last, and whether one of them has a
path of kept edges to the answer's logit (Meng et al. 2022 locate recall in the
early-site MLPs at the last subject token; causal tracing on the same toy agrees).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker
from interp_pipeline.transcoders.config import AttributionConfig

if TYPE_CHECKING:  # torch at call time only: the stage module imports this one's pre-flight on --help
    import torch

EARLY_LAYERS = 1  # "early": layers 0 and 1 (of the toy's 4), where causal tracing puts the MLP site


def check_attribution_shapes(settings: AttributionConfig, inputs: Mapping[str, Any]) -> None:
    """Pre-flight: a transcoder per layer at the model's width on hooks it has; prompts that fit the context."""
    model, transcoders = inputs.get("model"), inputs.get("transcoders")
    if model is None:
        return
    if isinstance(transcoders, Mapping):
        layers = sorted(transcoders)
        if layers != list(range(model.n_layers)):
            raise ConfigError("transcoder.layers", f"expected a transcoder for every layer 0..{model.n_layers - 1}, "
                                                   f"found {layers}", absolute=True)
        for layer, shape in transcoders.items():
            if shape.d_in != model.d_model:
                raise ConfigError("transcoder.d_in", f"expected transcoders of width d_model={model.d_model}, "
                                                     f"found d_in={shape.d_in} at layer {layer}", absolute=True)
            if shape.hook is not None:
                try:
                    model.check_hook("hook_in", shape.hook)
                except ConfigError as error:
                    raise ConfigError("transcoder.hook_in", error.message, suggestion=error.suggestion,
                                      absolute=True) from None
    if settings.prompts and model.tokenizer is not None:
        for index, prompt in enumerate(settings.prompts):
            length = len(model.tokenizer(prompt)["input_ids"]) + 1  # + BOS
            model.check_fits_context(f"prompts[{index}]", length)


def _prompts(model: Any, settings: AttributionConfig, facts: Mapping[str, torch.Tensor] | None) -> list[dict]:
    if settings.prompts:
        found = []
        for index, text in enumerate(settings.prompts[:settings.max_prompts]):
            tokens = model.to_tokens(text, prepend_bos=True)[0]
            if len(tokens) > model.cfg.n_ctx:
                raise ConfigError(f"prompts[{index}]", f"expected at most n_ctx={model.cfg.n_ctx} "
                                                                   f"tokens, found {len(tokens)}")
            found.append({"tokens": tokens})
        return found
    if facts is None:
        raise ConfigError("prompts", "expected prompts, or a facts input to take them from")
    count = min(settings.max_prompts, len(facts["tokens"]))
    return [{"tokens": facts["tokens"][i, :int(facts["length"][i])], "subject_last": int(facts["subject_last"][i]),
             "answer": int(facts["object"][i])} for i in range(count)]


def _reaches(edges: torch.Tensor, start: list[int], goal: int) -> bool:
    """Is there a path of kept edges (``edges[target, source]``) from any of ``start`` to ``goal``?"""
    seen, frontier = set(start), list(start)
    while frontier:
        node = frontier.pop()
        if node == goal:
            return True
        for nxt in edges[:, node].nonzero()[:, 0].tolist():
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return False


def _subject_metrics(graph: Any, pruned: Any, prompt: Mapping[str, Any]) -> dict[str, float]:
    import torch

    from interp_pipeline.transcoders.graph import influence, normalize_rows

    if "subject_last" not in prompt:
        return {}
    weights = torch.zeros(graph.adjacency.shape[0])
    weights[graph.slices()["logits"]] = graph.logit_probabilities
    kept = graph.adjacency * pruned.edge_mask
    node_influence = influence(normalize_rows(kept), weights)[:graph.n_features]
    features = graph.active_features
    early = (features[:, 1] == prompt["subject_last"]) & (features[:, 0] <= EARLY_LAYERS) \
        & pruned.node_mask[:graph.n_features]
    total = float(node_influence.sum())
    # Which position before the last holds the most early-layer influence (BOS excluded)?
    last = graph.n_pos - 1
    by_position = torch.zeros(graph.n_pos)
    kept_early = pruned.node_mask[:graph.n_features] & (features[:, 0] <= EARLY_LAYERS)
    by_position.index_add_(0, features[kept_early, 1], node_influence[kept_early])
    peak = int(torch.argmax(by_position[1:last])) + 1 if last > 1 else -1
    answer_rows = (graph.logit_tokens == prompt["answer"]).nonzero()[:, 0].tolist()
    reached = bool(answer_rows) and _reaches(pruned.edge_mask, early.nonzero()[:, 0].tolist(),
                                             graph.slices()["logits"].start + answer_rows[0])
    return {"subject_last_early_share": float(node_influence[early].sum()) / total if total else 0.0,
            "early_peak_at_subject_last": float(peak == prompt["subject_last"]),
            "answer_through_subject_last": float(reached), "answer_is_top_logit": float(
                bool(answer_rows) and answer_rows[0] == 0)}


def trace_graphs(model: Any, transcoders: Any, settings: AttributionConfig, *, facts: Any = None, store: Any = None,
                 tracker: Tracker = NULL_TRACKER, stage_dir: Path | None = None) -> dict[str, Any]:
    from interp_pipeline.common.devices import resolve_device
    from interp_pipeline.common.progress import progress
    from interp_pipeline.transcoders.attribution import attribute
    from interp_pipeline.transcoders.export import graph_json
    from interp_pipeline.transcoders.graph import prune, pruned_copy, scores
    from interp_pipeline.transcoders.page import graph_page, store_contexts
    from interp_pipeline.transcoders.replacement import check_transcoders, replacement_logits, run_prompt

    check_transcoders(model, transcoders)
    prompts = _prompts(model, settings, facts)
    device = resolve_device(settings.device)
    model.to(device)
    transcoders.to(device)
    results, shown, per_prompt = [], [], []
    for index, prompt in enumerate(progress(prompts, desc="attribution graphs", unit="prompt")):
        graph = attribute(model, transcoders, prompt["tokens"], max_n_logits=settings.max_n_logits,
                          desired_logit_prob=settings.desired_logit_prob, batch_size=settings.batch_size_targets,
                          max_feature_nodes=settings.max_feature_nodes)
        run = run_prompt(model, transcoders, prompt["tokens"].to(device))
        logits, _ = replacement_logits(model, transcoders, run)
        pruned = prune(graph, settings.node_threshold, settings.edge_threshold)
        full, kept = scores(graph), scores(pruned_copy(graph, pruned))
        metrics = {"logit_max_abs_error": float((logits - run.logits).abs().max()),
                   "features_active": float(graph.n_features),
                   "features_kept": float(pruned.node_mask[:graph.n_features].sum()),
                   "edges_kept": float(pruned.edge_mask.sum()),
                   "replacement_score": full["replacement_score"], "completeness_score": full["completeness_score"],
                   "pruned_replacement_score": kept["replacement_score"],
                   "pruned_completeness_score": kept["completeness_score"],
                   **_subject_metrics(graph, pruned, prompt)}
        per_prompt.append(metrics)
        tracker.log_metrics({f"prompt_{index}/{k}": v for k, v in metrics.items()})
        results.append(graph_json(graph, pruned, slug=f"prompt-{index}", scan="interp_pipeline",
                                  node_threshold=settings.node_threshold))
        shown.append((graph, pruned, metrics))
    summary = {f"mean/{k}": sum(m[k] for m in per_prompt) / len(per_prompt) for k in per_prompt[0]}
    summary["max/logit_max_abs_error"] = max(m["logit_max_abs_error"] for m in per_prompt)
    summary["min/pruned_replacement_score"] = min(m["pruned_replacement_score"] for m in per_prompt)
    summary["prompts"] = float(len(per_prompt))
    tracker.log_metrics(summary)
    wanted = sorted({(int(g.active_features[i, 0]), int(g.active_features[i, 2])) for g, p, _ in shown
                     for i in p.node_mask[:g.n_features].nonzero()[:, 0].tolist()})
    from interp_pipeline.sae.data import open_store

    contexts = store_contexts(model, transcoders, open_store(store) if store is not None else None, wanted,
                              n=settings.contexts_per_feature, before=settings.context_window)
    page = graph_page("attribution graphs", shown, contexts, max_features=settings.max_features_on_page)
    out = Path(stage_dir or ".") / "graphs"
    out.mkdir(parents=True, exist_ok=True)
    (out / "attribution_graphs.html").write_text(page)
    for index, data in enumerate(results):
        (out / f"prompt-{index}.json").write_text(json.dumps(data))
    tracker.log_files(out, "attribution_graphs")
    # The graphs themselves are files beside the entry (and MLflow artifacts): circuit-tracer's JSON, the page.
    return {"summary": summary, "prompts": per_prompt}
