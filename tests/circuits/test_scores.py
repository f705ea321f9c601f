"""Edge scores against plain implementations: EAP against autograd's product, EAP-IG against a loop over
steps, exact edge patching against a TransformerLens hook patching one edge; faithfulness at the ends;
the same numbers through a TransformerBridge."""

from __future__ import annotations

import functools
import types

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.circuits.ablation import AblatedRuns, exact_scores  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.common.tl_version import has_hooked_transformer  # noqa: E402
from interp_pipeline.circuits.faithfulness import Baselines, faithfulness_curve  # noqa: E402
from interp_pipeline.circuits.circuit import edge_order  # noqa: E402
from interp_pipeline.circuits.graph import Graph  # noqa: E402
from interp_pipeline.circuits.scoring import gradient_scores  # noqa: E402
from interp_pipeline.models.shape import hooked_transformer_config, shape_of_config  # noqa: E402
from interp_pipeline.patching.metrics import Metric  # noqa: E402
from tests.support.models import random_pairs, tiny_model  # noqa: E402


def test_the_graph_counts_gpt2_smalls_edges_and_the_toy_models():
    assert Graph(12, 12).n_edges == 32491  # MIB's and hannamw/EAP-IG's count for GPT-2 small
    assert Graph(2, 4, has_mlp=False).n_edges == 4 * 3 * 1 + 4 * 3 * 5 + 9
    graph = Graph(2, 2)
    assert graph.sender_names == ["input", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1"]
    assert graph.valid[graph.head_sender(0, 1), graph.mlp_receiver(0)]  # an MLP reads its own layer's heads
    assert not graph.valid[graph.head_sender(1, 0), graph.qkv_receiver(1, "k", 1)]


def test_the_graph_of_grouped_query_attention_has_a_key_and_a_value_input_per_key_value_head():
    graph = Graph(2, 4, n_kv_heads=2)
    # By hand: a layer's receivers are 4 queries, 2 keys, 2 values and the MLP. Layer 0's 8 attention
    # inputs read the input; its MLP the input and 4 heads; layer 1's 8 read those and m0 (6 senders);
    # its MLP 10; the logits all 11 senders.
    assert (graph.n_senders, graph.n_receivers) == (11, 2 * 9 + 1)
    assert graph.n_edges == 8 * 1 + 5 + 8 * 6 + 10 + 11 == 82
    assert Graph(2, 4).n_edges == 12 * 1 + 5 + 12 * 6 + 10 + 11  # the same model without grouping
    assert graph.receiver_names[:9] == ["a0.h0<q>", "a0.h1<q>", "a0.h2<q>", "a0.h3<q>", "a0.kv0<k>", "a0.kv1<k>",
                                        "a0.kv0<v>", "a0.kv1<v>", "m0"]
    assert graph.qkv_receiver(1, "v", 1) == 9 + 7 and graph.mlp_receiver(1) == 9 + 8
    # key/value head 1 is read by query heads 2 and 3 (repeat_interleave's order)
    assert graph.receiver_nodes[:, graph.qkv_receiver(0, "k", 1)].nonzero().flatten().tolist() == [3, 4]
    assert Graph(2, 4, n_kv_heads=4) == Graph(2, 4)
    # Pre-flight's shape (no weights) gives the same graph, so n_edges is checked against 82, not 110.
    shape = shape_of_config(hooked_transformer_config(dict(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64,
                                                           d_vocab=50, n_ctx=24, act_fn="gelu", n_key_value_heads=2)))
    assert Graph.of(shape) == graph
    if has_hooked_transformer():  # and of an ungrouped config, MIB's graph (110 edges), as the model's cfg does
        ungrouped_shape = shape_of_config(hooked_transformer_config(dict(
            n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=24, act_fn="gelu",
            n_key_value_heads=2, ungroup_grouped_query_attention=True)))
        assert Graph.of(ungrouped_shape) == Graph(2, 4)
    with pytest.raises(ConfigError, match=r"inputs\.model.*\[2, 1\]"):  # layers of their own shapes: not one graph
        Graph.of(types.SimpleNamespace(n_layers=2, n_heads=4, n_key_value_heads=2, per_layer_num_key_value_heads=[2, 1]))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if has_hooked_transformer():
        model = tiny_model(n_layers=2, n_heads=2, seed=1)
    else:
        # TransformerLens 4's config-built model (boot_native) has neither split q/k/v inputs nor per-head
        # results (README "TransformerLens 4"): the same checks on a GPT-2 Bridge (the hf source) there.
        from interp_pipeline.models import hub
        from tests.support.tiny_gpt2 import save_tiny_gpt2

        directory = save_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))
        model = hub.load_hugging_face(str(directory), revision=None, device="cpu", dtype="float32")
    pairs = random_pairs(4, 7, d_vocab=50)
    return model, Graph.of(model.cfg), pairs, Metric("logit_diff", pairs)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """Grouped-query attention: 4 heads sharing 2 key/value heads (rotary, as the models that group are)."""
    if has_hooked_transformer():
        model = tiny_model(n_layers=2, n_heads=4, seed=1, n_key_value_heads=2, positional_embedding_type="rotary",
                           rotary_dim=8)
    else:  # TransformerLens 4: a Llama Bridge (the hf source), 4 heads sharing 2
        from interp_pipeline.models import hub
        from tests.support.tiny_bridges import save_tiny

        directory = save_tiny("llama", tmp_path_factory.mktemp("tiny_llama"))
        model = hub.load_hugging_face(str(directory), revision=None, device="cpu", dtype="float32")
    pairs = random_pairs(4, 7, d_vocab=50)
    graph = Graph.of(model.cfg)
    assert graph == Graph(2, 4, n_kv_heads=2)
    return model, graph, pairs, Metric("logit_diff", pairs)


