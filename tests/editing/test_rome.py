"""ROME: the closed form of the rank-one update, no change to the model edited, and one edit on a tiny model."""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.editing.rome import (Prompts, edited_copy, key_covariance, rank_one_update, rome_edit,
                                          subject_key, top1)


def test_rank_one_update_closed_form():
    generator = torch.Generator().manual_seed(0)
    d_mlp, d_model = 24, 10
    weight = torch.randn(d_mlp, d_model, generator=generator, dtype=torch.float64)
    keys = torch.randn(200, d_mlp, generator=generator, dtype=torch.float64) * torch.linspace(0.2, 3, d_mlp)
    covariance = keys.T @ keys / 200
    key = torch.randn(d_mlp, generator=generator, dtype=torch.float64)
    value = torch.randn(d_model, generator=generator, dtype=torch.float64)
    new = rank_one_update(weight, covariance, key, value)
    # k* W' = v* exactly (to float64 rounding)
    torch.testing.assert_close(key @ new, value, atol=1e-10, rtol=1e-10)
    # every key orthogonal to C^-1 k* maps as before ...
    left = torch.linalg.solve(covariance, key)
    others = torch.randn(50, d_mlp, generator=generator, dtype=torch.float64)
    others = others - torch.outer(others @ left, left) / (left @ left)
    torch.testing.assert_close(others @ new, others @ weight, atol=1e-10, rtol=1e-10)
    # ... and the change is rank one, along C^-1 k* (not along k*: C is not the identity here)
    change = new - weight
    assert torch.linalg.matrix_rank(change).item() == 1
    torch.testing.assert_close(change, torch.outer(left, (value - key @ weight) / (left @ key)))
    assert (others @ torch.outer(key, value - key @ weight)).abs().max() > 1e-3


def test_rank_one_update_at_the_rewrite_key():
    """ROME's reference (compute_v): the update is along C^-1 k* (k* averaged over prefixes) but scaled at the
    rewrite prompt's own key k, so that k W' = v* exactly and the rewrite prompt's output moves by delta."""
    generator = torch.Generator().manual_seed(0)
    d_mlp, d_model = 24, 10
    weight = torch.randn(d_mlp, d_model, generator=generator, dtype=torch.float64)
    keys = torch.randn(200, d_mlp, generator=generator, dtype=torch.float64) * torch.linspace(0.2, 3, d_mlp)
    covariance = keys.T @ keys / 200
    key = torch.randn(d_mlp, generator=generator, dtype=torch.float64)  # k*
    at = key + 0.5 * torch.randn(d_mlp, generator=generator, dtype=torch.float64)  # k: another prefix
    delta = torch.randn(d_model, generator=generator, dtype=torch.float64)
    new = rank_one_update(weight, covariance, key, at @ weight + delta, at=at)
    torch.testing.assert_close(at @ new, at @ weight + delta, atol=1e-10, rtol=1e-10)
    left = torch.linalg.solve(covariance, key)
    torch.testing.assert_close(new - weight, torch.outer(left, delta / (left @ at)))
    # scaled at k* instead, k's output would move by delta x (k . C^-1 k*) / (k* . C^-1 k*), not delta
    at_key = rank_one_update(weight, covariance, key, key @ weight + delta)
    torch.testing.assert_close(at @ at_key - at @ weight, delta * (at @ left) / (key @ left))


@pytest.fixture(scope="module")
def model():
    from tests.support.models import tiny_model

    return tiny_model(n_layers=2, d_vocab=50)


