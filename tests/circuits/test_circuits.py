"""Circuits from scores (top-n, greedy, threshold, pruning), bad input stopped at pre-flight, and the
stage's page drawn in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.circuits.circuit import (circuit_of, edge_order, heads_in, prune_circuit,  # noqa: E402
                                              threshold_circuit)
from interp_pipeline.circuits.graph import Graph  # noqa: E402
from tests.pipeline.test_preflight_before_work import run_and_capture  # noqa: E402

GRAPH = Graph(3, 2)


def _reaches_logits(mask, graph):
    """Every edge's receiving node (for a shared key/value input: a head of its group) has a path onward to
    the logits, by a plain walk from the logits."""
    def nodes(r):
        return {-1} if r == graph.logits_receiver else set(graph.receiver_nodes[:, r].nonzero().flatten().tolist())

    alive = {-1}
    for _ in range(graph.n_senders):
        for s, r in mask.nonzero().tolist():
            if nodes(r) & alive:
                alive.add(s)
    return all(nodes(r) & alive for _, r in mask.nonzero().tolist())


def test_top_n_takes_the_largest_magnitudes_and_pruning_drops_dangling_edges():
    scores = torch.zeros(GRAPH.n_senders, GRAPH.n_receivers)
    a0h0, a1h1 = GRAPH.head_sender(0, 0), GRAPH.head_sender(1, 1)
    scores[a0h0, GRAPH.qkv_receiver(1, "v", 1)] = -5.0  # into a1.h1, which reaches the logits below
    scores[a1h1, GRAPH.logits_receiver] = 3.0
    scores[0, GRAPH.qkv_receiver(2, "q", 0)] = 4.0  # into a2.h0, which reaches nothing: pruned
    order = edge_order(scores, GRAPH, "top_n", absolute=True)
    raw = circuit_of(order, 3, GRAPH, prune=False)
    assert int(raw.sum()) == 3 and raw[0, GRAPH.qkv_receiver(2, "q", 0)]
    pruned = circuit_of(order, 3, GRAPH, prune=True)
    assert int(pruned.sum()) == 2 and not pruned[0, GRAPH.qkv_receiver(2, "q", 0)]
    assert heads_in(pruned, GRAPH) == {(0, 0), (1, 1)}
    signed = circuit_of(edge_order(scores, GRAPH, "top_n", absolute=False), 1, GRAPH, prune=False)
    assert signed[0, GRAPH.qkv_receiver(2, "q", 0)]  # the largest signed score
    assert int(threshold_circuit(scores, GRAPH, 3.5, absolute=True, prune=False).sum()) == 2


def test_a_shared_key_or_value_input_lives_while_one_head_of_its_group_reaches_the_logits():
    graph = Graph(2, 4, n_kv_heads=2)  # heads 0, 1 read key/value head 0; heads 2, 3 read 1
    mask = torch.zeros(graph.n_senders, graph.n_receivers, dtype=torch.bool)
    mask[graph.head_sender(0, 1), graph.logits_receiver] = True
    mask[0, graph.qkv_receiver(0, "k", 0)] = True  # into a0.h0 and a0.h1's keys: a0.h1 reaches the logits
    mask[0, graph.qkv_receiver(0, "v", 1)] = True  # into a0.h2 and a0.h3's values: neither does
    mask[0, graph.qkv_receiver(0, "q", 0)] = True  # into a0.h0's query: a0.h0 does not
    pruned = prune_circuit(mask, graph)
    assert pruned[0, graph.qkv_receiver(0, "k", 0)] and pruned[graph.head_sender(0, 1), graph.logits_receiver]
    assert int(pruned.sum()) == 2
    assert graph.receiver_names[graph.qkv_receiver(0, "v", 1)] == "a0.kv1<v>"
    assert heads_in(pruned, graph) == {(0, 1)}


@pytest.mark.parametrize("graph", [GRAPH, Graph(2, 4, n_kv_heads=2)], ids=["heads", "grouped_kv"])
def test_greedy_grows_from_the_logits_so_every_prefix_is_connected(graph):
    scores = torch.randn(graph.n_senders, graph.n_receivers, generator=torch.Generator().manual_seed(0))
    order = edge_order(scores, graph, "greedy", absolute=True)
    assert sorted(order.tolist()) == sorted(graph.valid.flatten().nonzero().flatten().tolist())
    for n in (1, 5, 17, graph.n_edges):
        mask = circuit_of(order, n, graph, prune=False)
        assert int(mask.sum()) == n and _reaches_logits(mask, graph)
        assert torch.equal(prune_circuit(mask, graph), mask)
    top = circuit_of(edge_order(scores, graph, "top_n", absolute=True), 17, graph, prune=True)
    assert _reaches_logits(top, graph)


TOY = ["+experiment=circuit_discovery", "model=toy_ioi"]


@pytest.mark.parametrize(("override", "start"), [
    ("circuits.methods=[eap,eap_ig_input]", "error: circuits.methods[1]: expected one of clean_corrupted, eap, "),
    ("circuits.n_edges=500", "error: circuits.n_edges: expected at most the graph's 81 edges (2 layers of 4 heads), "
                             "found 500"),
    ("circuits.ablation=resample", "error: circuits.ablation: "),
    ("circuits.fractions=[0.5,0.1]", "error: circuits.fractions: expected at least two increasing fractions"),
    ("circuits.selection=threshold", "error: circuits.threshold: selection: threshold needs a threshold"),
])
def test_bad_input_stops_before_any_work_with_one_line_naming_the_key(outputs, caplog, override, start):
    line = run_and_capture(outputs, caplog, [*TOY, override])
    assert line.startswith(start), line
    if "eap_ig_input]" in override:
        assert "did you mean 'eap_ig_inputs'?" in line


def _report(tmp_path):
    from interp_pipeline.circuits.config import CircuitsConfig
    from interp_pipeline.circuits.run import discover
    from interp_pipeline.tracking.base import NullRun, RecordingTracker
    from tests.support.models import random_pairs, tiny_model

    model = tiny_model(n_layers=2, n_heads=2, seed=2)
    tracker = RecordingTracker(NullRun(), tmp_path)
    settings = CircuitsConfig(methods=["eap", "eap_ig_inputs", "exact"], n_edges=10, top_heads=2, ig_steps=2,
                              fractions=[0.0, 0.1, 0.5, 1.0], target_faithfulness=0.5)
    out = discover(model, random_pairs(4, 7, d_vocab=50), settings, tracker)
    return out, tracker, tmp_path


@pytest.mark.hooked_transformer(reason="the stage's model is config-built: TransformerLens 4's native attention "
                                       "has no split q/k/v inputs (README 'TransformerLens 4')")
def test_the_stage_logs_metrics_json_figures_and_a_page_chromium_draws(tmp_path):
    import json

    out, tracker, folder = _report(tmp_path)
    assert set(out) == {"eap", "eap_ig_inputs", "exact", "valid"} and out["eap"].shape == (7, 15)
    metrics = tracker.last
    for method in ("eap", "eap_ig_inputs", "exact"):
        assert metrics[f"{method}/cmd"] >= abs(1 - metrics[f"{method}/cpr"]) - 1e-9  # |int (1 - f)| <= int |1 - f|
        circuit = json.loads((folder / f"circuit_{method}.json").read_text())
        assert circuit["edges"] and circuit["nodes"][-1] == "logits" and len(circuit["edges"]) <= 10
        assert (folder / f"circuit_{method}.png").stat().st_size > 1000
    assert "eap_ig_inputs/corr_exact" in metrics and "eap/top_heads_in_circuit" in metrics
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed to render the page (apt-get install -y chromium)"
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           "--dump-dom", (folder / "circuits.html").as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert len(re.findall(r'class="plot-container plotly"', done.stdout)) == 1, done.stderr[-2000:]
    assert "eap_ig_inputs: top edges of the circuit" in done.stdout