@pytest.fixture(scope="module")
def ungrouped():
    """The same shape with TransformerLens's ungroup_grouped_query_attention (hannamw/EAP-IG's and MIB's graph):
    a key and a value input per query head."""
    if not has_hooked_transformer():
        pytest.skip("ungroup_grouped_query_attention is HookedTransformer's")
    model = tiny_model(n_layers=2, n_heads=4, seed=1, n_key_value_heads=2, ungroup_grouped_query_attention=True)
    pairs = random_pairs(4, 7, d_vocab=50)
    graph = Graph.of(model.cfg)
    assert graph == Graph(2, 4)
    return model, graph, pairs, Metric("logit_diff", pairs)


MODELS = ["setup", "grouped", "ungrouped"]


def _plain_outputs(model, tokens):
    """Each sender's output by TransformerLens's own hooks (hook_result: per-head outputs)."""
    model.set_use_attn_result(True)
    try:
        _, cache = model.run_with_cache(tokens)
    finally:
        model.set_use_attn_result(False)
    outs = [cache["blocks.0.hook_resid_pre"].unsqueeze(2)]
    for layer in range(model.cfg.n_layers):
        outs += [cache[f"blocks.{layer}.attn.hook_result"], cache[f"blocks.{layer}.hook_mlp_out"].unsqueeze(2)]
    return torch.cat(outs, 2)