def test_edit_on_a_tiny_model_sets_the_key_value_and_leaves_the_original(model):
    tokens = torch.randint(1, 50, (32, 12), generator=torch.Generator().manual_seed(1))
    covariance = key_covariance(model, 0, tokens, batch_size_prompts=8)
    assert covariance.shape == (64, 64)
    torch.testing.assert_close(covariance, covariance.T)
    # The subject ends each prompt: in a random model, a later position barely reads it (diffuse attention).
    rewrite = Prompts.of([[3, 7, 9, 11], [5, 8, 2, 9, 11]], subject_last=[3, 4])
    before = {name: p.clone() for name, p in model.state_dict().items()}
    original_top1 = top1(model, rewrite)
    target = int((original_top1[0] + 1) % 50)
    # k* over more prefixes than the rewrite prompts have: the update is along C^-1 k*, exact at their key
    key_prompts = Prompts.of([[3, 7, 9, 11], [5, 8, 2, 9, 11], [12, 9, 11], [4, 4, 6, 9, 11]],
                             subject_last=[3, 4, 2, 4])
    edit = rome_edit(model, 0, covariance, rewrite, target, key_prompts=key_prompts, steps=60, lr=0.5,
                     kl_weight=0.0625, weight_decay=0.5, seed=0)
    assert not torch.allclose(edit.key, edit.rewrite_key)
    edited = edited_copy(model, 0, edit.weight)
    # the original model is untouched: every parameter bit for bit, and its predictions
    for name, p in model.state_dict().items():
        assert torch.equal(p, before[name]), name
    assert torch.equal(top1(model, rewrite), original_top1)
    # the edited copy maps the rewrite prompts' key to v* and only W_out of block 0 differs
    torch.testing.assert_close(edit.rewrite_key.float() @ edited.blocks[0].mlp.W_out, edit.value.float(), atol=1e-4,
                               rtol=1e-4)
    changed = [n for n, p in edited.state_dict().items() if not torch.equal(p, before[n])]
    # W_out's name: a HookedTransformer's, or a TransformerLens 4 config-built Bridge's (models.from_config)
    assert changed in (["blocks.0.mlp.W_out"], ["blocks.0.mlp.out.weight"])
    torch.testing.assert_close(edit.key, subject_key(model, 0, key_prompts))
    torch.testing.assert_close(edit.rewrite_key, subject_key(model, 0, rewrite))
    # and says the new object
    assert top1(edited, rewrite).tolist() == [target, target]


TASK = {"name": "facts", "n_subjects": 8, "seed": 0}


def test_rome_edit_params_are_checked_before_any_work():
    from interp_pipeline.editing.config import RomeConfig
    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.facts.world import RELATIONS, objects_of, subjects
    from interp_pipeline.models.shape import ModelShape
    from interp_pipeline.stages.rome import _check_edits, _check_shapes

    subject = subjects(8, 0)[0]
    cities = RELATIONS["lives_in"][1]
    current = cities[objects_of(8, 0)[0][0]]
    good = {"subject": subject, "relation": "lives_in", "new_object": next(c for c in cities if c != current)}
    _check_edits(RomeConfig(task=TASK, requests=[good]))
    cases = [
        ({**good, "subject": "Nobody"}, r"^requests\[0\]\.subject: expected a subject of the facts world, found 'Nobody'"),
        ({**good, "relation": "lives"}, r"^requests\[0\]\.relation: expected one of .*did you mean 'lives_in'"),
        ({**good, "new_object": "New York"}, r"^requests\[0\]\.new_object: expected an object of one token, found "
                                             r"'New York' \(2 tokens\)"),
        ({**good, "new_object": "French"}, r"^requests\[0\]\.new_object: expected an object of lives_in"),
        ({**good, "new_object": current}, r"^requests\[0\]\.new_object: expected an object other than .*'s current"),
    ]
    for request, message in cases:
        with pytest.raises(ConfigError, match=message):
            _check_edits(RomeConfig(task=TASK, requests=[request]))
    shape = ModelShape(n_layers=4, n_heads=4, d_model=64, d_head=16, d_mlp=256, n_ctx=10, d_vocab=96, attn_only=False)
    with pytest.raises(ConfigError, match=r"^layer: expected a layer in 0\.\.3, found 4"):
        _check_shapes(RomeConfig(task=TASK, layer=4), {"model": shape})
    with pytest.raises(ConfigError, match=r"^layer: expected an MLP layer to edit, or a causal_tracing input"):
        _check_shapes(RomeConfig(task=TASK), {"model": shape})
    attn_only = ModelShape(n_layers=2, n_heads=4, d_model=64, d_head=16, d_mlp=None, n_ctx=10, d_vocab=96,
                           attn_only=True)
    with pytest.raises(ConfigError, match=r"^inputs\.model: expected a model with MLPs"):
        _check_shapes(RomeConfig(task=TASK, layer=0), {"model": attn_only})


def test_the_tracing_picks_the_mlp_layer_peaking_at_the_last_subject_token():
    from interp_pipeline.editing.tracing_layer import layer_from_tracing

    mlp = torch.zeros(6, 4)
    mlp[2, 1] = 0.3  # last subject token, layer 1
    mlp[5, 3] = 0.9  # the last token's peak does not count
    assert layer_from_tracing({"mlp": mlp, "attn": torch.zeros(6, 4)}) == 1
