"""The prompt-pair stages (stages/prompt_pairs.py): IOI prompts generated in code, pairs from YAML."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages
from interp_pipeline.storage.cache_codecs import codec_for
from interp_pipeline.stages.prompt_pairs import ioi_prompts, prompt_pairs
from interp_pipeline.tasks.base import make_task
from interp_pipeline.tasks.ioi_prompts import generate_ioi
from interp_pipeline.tracking.base import Tracker
from tests.conftest import REPO
from tests.support.models import byte_level_bpe, task_model, tiny_hooked_transformer

NAMES = ["John", "Mary", "Tom", "James", "Amy", "Sid", "Dan", "Martin"]
DEMO = REPO / "conf/data/ioi_demo_prompts.yaml"


class Recorder(Tracker):
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.update(metrics)


def _model(tokenizer, n_ctx: int = 32):
    return tiny_hooked_transformer(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=n_ctx, d_vocab=len(tokenizer),
                                   attn_only=True, seed=0, device="cpu", tokenizer=tokenizer)


@pytest.fixture(scope="module")
def toy_model():
    task = make_task({"name": "ioi"})
    return task_model(task, n_layers=1, d_model=16, n_heads=2, d_head=8, attn_only=True, seed=0, device="cpu")


@pytest.fixture(scope="module")
def bpe_model():
    demo = OmegaConf.to_container(OmegaConf.load(DEMO))["params"]["pairs"]
    texts = [p.clean + p.answer for p in generate_ioi(600, 0, names=NAMES)]
    texts += [pair["clean"] + pair["answer"] for pair in demo]
    return _model(byte_level_bpe(texts))


def test_stages_are_registered_with_one_pairs_output():
    load_stage_modules()
    stages = registered_stages()
    for name in ("ioi_prompts", "prompt_pairs"):
        assert stages[name].outputs == ("pairs",)
    definition = stages["ioi_prompts"]
    definition.preflight(definition.settings({"n_prompts": 5, "seed": 0}))  # the rest has defaults


def test_ioi_prompts_on_the_toy_model(toy_model):
    tracker = Recorder()
    pairs = ioi_prompts(toy_model, n_prompts=24, seed=3, corruption="abc", min_pairs=24, tracker=tracker)
    assert tracker.metrics["pairs_kept"] == 24 and tracker.metrics["pairs_dropped"] == 0
    assert codec_for(pairs).name == "tensors"  # how the stage cache stores it
    again = ioi_prompts(toy_model, n_prompts=24, seed=3, corruption="abc", min_pairs=24)
    assert all(torch.equal(pairs[k], again[k]) for k in pairs)
    records = generate_ioi(24, 3)
    decode = toy_model.tokenizer.decode
    for row, p in enumerate(records):
        assert decode([int(pairs["clean"][row, pairs["io_pos"][row]])]) == p.io
        assert decode([int(pairs["clean"][row, pairs["s2_pos"][row]])]) == p.s
        assert decode([int(pairs["corrupted"][row, pairs["s2_pos"][row]])]) == p.corrupted_s2
        assert decode([int(pairs["answer"][row])]) == p.io
    assert pairs["clean"].shape[1] <= toy_model.cfg.n_ctx


def test_ioi_prompts_drops_names_the_tokenizer_splits(bpe_model):
    tracker = Recorder()
    names = [*NAMES, "Zebulon"]
    pairs = ioi_prompts(bpe_model, n_prompts=100, seed=0, names=names, tracker=tracker)
    involved = sum("Zebulon" in (p.io, p.s, p.corrupted_s2) for p in generate_ioi(100, 0, names=names))
    assert tracker.metrics["pairs_dropped"] == involved > 0
    assert tracker.metrics["pairs_kept"] == len(pairs["clean"]) == 100 - involved
    with pytest.raises(ConfigError) as caught:
        ioi_prompts(bpe_model, n_prompts=100, seed=0, names=names, min_pairs=100)
    assert caught.value.key == "min_pairs"
    assert f"found {100 - involved} of 100 ({involved} dropped:" in str(caught.value)


@pytest.mark.parametrize(
    ("params", "key", "hint"),
    [
        ({"corruption": "s2swap"}, "corruption", "did you mean 's2_swap'?"),
        ({"orders": ["ABA"]}, "orders[0]", "expected one of ABBA, BABA"),
        ({"templates": [20]}, "templates[0]", "0..14"),
        ({"min_pairs": 200}, "min_pairs", "at most n_prompts=100"),
        ({"n_prompts": 0}, "n_prompts", ">= 1"),
        ({"loss_positions": "ends"}, "loss_positions", "did you mean 'end'?"),
    ],
)
def test_ioi_prompts_preflight_names_the_key(params, key, hint):
    """As the runner checks them: the settings against IOIPromptsConfig, then the stage's own checks."""
    load_stage_modules()
    definition = registered_stages()["ioi_prompts"]
    with pytest.raises(ConfigError) as caught:
        definition.preflight(definition.settings({"n_prompts": 100, "seed": 0, "min_pairs": 10, **params}))
    assert caught.value.key == key and hint in str(caught.value)