def _plain_gradients(model, graph, pairs, metric, input_value=None):
    """d(mean metric)/d(each receiver's input) on the clean run, by autograd on the hooked tensors."""
    names = []
    for layer in range(graph.n_layers):
        names += [f"blocks.{layer}.hook_{x}_input" for x in "qkv"] + [f"blocks.{layer}.hook_mlp_in"]
    names.append(f"blocks.{graph.n_layers - 1}.hook_resid_post")
    kept = {}

    def keep(activation, hook, name):
        # A copy, whose gradient is the receiver's alone (a Bridge's hook_mlp_in is the residual stream
        # itself, skip connection included), kept by the name hooked (a Bridge's hook.name is its own).
        kept[name] = activation = activation.clone()
        return activation

    def start(activation, hook):
        return (activation if input_value is None else input_value).detach().requires_grad_(True)

    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    try:
        logits = model.run_with_hooks(pairs["clean"], fwd_hooks=[("blocks.0.hook_resid_pre", start),
                                                                  *((n, functools.partial(keep, name=n)) for n in names)])
    finally:
        model.set_use_split_qkv_input(False)
        model.set_use_hook_mlp_in(False)
    value = metric.full_logits_metric(logits)
    grads = dict(zip(names, torch.autograd.grad(value, [kept[n] for n in names])))
    columns = []
    for layer in range(graph.n_layers):
        columns += [grads[f"blocks.{layer}.hook_{x}_input"] for x in "qkv"]
        columns.append(grads[f"blocks.{layer}.hook_mlp_in"].unsqueeze(2))
    columns.append(grads[names[-1]].unsqueeze(2))
    return torch.cat(columns, 2)  # [batch, pos, n_receivers, d_model]


def _product(difference, gradient, graph):
    return torch.einsum("bpsd,bprd->sr", difference, gradient) * graph.valid


@pytest.mark.parametrize("model_setup", MODELS)
def test_eap_is_the_product_of_the_difference_and_autograds_gradient(model_setup, request):
    model, graph, pairs, metric = request.getfixturevalue(model_setup)
    with torch.no_grad():
        difference = _plain_outputs(model, pairs["corrupted"]) - _plain_outputs(model, pairs["clean"])
    expected = _product(difference, _plain_gradients(model, graph, pairs, metric), graph)
    got = gradient_scores(model, graph, pairs, metric, "eap", ig_steps=1, batch_size_prompts=3)  # two batches
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert got.abs().max() > 1e-3


