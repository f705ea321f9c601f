"""Greater-Than prompts (circuits/greater_than.py) under GPT-2's real tokenizer: every prompt splits as
Hanna et al. 2023's do (the start year as a century token and a two-digit token, clean and corrupted of
one length), and the prob_diff metric reads the years above YY; a metric the pairs cannot feed is
refused at pre-flight."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.circuits.config import CircuitsConfig, GreaterThanConfig  # noqa: E402
from interp_pipeline.circuits.greater_than import KEYS, PairsShape, greater_than_pairs  # noqa: E402
from interp_pipeline.circuits.run import check_inputs  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.patching.metrics import Metric  # noqa: E402


class _Model:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer


def test_every_prompt_tokenizes_as_the_papers(gpt2_tokenizer):
    pairs = greater_than_pairs(_Model(gpt2_tokenizer), GreaterThanConfig(n_prompts=200, seed=0))
    assert pairs["clean"].shape == pairs["corrupted"].shape == (200, 13)
    for clean, corrupted, yy in zip(pairs["clean"].tolist(), pairs["corrupted"].tolist(), pairs["threshold"].tolist()):
        pieces = gpt2_tokenizer.convert_ids_to_tokens(clean)
        century = pieces[7]
        assert pieces[1] == "The" and pieces[6] == "Ġyear" and century == pieces[-1] and len(century) == 3
        assert pieces[8] == f"{yy:02d}" and 2 <= yy <= 98  # the two-digit piece alone, no space
        assert gpt2_tokenizer.convert_ids_to_tokens(corrupted)[8] == "01"
        assert [p for i, p in enumerate(pieces) if i != 8] == [p for i, p in enumerate(
            gpt2_tokenizer.convert_ids_to_tokens(corrupted)) if i != 8]
    assert len(set(pairs["threshold"].tolist())) > 40  # years spread over the century

    # prob_diff: all probability on "99" is +1 for every prompt, all on "00" is -1.
    metric = Metric("prob_diff", pairs)
    rows = torch.arange(200)
    logits = torch.full((200, 1, 50257), -30.0)
    logits[:, 0, gpt2_tokenizer.convert_tokens_to_ids("99")] = 30.0
    assert torch.allclose(metric.per_prompt(logits, rows), torch.ones(200))
    logits[:, 0] = -30.0
    logits[:, 0, gpt2_tokenizer.convert_tokens_to_ids("00")] = 30.0
    assert torch.allclose(metric.per_prompt(logits, rows), -torch.ones(200))


def test_a_metric_without_its_tokens_in_the_pairs_is_refused_before_work():
    with pytest.raises(ConfigError, match=r"^metric: logit_diff reads the pairs' answer, wrong tokens"):
        check_inputs(CircuitsConfig(metric="logit_diff"), {"pairs": PairsShape(KEYS)})
    check_inputs(CircuitsConfig(metric="prob_diff"), {"pairs": PairsShape(KEYS)})
