"""Pruning an attribution graph, and its replacement and completeness scores.

Ameisen et al. 2025 ("Circuit Tracing", methods: "Graph pruning", and the scores of
"Evaluating graphs"), as circuit-tracer 0.5.0's graph.py computes them (read and
rewritten here). Influence: with each row of |adjacency| normalised to sum 1, a node's
influence on the logits is the logit-probability-weighted sum over all paths,
w A + w A^2 + ... (the graph is acyclic, so the series ends). Pruning keeps the nodes
holding ``node_threshold`` of the total influence (tokens and logits always), then the
edges holding ``edge_threshold`` of the edge influence among them, then drops nodes
left without an edge in (features) or out (features and errors), until nothing changes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def normalize_rows(matrix: torch.Tensor) -> torch.Tensor:
    absolute = matrix.abs()
    return absolute / absolute.sum(dim=1, keepdim=True).clamp(min=1e-10)


def influence(normalized: torch.Tensor, logit_weights: torch.Tensor, max_iter: int = 1000) -> torch.Tensor:
    """Each node's total influence on the weighted logits (paths of every length >= 1)."""
    step = logit_weights @ normalized
    total = step.clone()
    for _ in range(max_iter):
        if not step.any():
            return total
        step = step @ normalized
        total += step
    raise RuntimeError(f"influence did not converge in {max_iter} steps: is the graph acyclic?")


def _cutoff(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """The score above which the largest scores hold ``fraction`` of their sum."""
    ordered = torch.sort(scores, descending=True).values
    cumulative = torch.cumsum(ordered, 0) / ordered.sum()
    index = min(int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype))),
                len(ordered) - 1)
    return ordered[index]


class Pruned(NamedTuple):
    node_mask: torch.Tensor  # [n_nodes] bool
    edge_mask: torch.Tensor  # [n_nodes, n_nodes] bool
    cumulative_influence: torch.Tensor  # [n_nodes]: the share of influence of the nodes at least as influential


def _logit_weights(graph) -> torch.Tensor:
    weights = torch.zeros(graph.adjacency.shape[0])
    weights[graph.slices()["logits"]] = graph.logit_probabilities
    return weights


def prune(graph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    n_logits, n_tokens, n_features = graph.n_logits, graph.n_pos, graph.n_features
    weights = _logit_weights(graph)
    node_influence = influence(normalize_rows(graph.adjacency), weights)
    nodes = node_influence >= _cutoff(node_influence, node_threshold)
    nodes[-n_logits - n_tokens:] = True
    kept = graph.adjacency.clone()
    kept[~nodes] = 0
    kept[:, ~nodes] = 0
    normalized = normalize_rows(kept)
    edge_scores = normalized * (influence(normalized, weights) + weights)[:, None]
    edges = edge_scores >= _cutoff(edge_scores.flatten(), edge_threshold)
    inner = slice(0, graph.adjacency.shape[0] - n_logits - n_tokens)  # features and errors
    while True:
        before = nodes.clone()
        edges[~nodes] = False
        edges[:, ~nodes] = False
        nodes[inner] &= edges[:, inner].any(0)  # something reads it
        nodes[:n_features] &= edges[:n_features].any(1)  # it reads something
        if torch.equal(nodes, before):
            break
    ordered, order = torch.sort(node_influence, descending=True)
    cumulative = torch.zeros_like(node_influence)
    cumulative[order] = torch.cumsum(ordered, 0) / ordered.sum()
    return Pruned(nodes, edges, cumulative)


def scores(graph) -> dict[str, float]:
    """Replacement score: the share of the tokens' and errors' influence on the logits that is the tokens'
    (through features only). Completeness: the influence-weighted share of every node's inputs not from errors."""
    where = graph.slices()
    weights = _logit_weights(graph)
    normalized = normalize_rows(graph.adjacency)
    node_influence = influence(normalized, weights)
    tokens, errors = node_influence[where["tokens"]].sum(), node_influence[where["errors"]].sum()
    non_error = 1 - normalized[:, where["errors"]].sum(dim=-1)
    output = node_influence + weights
    return {"replacement_score": float(tokens / (tokens + errors)),
            "completeness_score": float((non_error * output).sum() / output.sum())}


def pruned_copy(graph, pruned: Pruned):
    """The graph with pruned nodes' and edges' weights zeroed (same nodes, for its scores)."""
    import dataclasses

    adjacency = graph.adjacency * pruned.edge_mask
    return dataclasses.replace(graph, adjacency=adjacency)
