"""TransformerLens-style access to a store: store[hook], store[name, layer], and the [sequence, position]
view, checked against TransformerLens's own ActivationCache on the same model and tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp_pipeline.activations.reader import ActivationStore
from interp_pipeline.stages.cache_activations import cache_activations
from tests.support.models import CACHE_PARAMS, HOOKS, tiny_model_and_tokens
from tests.support.stores import RESID, write_store


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A store of every position of 30 sequences of 12 tokens, and the model's ActivationCache of them."""
    model, tokens = tiny_model_and_tokens()
    path = tmp_path_factory.mktemp("view") / "s.zarr"
    cache_activations(model, tokens, store=str(path), positions="all", dtype="float32", **CACHE_PARAMS)
    _, cache = model.run_with_cache(tokens, names_filter=HOOKS)
    return ActivationStore.open(path), cache


def test_names_and_shorthands_as_activation_cache(written):
    store, cache = written
    assert store["blocks.0.hook_resid_post"].hook == "blocks.0.hook_resid_post"
    assert store["resid_post", 0].hook == "blocks.0.hook_resid_post"
    assert store["z", 1].hook == "blocks.1.attn.hook_z" and store["z1"].hook == "blocks.1.attn.hook_z"
    assert store.keys() == HOOKS and ("resid_post", 0) in store and ("resid_pre", 0) not in store
    with pytest.raises(KeyError, match="did you mean 'blocks.0.hook_resid_post'"):
        store["blocks.0.hook_resid_pst"]


def test_sequence_position_view_equals_the_cache(written):
    store, cache = written
    resid, z = store["resid_post", 0], store["z", 1]
    assert resid.shape == tuple(cache["resid_post", 0].shape) == (30, 12, 16)
    assert z.shape == tuple(cache["z", 1].shape) == (30, 12, 2, 8)
    assert len(resid) == 30
    for view, name in ((resid, ("resid_post", 0)), (z, ("z", 1))):
        want = cache[name]
        assert torch.equal(view[3], want[3])
        assert torch.equal(view[3, -1], want[3, -1])
        assert torch.equal(view[3, 2:5], want[3, 2:5])
        assert torch.equal(view[0:8, 5:10], want[0:8, 5:10])
        assert torch.equal(view[[1, 4, 29], 0], want[[1, 4, 29], 0])
        assert torch.equal(view[-1], want[-1])
    with pytest.raises(IndexError, match="sequence 30 is out of range"):
        resid[30]


def test_a_short_last_sequence_and_positions_out_of_order(tmp_path):
    # 103 rows of 7-token sequences: 14 whole ones and a last one of 5 positions.
    write_store(tmp_path / "s.zarr", n_rows=103, chunk_rows=10)
    store = ActivationStore.open(tmp_path / "s.zarr")
    view = store[RESID]
    assert view.shape == (15, 7, 6)
    assert view[14].shape == (5, 6) and view[14][:, 0].tolist() == [98, 99, 100, 101, 102]  # column 0 holds the row
    assert view[2, 3][0].item() == 17
    with pytest.raises(IndexError, match="different numbers of positions"):
        view[13:15]
    assert view[0:14].shape == (14, 7, 6)
    np.testing.assert_array_equal(view[0:2, 0][:, 0].numpy(), [0, 7])
