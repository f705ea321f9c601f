"""An attribution graph as circuit-tracer's graph JSON, which its frontend (``circuit-tracer start-server``) opens.

The schema is circuit-tracer 0.5.0's (frontend/graph_models.py and
utils/create_graph_files.py, read and written again here): ``metadata`` (slug, scan,
prompt tokens), ``qParams``, ``nodes`` (feature, error, embedding and logit nodes with
circuit-tracer's ids: ``L_F_P`` features, ``0_L_P`` errors, ``E_T_P`` tokens,
``{n_layers + 1}_T_P`` logits) and ``links`` (source, target, weight) of the pruned graph.
"""

from __future__ import annotations

from typing import Any

from interp_pipeline.transcoders.attribution import AttributionGraph
from interp_pipeline.transcoders.graph import Pruned


def _cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def _node(index: int, graph: AttributionGraph, influence: float) -> dict[str, Any]:
    where = graph.slices()
    base = {"token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0, "clerp": "",
            "influence": influence, "activation": None}
    if index < where["features"].stop:
        layer, pos, feature = (int(v) for v in graph.active_features[index])
        return {**base, "node_id": f"{layer}_{feature}_{pos}", "feature": _cantor(layer, feature),
                "layer": str(layer), "ctx_idx": pos, "feature_type": "cross layer transcoder",
                "jsNodeId": f"{layer}_{feature}-0", "activation": float(graph.activation_values[index])}
    if index < where["errors"].stop:
        layer, pos = divmod(index - where["errors"].start, graph.n_pos)
        return {**base, "node_id": f"0_{layer}_{pos}", "feature": -1, "layer": str(layer), "ctx_idx": pos,
                "feature_type": "mlp reconstruction error", "jsNodeId": f"{layer}_{pos}-0"}
    if index < where["tokens"].stop:
        pos = index - where["tokens"].start
        token = int(graph.tokens[pos])
        return {**base, "node_id": f"E_{token}_{pos}", "feature": pos, "layer": "E", "ctx_idx": pos,
                "feature_type": "embedding", "jsNodeId": f"E_{token}-{pos}"}
    row = index - where["logits"].start
    token, prob, layer, pos = int(graph.logit_tokens[row]), float(graph.logit_probabilities[row]), \
        str(graph.n_layers + 1), graph.n_pos - 1
    text = graph.logit_strs[row] if row < len(graph.logit_strs) else str(token)
    return {**base, "node_id": f"{layer}_{token}_{pos}", "feature": token, "layer": layer, "ctx_idx": pos,
            "feature_type": "logit", "token_prob": prob, "is_target_logit": row == 0,
            "jsNodeId": f"L_{token}-{pos}", "clerp": f'Output "{text}" (p={prob:.3f})', "influence": None}


def graph_json(graph: AttributionGraph, pruned: Pruned, *, slug: str, scan: str,
               node_threshold: float = 0.8) -> dict[str, Any]:
    """circuit-tracer's JSON of the pruned graph: kept nodes that have a kept edge (and every token and logit)."""
    kept = pruned.node_mask.nonzero()[:, 0].tolist()
    nodes = {i: _node(i, graph, float(pruned.cumulative_influence[i])) for i in kept}
    targets, sources = pruned.edge_mask.nonzero(as_tuple=True)
    links = [{"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": float(graph.adjacency[t, s])}
             for t, s in zip(targets.tolist(), sources.tolist()) if s in nodes and t in nodes]
    linked = {link["source"] for link in links} | {link["target"] for link in links}
    used = [n for n in nodes.values() if n["node_id"] in linked or n["feature_type"] in ("embedding", "logit")]
    return {"metadata": {"slug": slug, "scan": scan, "transcoder_list": [], "prompt_tokens": list(graph.str_tokens),
                         "prompt": graph.prompt, "node_threshold": node_threshold, "schema_version": 1},
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": used, "links": links}