def test_eap_ig_and_clean_corrupted_equal_a_plain_loop_over_their_points(setup):
    model, graph, pairs, metric = setup
    with torch.no_grad():
        clean, corrupted = _plain_outputs(model, pairs["clean"]), _plain_outputs(model, pairs["corrupted"])
    steps = 3
    grads = [_plain_gradients(model, graph, pairs, metric, corrupted[:, :, 0] + k / steps * (clean - corrupted)[:, :, 0])
             for k in range(steps)]
    expected = _product(corrupted - clean, sum(grads) / steps, graph)
    got = gradient_scores(model, graph, pairs, metric, "eap_ig_inputs", ig_steps=steps, batch_size_prompts=8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

    swapped = {**pairs, "clean": pairs["corrupted"]}
    both = (_plain_gradients(model, graph, pairs, metric) + _plain_gradients(model, graph, swapped, metric)) / 2
    got = gradient_scores(model, graph, pairs, metric, "clean_corrupted", ig_steps=1, batch_size_prompts=8)
    torch.testing.assert_close(got, _product(corrupted - clean, both, graph), atol=1e-5, rtol=0)

    # On activations: the input group's edges integrate along the input path, like eap_ig_inputs from k = 1.
    grads = [_plain_gradients(model, graph, pairs, metric, corrupted[:, :, 0] + k / steps * (clean - corrupted)[:, :, 0])
             for k in range(1, steps + 1)]
    got = gradient_scores(model, graph, pairs, metric, "eap_ig_activations", ig_steps=steps, batch_size_prompts=8)
    torch.testing.assert_close(got[0], _product(corrupted - clean, sum(grads) / steps, graph)[0], atol=1e-5, rtol=0)


def _plain_edge_patch(model, graph, pairs, metric, sender, receiver):
    """Clean run; the receiver's input gets the sender's corrupted output in place of its clean one."""
    with torch.no_grad():
        delta = (_plain_outputs(model, pairs["corrupted"]) - _plain_outputs(model, pairs["clean"]))[:, :, sender]
    layer, offset = divmod(receiver, graph.per_layer_receivers)
    q, kv = graph.n_heads, graph.n_kv_heads  # a layer's receivers: q per head, k and v per key/value head, MLP
    if receiver == graph.logits_receiver:
        name, head = f"blocks.{graph.n_layers - 1}.hook_resid_post", None
    elif offset == q + 2 * kv:
        name, head = f"blocks.{layer}.hook_mlp_in", None
    elif offset < q:
        name, head = f"blocks.{layer}.hook_q_input", offset
    else:
        name, head = f"blocks.{layer}.hook_{'kv'[(offset - q) // kv]}_input", (offset - q) % kv

    def patch(activation, hook):
        if head is None:
            return activation + delta
        activation = activation.clone()
        activation[:, :, head] += delta
        return activation

    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    try:
        with torch.no_grad():
            patched = metric.full_logits_metric(model.run_with_hooks(pairs["clean"], fwd_hooks=[(name, patch)]))
            clean = metric.full_logits_metric(model(pairs["clean"]))
    finally:
        model.set_use_split_qkv_input(False)
        model.set_use_hook_mlp_in(False)
    return float(patched - clean)


@pytest.mark.parametrize("model_setup", MODELS)
def test_exact_edge_patching_equals_patching_one_edge_with_a_plain_hook(model_setup, request):
    model, graph, pairs, metric = request.getfixturevalue(model_setup)
    runs = AblatedRuns(model, graph, pairs, metric, "corrupted", batch_size_prompts=8)
    scores = exact_scores(runs)
    last = graph.n_kv_heads - 1  # with grouping: the second key/value head, read by heads 2 and 3
    edges = [(0, graph.qkv_receiver(0, "q", 1)), (graph.head_sender(0, 1), graph.qkv_receiver(1, "v", 0)),
             (graph.head_sender(0, 0), graph.mlp_receiver(0)), (graph.mlp_sender(0), graph.qkv_receiver(1, "k", 1)),
             (graph.mlp_sender(1), graph.logits_receiver), (graph.head_sender(1, 1), graph.logits_receiver),
             (graph.head_sender(0, 0), graph.qkv_receiver(1, "k", last)), (0, graph.qkv_receiver(0, "v", last))]
    for sender, receiver in edges:
        expected = _plain_edge_patch(model, graph, pairs, metric, sender, receiver)
        assert float(scores[sender, receiver]) == pytest.approx(expected, abs=1e-5), (sender, receiver)
    assert (scores[~graph.valid] == 0).all() and scores.abs().max() > 1e-3


def test_faithfulness_is_one_for_the_whole_graph_and_the_ablated_models_for_the_empty_one(setup):
    model, graph, pairs, metric = setup
    with torch.no_grad():
        corrupted = float(metric.full_logits_metric(model(pairs["corrupted"])))
        clean = float(metric.full_logits_metric(model(pairs["clean"])))
    runs = AblatedRuns(model, graph, pairs, metric, "corrupted", batch_size_prompts=8)
    baselines = Baselines.of(runs)
    assert baselines.model == pytest.approx(clean, abs=1e-5) and baselines.empty == pytest.approx(corrupted, abs=1e-5)
    order = edge_order(torch.randn(graph.n_senders, graph.n_receivers), graph, "top_n", absolute=True)
    curve = faithfulness_curve(runs, order, [0.0, 0.5, 1.0], baselines, prune=False)
    assert curve.faithfulness[0] == pytest.approx(0.0, abs=1e-6) and curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-4)
    assert curve.n_edges == [0, round(graph.n_edges / 2), graph.n_edges]

    zero = Baselines.of(AblatedRuns(model, graph, pairs, metric, "zero", batch_size_prompts=8))
    mean = Baselines.of(AblatedRuns(model, graph, pairs, metric, "mean", batch_size_prompts=8))
    assert zero.model == pytest.approx(clean, abs=1e-5) and mean.model == pytest.approx(clean, abs=1e-5)
    assert len({round(zero.empty, 4), round(mean.empty, 4), round(corrupted, 4)}) == 3
