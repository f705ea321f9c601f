from __future__ import annotations

import pytest
import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tasks.base import make_task
from tests.support.models import task_model


def copy_offsets(tokens: torch.Tensor, mask: torch.Tensor) -> set[int]:
    """For each sequence, how far back the copied segment's source is."""
    offsets = set()
    for row, row_mask in zip(tokens, mask):
        positions = row_mask.nonzero().flatten().tolist()
        if not positions:
            continue
        i = positions[0]  # predicting token i + 1, a copy of an earlier token
        target = row[i + 1]
        earlier = [j for j in range(1, i + 1) if row[j] == target and row[j - 1] == row[i]]
        offsets |= {i + 1 - j for j in earlier}
    return offsets


def test_induction_data_repeats_a_segment_at_varying_offsets():
    task = make_task({"name": "induction", "d_vocab": 50, "seq_len": 40, "min_repeat": 4, "max_repeat": 12})
    tokens, mask = task.sample(torch.Generator().manual_seed(0), 200)
    assert tokens.shape == (200, 41) and (tokens[:, 0] == 0).all()
    assert (tokens[:, 1:] >= 2).all()  # no specials inside sequences
    # every masked prediction is of a token that has appeared after the same previous token
    for row, row_mask in zip(tokens, mask):
        for i in row_mask.nonzero().flatten().tolist():
            assert any(row[j] == row[i + 1] and row[j - 1] == row[i] for j in range(1, i + 1))
    # no fixed offset: a layer-0 head could not solve it from position alone
    assert len(copy_offsets(tokens, mask)) > 15


def test_induction_data_is_seeded():
    task = make_task({"name": "induction"})
    a = task.train_batch(torch.Generator().manual_seed(3), 8)
    b = task.train_batch(torch.Generator().manual_seed(3), 8)
    c = task.train_batch(torch.Generator().manual_seed(4), 8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_modular_addition_split_is_disjoint_complete_and_seeded():
    task = make_task({"name": "modular_addition", "p": 23, "train_fraction": 0.3, "seed": 1})
    train, test = task.split()
    pairs = lambda t: {tuple(x) for x in t[:, :2].tolist()}  # noqa: E731
    assert not pairs(train) & pairs(test)
    assert len(pairs(train) | pairs(test)) == 23 * 23
    assert len(train) == round(0.3 * 23 * 23)
    assert (train[:, 2] == 23).all()
    again = make_task({"name": "modular_addition", "p": 23, "train_fraction": 0.3, "seed": 1}).split()[0]
    other = make_task({"name": "modular_addition", "p": 23, "train_fraction": 0.3, "seed": 2}).split()[0]
    assert torch.equal(train, again) and not torch.equal(train, other)
    assert torch.equal(task.answers(train), (train[:, 0] + train[:, 1]) % 23)


def test_modular_addition_last_position_logits_equal_the_full_forward():
    task = make_task({"name": "modular_addition", "p": 17})
    model = task_model(task, with_tokenizer=False, n_layers=1, d_model=32, n_heads=4, d_head=8, d_mlp=64,
                       act_fn="relu", normalization_type=None, seed=0)
    tokens = task.split()[0]
    fast = task.logits(model, tokens)
    full = model(tokens, return_type="logits")
    assert fast.shape == (len(tokens), 1, 17)
    torch.testing.assert_close(fast[:, -1], full[:, -1], rtol=0, atol=1e-5)
    assert torch.allclose(task.loss(fast, tokens), task.loss(full, tokens))


@pytest.mark.parametrize(
    ("config", "key", "hint"),
    [
        ({"name": "inductoin"}, "task.name", "did you mean 'induction'?"),
        ({"name": "induction", "seqlen": 8}, "task.seqlen", "did you mean 'seq_len'?"),
        ({"name": "induction", "seq_len": 10, "max_repeat": 8}, "task", "max_repeat"),
        ({"name": "modular_addition", "train_fraction": 1.5}, "task", "train_fraction"),
    ],
)
def test_task_config_errors_name_the_key(config, key, hint):
    with pytest.raises(ConfigError) as caught:
        make_task(config)
    assert caught.value.key == key and hint in str(caught.value)


def test_toy_tokenizers_round_trip_through_transformer_lens():
    for config, text in (({"name": "induction"}, "t0 t5 t9"), ({"name": "modular_addition", "p": 7}, "1 2 =")):
        task = make_task(config)
        model = task_model(task, n_layers=1, d_model=16, n_heads=2, d_head=8, attn_only=True)
        cfg = model.cfg  # the config the model was built from (the same object)
        assert len(model.tokenizer) == cfg.d_vocab  # TransformerLens added no token of its own
        # truncate=False: "[BOS] 1 2 =" is one token longer than modular addition's n_ctx of 3,
        # and TransformerLens truncates before it drops the BOS this model does not use.
        tokens = model.to_tokens(text, truncate=False)
        str_tokens = model.to_str_tokens(tokens[0])
        assert [t for t in str_tokens if t != "<bos>"] == text.split()
        assert (tokens[0, 0] == 0) == cfg.default_prepend_bos  # BOS (id 0) only where the model uses it
