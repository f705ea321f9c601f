"""Circuit discovery on a TransformerBridge (the hf model source): the same scores and faithfulness as a
HookedTransformer with the same weights (TransformerLens's own loading path)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.circuits.ablation import AblatedRuns, exact_scores  # noqa: E402
from interp_pipeline.circuits.faithfulness import Baselines  # noqa: E402
from interp_pipeline.circuits.graph import Graph  # noqa: E402
from interp_pipeline.circuits.scoring import gradient_scores  # noqa: E402
from interp_pipeline.patching.metrics import Metric  # noqa: E402
from tests.circuits.test_scores import _plain_edge_patch, _plain_gradients, _plain_outputs, _product  # noqa: E402
from tests.patching.test_bridge import _hooked_transformer_of  # noqa: E402
from tests.support.models import random_pairs  # noqa: E402
from tests.support.tiny_bridges import ARCHITECTURES  # noqa: E402
from tests.support.tiny_gpt2 import VOCAB, save_tiny_gpt2  # noqa: E402


@pytest.mark.hooked_transformer
def test_a_bridge_scores_edges_as_the_hooked_transformer_does(tmp_path, monkeypatch):
    from interp_pipeline.models import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = save_tiny_gpt2(tmp_path / "tiny_gpt2")
    bridge = hub.load_hugging_face(str(directory), revision=None, device="cpu", dtype="float32")
    reference = _hooked_transformer_of(directory)
    pairs = random_pairs(3, 8, d_vocab=VOCAB)
    graph = Graph.of(bridge.cfg)
    assert graph == Graph.of(reference.cfg) and graph.has_mlp
    results = {}
    for kind, model in (("bridge", bridge), ("hooked", reference)):
        metric = Metric("logit_diff", pairs)
        out = {m: gradient_scores(model, graph, pairs, metric, m, ig_steps=2, batch_size_prompts=8)
               for m in ("eap", "eap_ig_inputs", "eap_ig_activations")}
        runs = AblatedRuns(model, graph, pairs, metric, "corrupted", batch_size_prompts=8)
        out["exact"] = exact_scores(runs)
        baselines = Baselines.of(runs)
        out["baselines"] = torch.tensor([baselines.model, baselines.empty])
        results[kind] = out
        assert not model.cfg.use_split_qkv_input  # the flags are put back
    for name, value in results["hooked"].items():
        assert value.abs().max() > 1e-4, name
        torch.testing.assert_close(results["bridge"][name], value, atol=1e-4, rtol=1e-4, msg=name)


def _tiny_bridge(architecture, directory):
    from interp_pipeline.models import hub
    from tests.support.tiny_bridges import save_tiny

    return hub.load_hugging_face(str(save_tiny(architecture, directory)), revision=None, device="cpu", dtype="float32")


# Llama's and Gemma 3's tiny checkpoints share key/value heads (grouped-query attention: 2 and 1 for 4 heads).
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_bridges_ablated_runs_from_the_first_ablated_block_equal_full_runs(tmp_path, monkeypatch, architecture):
    """The fast path (models/bridge_blocks.py: blocks from the earliest ablated receiver's) against full runs,
    and against a plain hook patching one edge (keys and values of the last key/value head among them)."""
    from interp_pipeline.patching.forward import supports_fast_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = _tiny_bridge(architecture, tmp_path / architecture)
    assert supports_fast_path(bridge)
    pairs = random_pairs(3, 8, d_vocab=VOCAB)
    graph = Graph.of(bridge.cfg)
    assert graph.n_kv_heads == (bridge.cfg.n_key_value_heads or bridge.cfg.n_heads)
    metric = Metric("logit_diff", pairs)
    scores = {fast: exact_scores(AblatedRuns(bridge, graph, pairs, metric, "corrupted", batch_size_prompts=8,
                                             fast=fast)) for fast in (True, False)}
    assert scores[False].abs().max() > 1e-3
    torch.testing.assert_close(scores[True], scores[False], atol=1e-5, rtol=0)
    last = graph.n_kv_heads - 1
    for sender, receiver in [(graph.head_sender(0, 3), graph.qkv_receiver(1, "k", last)),
                             (0, graph.qkv_receiver(0, "v", last)), (graph.mlp_sender(0), graph.qkv_receiver(1, "q", 2))]:
        expected = _plain_edge_patch(bridge, graph, pairs, metric, sender, receiver)
        assert float(scores[True][sender, receiver]) == pytest.approx(expected, abs=1e-5), (sender, receiver)


@pytest.mark.parametrize("architecture", ["llama", "gemma3"])
def test_eap_on_a_grouped_query_bridge_is_the_product_of_the_difference_and_autograds_gradient(tmp_path, monkeypatch,
                                                                                               architecture):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = _tiny_bridge(architecture, tmp_path / architecture)
    pairs = random_pairs(3, 8, d_vocab=VOCAB)
    graph, metric = Graph.of(bridge.cfg), Metric("logit_diff", pairs)
    assert graph.grouped
    with torch.no_grad():
        difference = _plain_outputs(bridge, pairs["corrupted"]) - _plain_outputs(bridge, pairs["clean"])
    expected = _product(difference, _plain_gradients(bridge, graph, pairs, metric), graph)
    got = gradient_scores(bridge, graph, pairs, metric, "eap", ig_steps=1, batch_size_prompts=8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert got.abs().max() > 1e-3
