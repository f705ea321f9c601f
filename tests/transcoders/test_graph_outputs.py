"""The graph's outputs (circuit-tracer JSON, our page in Chromium) and bad input stopped before any work."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch

from interp_pipeline.analysis.feature_dashboard import Context
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.transcoders.attribution import attribute
from interp_pipeline.transcoders.export import graph_json
from interp_pipeline.transcoders.graph import prune
from interp_pipeline.transcoders.page import graph_page
from tests.conftest import run_cli
from tests.support.models import tiny_model
from tests.support.transcoders import direct_effects_of, random_transcoders

# circuit-tracer 0.5.0's Node fields (frontend/graph_models.py), which its viewer reads.
NODE_FIELDS = {"node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit", "run_idx",
               "reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation"}


@pytest.fixture(scope="module")
def graph_and_pruned():
    model = tiny_model(n_layers=2)
    transcoders = random_transcoders(model, 48, seed=2)
    graph = attribute(model, transcoders, torch.randint(1, 50, (8,), generator=torch.Generator().manual_seed(4)))
    return graph, prune(graph)


def test_circuit_tracer_json(graph_and_pruned):
    graph, pruned = graph_and_pruned
    data = graph_json(graph, pruned, slug="t", scan="s")
    assert set(data) == {"metadata", "qParams", "nodes", "links"}
    ids = [n["node_id"] for n in data["nodes"]]
    assert all(set(n) == NODE_FIELDS for n in data["nodes"])
    # circuit-tracer's ids: a layer-0 feature f at position p is "0_f_p", the error node of layer f at p
    # "0_f_p" too (its scheme, kept for its viewer); within each kind they are unique.
    features = [i for i, n in zip(ids, data["nodes"]) if n["feature_type"] == "cross layer transcoder"]
    others = [i for i, n in zip(ids, data["nodes"]) if n["feature_type"] != "cross layer transcoder"]
    assert len(features) == len(set(features)) and len(others) == len(set(others))
    kinds = [n["feature_type"] for n in data["nodes"]]
    assert kinds.count("embedding") == graph.n_pos and kinds.count("logit") == graph.n_logits
    assert sum(n["is_target_logit"] for n in data["nodes"]) == 1
    assert data["links"] and all(link["source"] in ids and link["target"] in ids for link in data["links"])
    assert len(data["links"]) <= int(pruned.edge_mask.sum())
    for node in data["nodes"]:
        if node["feature_type"] == "cross layer transcoder":
            layer, feature, pos = (int(v) for v in node["node_id"].split("_"))
            assert node["layer"] == str(layer) and node["ctx_idx"] == pos


def test_page_draws_every_kept_node_in_chromium(graph_and_pruned, tmp_path):
    graph, pruned = graph_and_pruned
    features = [i for i in pruned.node_mask.nonzero()[:, 0].tolist() if i < graph.n_features]
    layer, _, feature = (int(v) for v in graph.active_features[features[0]])
    contexts = {(layer, feature): [Context(0, 1, 2.0, ["a", "b", "c"], [0.0, 2.0, 0.5], 1)]}
    page = tmp_path / "graphs.html"
    page.write_text(graph_page("t", [(graph, pruned, {"replacement_score": 0.5})], contexts, max_features=10))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed to render the page (apt-get install -y chromium)"
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    drawn = re.search(r'data-drawn="(\d+)"', done.stdout)
    assert drawn, done.stderr[-2000:]
    assert int(drawn.group(1)) == int(pruned.node_mask.sum())  # every kept node laid out with a size
    assert done.stdout.count('class="edge"') >= int(pruned.edge_mask.sum()) // 2
    assert "max" in done.stdout and ">b<" in done.stdout  # the context, its max token


def test_preflight_names_the_key():
    from interp_pipeline.models.shape import ModelShape
    from interp_pipeline.pipeline.shapes import SAEShape, StoreShape
    from interp_pipeline.transcoders.config import AttributionConfig, TranscoderConfig
    from interp_pipeline.transcoders.tracing import check_attribution_shapes
    from interp_pipeline.transcoders.training import check_store_hooks

    hooks = {f"blocks.{l}.{h}": (16,) for l in range(2) for h in ("ln2.hook_normalized", "hook_mlp_out")}
    model = ModelShape(2, 4, 16, 4, 64, 8, 50, False, hooks={**hooks, "hook_embed": (16,)})
    good = {layer: SAEShape(16, 128, f"blocks.{layer}.ln2.hook_normalized") for layer in range(2)}
    check_attribution_shapes(AttributionConfig(), {"model": model, "transcoders": good})
    with pytest.raises(ConfigError) as error:
        check_attribution_shapes(AttributionConfig(), {"model": model, "transcoders": {0: good[0], 1: SAEShape(8)}})
    assert error.value.key == "transcoder.d_in"
    with pytest.raises(ConfigError) as error:
        check_attribution_shapes(AttributionConfig(), {"model": model, "transcoders": {0: good[0]}})
    assert error.value.key == "transcoder.layers"
    with pytest.raises(ConfigError) as error:
        check_store_hooks(TranscoderConfig(), {"store": StoreShape({k: v for k, v in hooks.items()
                                                                    if "blocks.1.hook_mlp_out" != k})})
    assert error.value.key == "cache.hooks" and "blocks.1.hook_mlp_out" in error.value.message


def test_cli_exits_2_before_any_work(tmp_path):
    """A store without every layer's MLP output: one line naming cache.hooks, before the model is trained."""
    key = "cache.hooks"
    done = run_cli(["+experiment=attribution_graph", "model=toy_facts", "cache.hooks=[blocks.0.ln2.hook_normalized]"],
                   tmp_path / "outputs", timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    said = done.stdout + done.stderr
    assert f"error: {key}" in said and "running" not in said, said[-2000:]


def test_on_a_transformer_bridge_the_replacement_is_exact_and_edges_are_direct_effects(tmp_path, monkeypatch):
    """The same graph code on a TransformerBridge (a tiny GPT-2 saved and loaded offline): its hooks freeze
    patterns and scales as HookedTransformer's do; the logit target is read at unembed.hook_in."""
    from interp_pipeline.models import hub
    from interp_pipeline.transcoders.replacement import replacement_logits, run_prompt
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = hub.load_hugging_face(str(save_tiny_gpt2(tmp_path / "tiny_gpt2")), revision=None, device="cpu",
                                   dtype="float32")
    # Weights at the scale of the model's own MLP outputs (~0.02): error nodes of that size, no cancellation.
    transcoders = random_transcoders(bridge, 48, seed=1, scale=0.02, bias=-0.02)
    tokens = torch.tensor([1, 5, 9, 3, 12, 7, 4])
    run = run_prompt(bridge, transcoders, tokens)
    logits, _ = replacement_logits(bridge, transcoders, run)
    assert torch.allclose(logits, run.logits, atol=1e-6)
    graph = attribute(bridge, transcoders, tokens, batch_size=8)
    assert graph.n_features > 10
    assert int((graph.adjacency[:graph.n_features, :graph.n_features].abs() > 1e-3).sum()) > 20  # edges to compare
    base_logits, base = replacement_logits(bridge, transcoders, run, direct_only=True)
    where = graph.slices()
    for source in range(0, graph.n_features, max(1, graph.n_features // 6)):
        moved_logits, measured = direct_effects_of(bridge, transcoders, run, graph, source, base)
        assert torch.allclose(measured, graph.adjacency[:graph.n_features, source], atol=1e-6, rtol=0)
        change = moved_logits[-1] - base_logits[-1]
        for row, token in enumerate(graph.logit_tokens.tolist()):
            assert float(change[token] - change.mean()) == pytest.approx(
                float(graph.adjacency[where["logits"].start + row, source]), abs=1e-6)
