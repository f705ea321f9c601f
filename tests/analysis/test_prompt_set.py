"""Where the look-inside stages' sequences and targets come from: prompts, token datasets, pairs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.analysis.prompt_set import NO_TARGET, answer_id, batches, prompt_set, select_positions  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.tasks.induction import InductionTask  # noqa: E402
from tests.support.models import task_model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return task_model(InductionTask(), n_layers=1, d_model=16, n_heads=2, d_head=8, attn_only=True, seed=0)


@pytest.mark.parametrize("spec, expected", [
    ("last", [6]), ("all", list(range(7))), ("-3:-1", [4, 5]), ("2:", [2, 3, 4, 5, 6]), ([0, -1, 0], [0, 6]),
])
def test_positions(spec, expected):
    assert select_positions(spec, 7) == expected


@pytest.mark.parametrize("spec", ["first", "1-3", [], [True], [9]])
def test_bad_positions_name_the_key(spec):
    with pytest.raises(ConfigError, match="^positions: expected"):
        select_positions(spec, 7)


def test_prompts_get_their_own_next_tokens_and_the_answer_last(model):
    sequences = prompt_set(model, tokens=None, pairs=None, prompts=["t1 t2 t3", "t4 t5"], answer=" t9",
                           prepend_bos=True)
    assert sequences.str_tokens[0] == ["<bos>", "t1", "t2", "t3"]
    nine = model.tokenizer.convert_tokens_to_ids("t9")
    assert sequences.targets[1].tolist() == [*sequences.tokens[1][1:].tolist(), nine]
    assert [sorted(g) for g in batches(sequences, 16)] == [[0], [1]]  # unequal lengths never share a batch


def test_tokens_and_pairs(model):
    rows = torch.tensor([[0, 5, 6, 5, 6]])
    from_rows = prompt_set(model, tokens=rows, pairs=None, prompts=None, answer=None, prepend_bos=True)
    assert from_rows.targets[0].tolist() == [5, 6, 5, 6, NO_TARGET]
    pairs = {"clean": torch.tensor([[0, 5, 6, 1], [0, 7, 8, 9]]), "length": torch.tensor([3, 4]),
             "targets": torch.tensor([[5, 6, 11, 1], [7, 8, 9, 12]])}
    from_pairs = prompt_set(model, tokens=None, pairs=pairs, prompts=None, answer=None, prepend_bos=True)
    assert [t.tolist() for t in from_pairs.tokens] == [[0, 5, 6], [0, 7, 8, 9]]
    assert from_pairs.targets[0].tolist() == [5, 6, 11]


def test_answer_of_several_tokens_or_unknown_is_refused(model):
    with pytest.raises(ConfigError, match=r"^answer: expected one token .* 2 tokens"):
        answer_id(model.tokenizer, "t1 t2")
    with pytest.raises(ConfigError, match="^answer: expected a word the model's tokenizer knows"):
        answer_id(model.tokenizer, "Paris")
    with pytest.raises(ConfigError, match="^answer: expected no answer"):
        prompt_set(model, tokens=torch.zeros(1, 3, dtype=torch.long), pairs=None, prompts=None, answer="t1",
                   prepend_bos=True)