# ---------------------------------------------------------------- prompt_pairs


def test_transformer_lens_demo_prompts(bpe_model):
    params = OmegaConf.to_container(OmegaConf.load(DEMO))["params"]
    tracker = Recorder()
    pairs = prompt_pairs(bpe_model, **params, tracker=tracker)
    assert tracker.metrics["pairs_kept"] == 8 and pairs["clean"].shape[0] == 8
    decode = bpe_model.tokenizer.decode
    answers = [(decode([int(a)]), decode([int(w)])) for a, w in zip(pairs["answer"], pairs["wrong"])]
    assert answers == [(" John", " Mary"), (" Mary", " John"), (" Tom", " James"), (" James", " Tom"),
                       (" Dan", " Sid"), (" Sid", " Dan"), (" Martin", " Amy"), (" Amy", " Martin")]
    # the corrupted prompt is the other prompt of its pair
    swap = [i + 1 if i % 2 == 0 else i - 1 for i in range(8)]
    assert torch.equal(pairs["corrupted"], pairs["clean"][swap])
    assert decode(pairs["clean"][0, 1:int(pairs["length"][0])]) == \
        "When John and Mary went to the shops, Mary gave the bag to"


def test_conf_data_files_bind_to_their_stages():
    load_stage_modules()
    stages = registered_stages()
    for name in ("ioi", "prompt_pairs", "ioi_demo_prompts"):
        data = OmegaConf.merge({"seed": 0}, {"data": OmegaConf.load(REPO / f"conf/data/{name}.yaml")})
        config = OmegaConf.to_container(data, resolve=True)["data"]
        definition = stages[config["fn"]]
        definition.preflight(definition.settings(config["params"]))


@pytest.mark.parametrize(
    ("pairs", "key", "hint"),
    [
        ([], "pairs", "non-empty list"),
        ([{"clean": "a", "corrupted": "b", "answr": " c", "wrong": " d"}], "pairs[0].answr", "did you mean 'answer'?"),
        ([{"clean": "a", "corrupted": "b", "answer": " c"}], "pairs[0].wrong", "non-empty string"),
        (["When John and Mary"], "pairs[0]", "expected a mapping"),
    ],
)
def test_prompt_pairs_preflight_names_the_pair(pairs, key, hint):
    load_stage_modules()
    with pytest.raises(ConfigError) as caught:
        definition = registered_stages()["prompt_pairs"]
        definition.preflight(definition.settings({"pairs": pairs}))
    assert caught.value.key == key and hint in str(caught.value)


def test_prompt_pairs_errors_name_the_pair(bpe_model):
    good = {"clean": "When John and Mary went to the shops, John gave the bag to",
            "corrupted": "When John and Mary went to the shops, Mary gave the bag to",
            "answer": " Mary", "wrong": " John"}
    with pytest.raises(ConfigError) as caught:
        prompt_pairs(bpe_model, pairs=[good, {**good, "answer": " Zebulon"}])
    assert caught.value.key == "pairs[1].answer" and "expected a single token, found" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        longer = good["corrupted"].replace("Mary gave", "Zebulon gave")
        prompt_pairs(bpe_model, pairs=[good, good, {**good, "corrupted": longer}])
    assert caught.value.key == "pairs[2].corrupted" and "as many tokens" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        prompt_pairs(_model(bpe_model.tokenizer, n_ctx=8), pairs=[good])
    assert caught.value.key == "pairs[0].clean" and "n_ctx=8" in caught.value.message


# ---------------------------------------------------------------- repeated_pairs


def test_repeated_pairs_redraw_the_first_half_only():
    from interp_pipeline.stages.prompt_pairs import repeated_pairs
    from tests.support.models import tiny_model

    model = tiny_model(n_layers=1, n_heads=2)
    half = torch.randint(1, 50, (6, 5), generator=torch.Generator().manual_seed(0))
    probe = torch.cat([torch.zeros(6, 1, dtype=torch.int64), half, half], dim=1)  # [BOS] r r
    pairs = repeated_pairs(model, probe, n_pairs=4, seed=1)
    assert torch.equal(pairs["clean"], probe[:4]) and torch.equal(pairs["corrupted"][:, 6:], probe[:4, 6:])
    assert torch.equal(pairs["wrong"], pairs["corrupted"][:, 5]) and int(pairs["end"][0]) == 9
    assert torch.equal(repeated_pairs(model, probe, n_pairs=4, seed=1)["corrupted"], pairs["corrupted"])
    with pytest.raises(ConfigError, match=r"^n_pairs: expected at most the probe's 6 sequences, found 7"):
        repeated_pairs(model, probe, n_pairs=7, seed=1)
    with pytest.raises(ConfigError, match=r"^seed: RepeatedPairsConfig requires it"):
        repeated_pairs(model, probe, n_pairs=4)
