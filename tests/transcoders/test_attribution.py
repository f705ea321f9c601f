"""The replacement model and attribution graphs on a tiny random model with random transcoders."""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.transcoders.attribution import attribute, salient_logits
from interp_pipeline.transcoders.graph import prune, pruned_copy, scores
from interp_pipeline.transcoders.replacement import replacement_logits, run_prompt
from tests.support.models import tiny_model
from tests.support.transcoders import random_transcoders


@pytest.fixture(scope="module")
def setup():
    model = tiny_model(n_layers=3)
    tokens = torch.randint(0, 50, (9,), generator=torch.Generator().manual_seed(1))
    return model, tokens


@pytest.mark.parametrize("skip", [False, True])
def test_replacement_logits_equal_the_models(setup, skip):
    model, tokens = setup
    transcoders = random_transcoders(model, 64, skip=skip)
    run = run_prompt(model, transcoders, tokens)
    logits, _ = replacement_logits(model, transcoders, run)
    assert torch.allclose(logits, model(tokens[None])[0], atol=1e-5)
    # the transcoders alone (error nodes off) are not the model: the errors are doing work
    assert run.errors[:, 1:].abs().max() > 1e-2


@pytest.mark.parametrize("skip", [False, True])
def test_edges_equal_one_feature_perturbations(setup, skip):
    """Each edge into a feature is the change of its pre-activation when the source's activation moves,
    all else frozen (only direct paths): the model is linear there, so exactly eps * weight."""
    model, tokens = setup
    transcoders = random_transcoders(model, 64, skip=skip, seed=3)
    graph = attribute(model, transcoders, tokens, batch_size=16)
    run = run_prompt(model, transcoders, tokens)
    assert graph.n_features > 20
    _, base = replacement_logits(model, transcoders, run, direct_only=True)
    eps = 0.5
    where = graph.slices()
    checked = 0
    for source in range(0, graph.n_features, max(1, graph.n_features // 12)):
        layer, pos, feature = graph.active_features[source].tolist()
        delta = {(layer, pos, feature): eps * float(graph.activation_values[source])}
        logits, inputs = replacement_logits(model, transcoders, run, delta, direct_only=True)
        for target in range(graph.n_features):
            t_layer, t_pos, t_feature = graph.active_features[target].tolist()
            moved = inputs[t_layer, t_pos] - base[t_layer, t_pos]
            measured = float((moved @ transcoders[t_layer].W_enc[:, t_feature]).detach())
            assert measured == pytest.approx(eps * float(graph.adjacency[target, source]), abs=2e-5)
            checked += abs(measured) > 1e-3
        # and into the logits: the demeaned logit moves by eps * the logit row's weight
        _, _, directions = salient_logits(run.logits[-1], model.W_U, 10, 0.95)
        base_logits, _ = replacement_logits(model, transcoders, run, direct_only=True)
        change = logits[-1] - base_logits[-1]
        for row, token in enumerate(graph.logit_tokens.tolist()):
            moved = float(change[token] - change.mean())
            assert moved == pytest.approx(eps * float(graph.adjacency[where["logits"].start + row, source]), abs=2e-5)
    assert checked > 10  # non-trivial edges were compared


def test_layout_batching_and_pruning(setup):
    model, tokens = setup
    transcoders = random_transcoders(model, 64, seed=5)
    one = attribute(model, transcoders, tokens, batch_size=1)
    many = attribute(model, transcoders, tokens, batch_size=64)
    assert torch.allclose(one.adjacency, many.adjacency, atol=1e-5)
    where = many.slices()
    assert many.adjacency.shape[0] == many.n_features + 4 * len(tokens) + many.n_logits
    assert (many.active_features[:, 1] > 0).all()  # BOS features are zeroed, as in circuit-tracer
    assert many.adjacency[where["errors"]].abs().sum() == 0 and many.adjacency[where["tokens"]].abs().sum() == 0
    assert many.logit_probabilities.sum() >= 0.95 or many.n_logits == 10
    pruned = prune(many, 0.8, 0.98)
    assert pruned.node_mask[where["tokens"]].all() and pruned.node_mask[where["logits"]].all()
    assert 0 < int(pruned.node_mask[where["features"]].sum()) < many.n_features
    full = scores(many)
    assert 0 < full["replacement_score"] < 1 and 0 < full["completeness_score"] < 1
    kept = scores(pruned_copy(many, pruned))
    assert 0 <= kept["replacement_score"] <= 1
    # the most influential features first: with a budget, the graph keeps a subset
    few = attribute(model, transcoders, tokens, batch_size=8, max_feature_nodes=10)
    assert few.n_features == 10
