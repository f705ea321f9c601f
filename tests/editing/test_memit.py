"""MEMIT: its least-squares update, its relation to ROME's, the key statistics, pre-flight, and a Bridge."""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.editing.covariance import key_covariances
from interp_pipeline.editing.memit import apply_memit, memit_update
from interp_pipeline.editing.rome import Prompts, mlp_key_hook, rank_one_update
from interp_pipeline.editing.targets import hidden_at_subject


@pytest.fixture(scope="module")
def model():
    from tests.support.models import tiny_model

    return tiny_model(n_layers=3, d_vocab=50)


def _prompts(n: int, seed: int) -> Prompts:
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(1, 50, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]
    return Prompts.of(rows, [int(torch.randint(0, len(r), (1,), generator=g)) for r in rows])


def test_the_covariance_is_the_uncentred_second_moment_per_kept_token(model):
    tokens = torch.randint(1, 50, (10, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[:, 6:] = False  # padding: left out of the sums and of the count
    stats, count = key_covariances(model, [0, 2], tokens, batch_size_prompts=4, mask=mask)
    assert count == 60
    _, cache = model.run_with_cache(tokens)
    for layer in (0, 2):
        keys = cache[mlp_key_hook(layer)][mask].double()
        torch.testing.assert_close(stats[layer], keys.T @ keys / 60)  # E[k k^T]: mean over tokens, no centring
        centred = (keys - keys.mean(0)).T @ (keys - keys.mean(0)) / 60
        assert (stats[layer] - centred).abs().max() > 1e-3


def test_each_layer_update_solves_its_normal_equations_and_leaves_the_original(model):
    tokens = torch.randint(1, 50, (32, 12), generator=torch.Generator().manual_seed(1))
    stats, _ = key_covariances(model, [0, 1, 2], tokens, batch_size_prompts=16)
    covariances = {layer: c + 1e-3 * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
                   for layer, c in stats.items()}
    rewrites = _prompts(6, seed=2)
    deltas = torch.randn(6, model.cfg.d_model, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    lam = 3.0
    result = apply_memit(model, [1, 2], covariances, rewrites, deltas, mom2_update_weight=lam)
    for name, p in model.state_dict().items():
        assert torch.equal(p, before[name]), name
    assert [u.layer for u in result.layers] == [1, 2]
    for u in result.layers:
        lhs = (lam * covariances[u.layer] + u.keys.T @ u.keys) @ u.update
        rhs = u.keys.T @ u.residuals
        assert ((lhs - rhs).abs().max() / rhs.abs().max()).item() < 1e-6
        torch.testing.assert_close(result.model.blocks[u.layer].mlp.W_out.double(),
                                   before[f"blocks.{u.layer}.mlp.W_out"].double() + u.update, atol=1e-6, rtol=0)
    # the first layer carries half of the residual, the last what remains; z = h + delta
    first = result.layers[0]
    torch.testing.assert_close(first.residuals, deltas / 2)
    h = hidden_at_subject(model, "blocks.2.hook_resid_post", 2, rewrites).double()
    torch.testing.assert_close(result.targets, h + deltas)
    changed = {n for n, p in result.model.state_dict().items() if not torch.equal(p, before[n])}
    assert changed == {"blocks.1.mlp.W_out", "blocks.2.mlp.W_out"}


def test_one_edit_one_layer_is_rome_scaled_by_q_over_lambda_plus_q(model):
    tokens = torch.randint(1, 50, (32, 12), generator=torch.Generator().manual_seed(5))
    stats, _ = key_covariances(model, [1], tokens, batch_size_prompts=16)
    c = stats[1] + 1e-3 * stats[1].diagonal().mean() * torch.eye(stats[1].shape[0], dtype=torch.float64)
    rewrite = _prompts(1, seed=6)
    delta = torch.randn(1, model.cfg.d_model, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    key = hidden_at_subject(model, mlp_key_hook(1), 1, rewrite).double()[0]
    weight = model.blocks[1].mlp.W_out.detach().double()
    rome = rank_one_update(weight, c, key, key @ weight + delta[0], at=key) - weight
    q = key @ torch.linalg.solve(c, key)
    for lam in (0.5, 20.0):
        memit = apply_memit(model, [1], {1: c}, rewrite, delta, mom2_update_weight=lam).layers[0].update
        torch.testing.assert_close(memit, rome * q / (lam + q), atol=1e-5, rtol=1e-5)
    # lambda -> 0: ROME's update itself
    torch.testing.assert_close(memit_update(c, key[None], delta, 1e-6), rome, atol=1e-5, rtol=1e-5)
    assert (memit - rome).abs().max() > 1e-3  # at lambda 20 it is not ROME's


TASK = {"name": "facts", "n_subjects": 8, "seed": 0}


def test_memit_params_are_checked_before_any_work():
    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.editing.config import MemitConfig
    from interp_pipeline.facts.world import RELATIONS, objects_of, subjects
    from interp_pipeline.models.shape import ModelShape
    from interp_pipeline.stages.memit import _check_batch, _check_shapes

    subject = subjects(8, 0)[0]
    cities = RELATIONS["lives_in"][1]
    current = cities[objects_of(8, 0)[0][0]]
    good = {"subject": subject, "relation": "lives_in", "new_object": next(c for c in cities if c != current)}
    _check_batch(MemitConfig(task=TASK, requests=[good], n_random_requests=3, n_neighbours=2))
    cases = [
        (dict(requests=[{**good, "subject": "Nobody"}]), r"^requests\[0\]\.subject: expected a subject of the facts"),
        (dict(requests=[{**good, "new_object": current}]), r"^requests\[0\]\.new_object: expected an object other "
                                                          r"than .*'s current one"),
        (dict(requests=[good, good]), r"^requests\[1\]: expected each fact once in a batch"),
        (dict(n_random_requests=19, n_neighbours=2), r"^n_random_requests: expected at most 18 random edits"),
        (dict(n_random_requests=4, n_neighbours=2, sizes=[1, 5]), r"^sizes: expected batch sizes in 1\.\.4"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            _check_batch(MemitConfig(task=TASK, **{"n_random_requests": 0, **kwargs}))
    shape = ModelShape(n_layers=4, n_heads=4, d_model=64, d_head=16, d_mlp=256, n_ctx=10, d_vocab=96, attn_only=False)
    with pytest.raises(ConfigError, match=r"^layers\[1\]: expected a layer in 0\.\.3, found 4"):
        _check_shapes(MemitConfig(task=TASK, layers=[3, 4]), {"model": shape})
    with pytest.raises(ConfigError, match=r"^layers: expected an MLP layer range to edit, or a causal_tracing"):
        _check_shapes(MemitConfig(task=TASK), {"model": shape})
    _check_shapes(MemitConfig(task=TASK), {"model": shape, "tracing": None})


def test_the_range_from_tracing_is_the_window_with_the_highest_effect():
    from interp_pipeline.editing.tracing_layer import layer_range_from_tracing

    mlp = torch.zeros(6, 6)
    mlp[2] = torch.tensor([0.1, 0.3, 0.05, 0.25, 0.2, 0.0])  # last subject token, by layer
    assert layer_range_from_tracing({"mlp": mlp}, 1) == [1]
    assert layer_range_from_tracing({"mlp": mlp}, 3) == [2, 3, 4] or layer_range_from_tracing({"mlp": mlp}, 3) == \
        [1, 2, 3]
    assert layer_range_from_tracing({"mlp": mlp}, 2) == [3, 4]
    assert layer_range_from_tracing({"mlp": mlp}, 9) == list(range(6))


def test_memit_and_rome_edit_a_bridge_through_its_conv1d_weights(tmp_path, monkeypatch):
    from interp_pipeline.editing.weights import mlp_out_weight
    from interp_pipeline.models import hub
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = hub.load_hugging_face(str(save_tiny_gpt2(tmp_path / "tiny_gpt2")), revision=None, device="cpu",
                                   dtype="float32")
    conv = bridge.blocks[1].mlp.out._original_component
    assert type(conv).__name__ == "Conv1D" and mlp_out_weight(bridge, 1) is conv.weight  # [d_mlp, d_model] as is
    before = {name: p.clone() for name, p in bridge.original_model.state_dict().items()}
    tokens = torch.randint(2, 20, (16, 8), generator=torch.Generator().manual_seed(0))
    stats, _ = key_covariances(bridge, [1], tokens, batch_size_prompts=8)
    c = stats[1] + 1e-2 * stats[1].diagonal().mean() * torch.eye(stats[1].shape[0], dtype=torch.float64)
    rewrites = Prompts.of([[1, 5, 6, 7], [1, 9, 3]], [2, 1])
    deltas = 0.5 * torch.randn(2, bridge.cfg.d_model, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = apply_memit(bridge, [1], {1: c}, rewrites, deltas, mom2_update_weight=1e-4)
    for name, p in bridge.original_model.state_dict().items():
        assert torch.equal(p, before[name]), name
    # nearly unregularised, one layer: the edited bridge's residual stream reaches the targets
    reached = hidden_at_subject(result.model, "blocks.1.hook_resid_post", 1, rewrites).double()
    torch.testing.assert_close(reached, result.targets, atol=1e-3, rtol=1e-3)
    changed = {n for n, p in result.model.original_model.state_dict().items() if not torch.equal(p, before[n])}
    # (the bridge lists each parameter under several aliases: every one is block 1's c_proj weight)
    assert changed and all(n.startswith("transformer.h.1.") and n.endswith("weight") and ("c_proj" in n or "mlp.out"
                                                                                         in n) for n in changed)


def test_counterfact_style_requests_are_checked_before_any_work():
    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.editing.config import MemitConfig
    from interp_pipeline.stages.memit import _check_batch

    good = {"prompt": "{} is located in the city of", "subject": "The Eiffel Tower", "new_object": " Rome",
            "true_object": " Paris", "paraphrases": ["Where is The Eiffel Tower? In"],
            "neighbourhood": ["The Louvre is located in the city of"]}
    _check_batch(MemitConfig(requests=[good], n_random_requests=0, sizes=[1]))
    _check_batch(MemitConfig(requests=[{**good, "prompt": "The Eiffel Tower is in"}], n_random_requests=0))
    cases = [
        ({**good, "prompt": "The tower is in"}, r"^requests\[0\]\.subject: expected 'The Eiffel Tower' in the "
                                                r"request's prompt, found 'The tower is in'"),
        ({**good, "paraphrases": ["Where is it?"]}, r"^requests\[0\]\.subject: expected .* in the request's "
                                                    r"paraphrases\[0\]"),
        ({**good, "new_object": "Paris"}, r"^requests\[0\]\.new_object: expected an object other than The Eiffel "
                                          r"Tower's current one, found 'Paris', which is its true_object"),
    ]
    for request, message in cases:
        with pytest.raises(ConfigError, match=message):
            _check_batch(MemitConfig(requests=[request], n_random_requests=0))
    with pytest.raises(ConfigError, match=r"^requests: expected requests of one kind"):
        _check_batch(MemitConfig(task=TASK, requests=[good], n_random_requests=2, n_neighbours=2))


def test_a_text_request_becomes_prompt_sets_with_the_subject_found_by_offsets(tmp_path, monkeypatch):
    from interp_pipeline.editing.cases import text_case
    from interp_pipeline.models import hub
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = hub.load_hugging_face(str(save_tiny_gpt2(tmp_path / "tiny_gpt2")), revision=None, device="cpu",
                                   dtype="float32")
    case = text_case(bridge, {"prompt": "{} sat on the", "subject": "the cat", "new_object": "park",
                              "true_object": "mat", "paraphrases": ["a dog ran in the cat"],
                              "neighbourhood": ["a dog ran in the", "the quick brown fox jumps over"]})
    ids = bridge.tokenizer.convert_tokens_to_ids
    assert case.new == ids("park") and case.true == ids("mat")
    assert bridge.tokenizer.decode(case.rewrite.tokens[0, case.rewrite.subject_last[0]]) == "cat"
    assert len(case.paraphrase) == 1 and len(case.key_prompts) == 2 and len(case.neighbourhood) == 2
    assert int(case.paraphrase.subject_last[0]) == 6  # [BOS] a dog ran in the cat: the last "cat"



def test_rome_edit_and_memit_edit_share_one_key_covariance_cache_entry(outputs):
    """The covariance is one stage-cache entry: rome_edit and memit_edit on toy_facts compute the same key
    for it (same model, tokens and settings), so whichever runs second is served."""
    from interp_pipeline.experiments.compose import compose
    from interp_pipeline.experiments.run import prepare
    from interp_pipeline.runner.runner import compute_keys

    keys = {name: compute_keys(prepare(compose([f"+experiment={name}"])).spec) for name in ("rome_edit", "memit_edit")}
    assert keys["rome_edit"]["covariance"] == keys["memit_edit"]["covariance"]
    assert keys["rome_edit"]["tracing"] == keys["memit_edit"]["tracing"]
    assert keys["rome_edit"]["rome"] != keys["memit_edit"]["memit"]


def test_rome_edits_a_bridge_and_a_linear_projection_is_read_transposed(tmp_path, monkeypatch):
    from interp_pipeline.editing.rome import edited_copy, rome_edit, top1
    from interp_pipeline.editing.weights import mlp_out_weight, set_mlp_out_weight
    from interp_pipeline.models import hub
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = hub.load_hugging_face(str(save_tiny_gpt2(tmp_path / "tiny_gpt2")), revision=None, device="cpu",
                                   dtype="float32")
    tokens = torch.randint(2, 20, (16, 8), generator=torch.Generator().manual_seed(0))
    stats, _ = key_covariances(bridge, [0], tokens, batch_size_prompts=8)
    c = stats[0] + 1e-2 * stats[0].diagonal().mean() * torch.eye(stats[0].shape[0], dtype=torch.float64)
    rewrite = Prompts.of([[1, 5, 6, 7]], [3])
    target = int((top1(bridge, rewrite)[0] + 1) % 20)
    # (a random GPT-2 of d_model 32 with tied embeddings cannot be confident: top-1 is what an edit can move)
    edit = rome_edit(bridge, 0, c, rewrite, target, steps=60, lr=0.5, kl_weight=0.0, weight_decay=0.0, seed=0)
    edited = edited_copy(bridge, 0, edit.weight)
    assert top1(edited, rewrite).tolist() == [target] and top1(bridge, rewrite).tolist() != [target]
    torch.testing.assert_close(edit.rewrite_key.float() @ mlp_out_weight(edited, 0), edit.value.float(), atol=1e-4,
                               rtol=1e-4)

    class Block(torch.nn.Module):  # a Bridge block whose MLP projects out with an nn.Linear ([d_model, d_mlp])
        def __init__(self):
            super().__init__()
            self.mlp = torch.nn.Module()
            self.mlp.out = torch.nn.Module()
            self.mlp.out._original_component = torch.nn.Linear(6, 4)

    fake = torch.nn.Module()
    fake.blocks = torch.nn.ModuleList([Block()])
    linear = fake.blocks[0].mlp.out._original_component
    assert mlp_out_weight(fake, 0).shape == (6, 4)
    new = torch.randn(6, 4)
    set_mlp_out_weight(fake, 0, new)
    torch.testing.assert_close(linear.weight, new.T)
    x = torch.randn(3, 6)
    torch.testing.assert_close(linear(x) - linear.bias, x @ new)  # out = k @ W_out, TransformerLens's layout
