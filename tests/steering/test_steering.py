"""Steering vectors: the hooked run equals the vector added by hand in a plain loop over the blocks (1e-6), on a
HookedTransformer and on a TransformerBridge; coefficient 0 changes no logit; CAA, ActAdd and SAE vectors
are what their definitions say; the steer stage's metrics move as the vector says."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.steering.apply import placement, steered_logits  # noqa: E402
from interp_pipeline.tracking.base import Tracker  # noqa: E402
from tests.support.models import task_model  # noqa: E402

LAYER = 1


class Recorder(Tracker):
    def __init__(self):
        self.metrics, self.texts = {}, {}

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.update(metrics)

    def log_text(self, text, name) -> None:
        self.texts[name] = text


@pytest.fixture(scope="module")
def world():
    """A random 2-layer model of a small facts world, and the world's prompts."""
    from interp_pipeline.config.settings import settings_object
    from interp_pipeline.facts.config import ToyFactPromptsConfig
    from interp_pipeline.facts.prompts import toy_facts
    from interp_pipeline.facts.task import facts_task

    config = {"name": "facts", "n_subjects": 24, "seed": 0}
    task = facts_task(config)
    model = task_model(task, n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, act_fn="gelu", seed=0)
    facts = toy_facts(model.tokenizer, task, settings_object(ToyFactPromptsConfig, {"task": config}), model.cfg.n_ctx)
    # The two cities most subjects live in, so that each has subjects to fit and to hold out.
    cities = facts["object"][facts["relation"] == 0]
    values, counts = cities.unique(return_counts=True)
    first, second = values[counts.argsort(descending=True)[:2]].tolist()
    return model, task, facts, model.tokenizer.convert_ids_to_tokens([first, second])


def by_hand(model, tokens, vector, coefficient, added_at):
    """The vector added to resid_pre of LAYER in a plain loop over a HookedTransformer's blocks.

    ``added_at(batch, width)``: a [batch, width] mask of the positions it is added at (one-row vector),
    or None for ActAdd's front rows (row i at position i)."""
    with torch.no_grad():
        x = model.embed(tokens) + model.pos_embed(tokens)
        for index, block in enumerate(model.blocks):
            if index == LAYER:
                x = x.clone()
                if added_at is None:
                    x[:, :len(vector)] += coefficient * vector
                else:
                    x[added_at(*tokens.shape)] += coefficient * vector[0]
            x = block(x)
        return model.unembed(model.ln_final(x))


def test_the_hooked_run_is_the_vector_added_by_hand(world):
    model, _, facts, cities = world
    tokens, last = facts["tokens"][:40], facts["last"][:40]
    vector = torch.randn(1, 16, generator=torch.Generator().manual_seed(1))
    every = by_hand(model, tokens, vector, 3.0, lambda b, w: torch.ones(b, w, dtype=torch.bool))
    torch.testing.assert_close(steered_logits(model, tokens, vector, LAYER, "resid_pre", 3.0, "all",
                                              batch_size_prompts=16), every, atol=1e-6, rtol=0)
    after_last = by_hand(model, tokens, vector, -2.0, lambda b, w: torch.arange(w)[None] >= last[:, None])
    torch.testing.assert_close(steered_logits(model, tokens, vector, LAYER, "resid_pre", -2.0, "last", last=last),
                               after_last, atol=1e-6, rtol=0)
    rows = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(steered_logits(model, tokens, rows, LAYER, "resid_pre", 0.5, "front"),
                               by_hand(model, tokens, rows, 0.5, None), atol=1e-6, rtol=0)
    # Not trivially equal: the vector does change the logits.
    assert (every - model(tokens)).abs().max() > 1e-2


def test_coefficient_zero_changes_no_logit(world):
    model, _, facts, cities = world
    plain = model(facts["tokens"][:32]).float()
    vector = torch.randn(1, 16)
    for positions in ("all", "last"):
        steered = steered_logits(model, facts["tokens"][:32], vector, LAYER, "resid_pre", 0.0, positions,
                                 last=facts["last"][:32])
        assert torch.equal(steered, plain), positions


def test_on_a_transformer_bridge_as_by_hand_on_its_hugging_face_blocks(tmp_path, monkeypatch):
    from interp_pipeline.models import hub
    from tests.support.tiny_gpt2 import D_MODEL, VOCAB, save_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = hub.load_hugging_face(str(save_tiny_gpt2(tmp_path / "tiny_gpt2")), revision=None, device="cpu",
                                   dtype="float32")
    tokens = torch.randint(0, VOCAB, (3, 10), generator=torch.Generator().manual_seed(0))
    vector = torch.randn(1, D_MODEL, generator=torch.Generator().manual_seed(1))
    transformer = bridge.original_model.transformer
    with torch.no_grad():
        x = transformer.wte(tokens) + transformer.wpe(torch.arange(10))
        causal = torch.full((10, 10), float("-inf")).triu(1)[None, None]
        for index, block in enumerate(transformer.h):
            if index == LAYER:
                x = x + 2.5 * vector[0]
            x = block(x, attention_mask=causal)
            x = x[0] if isinstance(x, tuple) else x
        reference = bridge.original_model.lm_head(transformer.ln_f(x))
    steered = steered_logits(bridge, tokens, vector, LAYER, "resid_pre", 2.5, "all")
    torch.testing.assert_close(steered.log_softmax(-1), reference.log_softmax(-1), atol=1e-6, rtol=0)
    assert torch.equal(steered_logits(bridge, tokens, vector, LAYER, "resid_pre", 0.0, "all"),
                       bridge(tokens, return_type="logits").float())


def test_placement_puts_rows_where_asked():
    vector = torch.arange(6.0).view(3, 2)
    front = placement(vector, 2.0, "front", 1, 5, start=1)
    assert torch.equal(front[0, 1:4], 2 * vector) and not front[0, 0].any() and not front[0, 4].any()
    last = placement(vector[:1], 1.0, "last", 2, 4, last=torch.tensor([1, 3]))
    assert last[0, 1:].eq(vector[0]).all() and not last[0, 0].any() and not last[1, :3].any()
    with pytest.raises(ConfigError, match="positions"):
        placement(vector, 1.0, "all", 1, 4)


def caa(model, facts, cities, **settings):
    from interp_pipeline.stages.steering import steering_vector

    return steering_vector(model, facts=facts, method="caa", layer=LAYER, positive=cities[0], negative=cities[1],
                           seed=0, **settings)


def test_caa_is_the_mean_difference_over_the_fit_subjects(world):
    model, _, facts, cities = world
    made = caa(model, facts, cities)
    paris, rome = model.tokenizer.convert_tokens_to_ids(cities)
    fit = set(made["fit_subjects"].tolist())
    _, cache = model.run_with_cache(facts["tokens"], names_filter="blocks.1.hook_resid_pre")
    at_last = cache["blocks.1.hook_resid_pre"][torch.arange(len(facts["tokens"])), facts["last"]]

    def mean_of(answer):
        rows = [i for i in range(len(facts["tokens"]))
                if facts["object"][i] == answer and int(facts["subject_id"][i]) in fit]
        return at_last[rows].mean(0)

    torch.testing.assert_close(made["vector"][0], mean_of(paris) - mean_of(rome), atol=1e-6, rtol=0)
    assert made["layer"].item() == LAYER and made["positive"].item() == paris and made["negative"].item() == rome
    # Half of each city's subjects (seeded): some of each are left for steer to score.
    for answer in (paris, rome):
        subjects = set(facts["subject_id"][facts["object"] == answer].tolist())
        assert 0 < len(subjects & fit) < len(subjects)


def test_actadd_is_the_prompt_pairs_difference_position_by_position(world):
    from interp_pipeline.stages.steering import steering_vector

    model, *_ = world
    made = steering_vector(model, method="actadd", layer=LAYER, positive="Vor lives in", negative="Vor speaks",
                           pad="the")
    tokens = [model.to_tokens(t)[0] for t in ("Vor lives in", "Vor speaks the")]
    acts = [model.run_with_cache(t, names_filter="blocks.1.hook_resid_pre")[1]["blocks.1.hook_resid_pre"][0]
            for t in tokens]
    assert made["vector"].shape == (4, 16)
    torch.testing.assert_close(made["vector"], acts[0] - acts[1], atol=1e-6, rtol=0)
    assert made["vector"][:2].abs().max() < 1e-6  # BOS and "Vor" are the same in both prompts


def test_an_sae_features_decoder_row(world):
    from interp_pipeline.stages.steering import steering_vector
    from tests.support.saes import random_sae

    model, *_ = world
    sae = random_sae(16, 32, hook="blocks.1.hook_resid_mid")
    made = steering_vector(model, method="sae", feature=5, sae=sae)
    assert torch.equal(made["vector"][0], sae.W_dec[5].detach()) and made["layer"].item() == 1
    assert made["hook"].item() == 1  # resid_mid
    with pytest.raises(ConfigError, match="inputs.sae"):
        steering_vector(model, method="sae", feature=5, sae=random_sae(8, 32, hook="blocks.1.hook_resid_mid"))
    with pytest.raises(ConfigError, match="feature"):
        steering_vector(model, method="sae", feature=32, sae=sae)


def test_the_steer_stage_at_coefficient_zero_and_not(world):
    from interp_pipeline.stages.steering import steer

    model, task, facts, cities = world
    vector = caa(model, facts, cities)
    tokens = task.encode(task.prompts()[:64])
    zero = Recorder()
    scores = steer(model, vector, facts=facts, unrelated=facts, tokens=tokens, coefficient=0.0, tracker=zero)
    metrics = zero.metrics
    assert metrics["prompts"] == len(scores["rows"]) > 0
    assert metrics["target_prob"] == metrics["target_prob_before"] and metrics["logit_diff_delta"] == 0
    assert metrics["kl_unrelated"] == 0 and metrics["kl_other_answers"] == 0 and metrics["loss_delta"] == 0
    # Scored: held-out subjects' prompts answering the negative city only.
    assert not set(facts["subject_id"][scores["rows"]].tolist()) & set(vector["fit_subjects"].tolist())
    rome = model.tokenizer.convert_tokens_to_ids(cities[1])
    assert (facts["object"][scores["rows"]] == rome).all()

    pushed = Recorder()
    steer(model, vector, facts=facts, unrelated=facts, tokens=tokens, coefficient=20.0, tracker=pushed)
    assert pushed.metrics["logit_diff_delta"] > 0 and pushed.metrics["kl_unrelated"] > 0
    assert {"control_flip_rate", "control_kl_unrelated", "control_loss_delta"} <= set(pushed.metrics)


def test_a_vector_of_another_width_or_a_layer_outside_the_model(world):
    from interp_pipeline.stages.steering import steer

    model, _, facts, cities = world
    vector = caa(model, facts, cities)
    wide = {**vector, "vector": torch.zeros(1, 32)}
    with pytest.raises(ConfigError, match="inputs.vector: expected a vector of d_model 16"):
        steer(model, wide, facts=facts)
    with pytest.raises(ConfigError, match="layer: expected a layer in 0..1, found 2"):
        steer(model, vector, facts=facts, layer=2)
    with pytest.raises(ConfigError, match="positions"):
        steer(model, {**vector, "vector": torch.zeros(3, 16)}, facts=facts)


def test_both_stages_on_a_transformer_bridge(tmp_path, monkeypatch):
    """ActAdd made on a Bridge, added at the front while generating and scoring ordinary sequences."""
    from interp_pipeline.models import hub
    from interp_pipeline.stages.steering import steer, steering_vector
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = hub.load_hugging_face(str(save_tiny_gpt2(tmp_path / "tiny_gpt2")), revision=None, device="cpu",
                                   dtype="float32")
    made = steering_vector(bridge, method="actadd", layer=1, positive="the cat", negative="a", pad="the")
    assert made["vector"].shape == (3, 32) and made["vector"][0].abs().max() < 1e-6  # BOS alike
    tokens = bridge.to_tokens(["the cat sat on the mat", "a dog ran in the park"])
    recorder = Recorder()
    steer(bridge, made, tokens=tokens, coefficient=4.0, positions="front", generate=["the quick"],
          max_new_tokens=3, tracker=recorder)
    assert recorder.metrics["loss_delta"] != 0 and "control_loss_delta" in recorder.metrics
    completions = recorder.texts["completions.md"]
    assert completions.count("the quick") == 3  # the heading, and both completions start with the prompt


def test_the_figure_draws_each_scored_prompt():
    from interp_pipeline.steering.figures import logit_diff_figure

    scores = {"logit_diff_before": torch.tensor([-2.0, -1.0, -3.0]), "logit_diff": torch.tensor([1.0, 2.0, -0.5])}
    figure = logit_diff_figure(scores, {"logit_diff": torch.zeros(3)}, "'Paris'", "'Rome'", "title")
    lines = figure.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines[:2]] == [[-3.0, -2.0, -1.0], [-0.5, 1.0, 2.0]]


def test_resid_mid_is_refused_where_the_model_has_none(world):
    """Attention-only models and parallel blocks have no stream between attention and MLP: refused in
    pre-flight (the model's shape) and before steering (the vector's hook kind), naming the key."""
    from dataclasses import replace

    from interp_pipeline.config.settings import settings_object
    from interp_pipeline.models.shape import ModelShape
    from interp_pipeline.stages.steering import steer
    from interp_pipeline.steering.config import HOOK_KINDS, SteeringVectorConfig
    from interp_pipeline.steering.vectors import check_shapes

    shape = ModelShape(n_layers=2, n_heads=2, d_model=16, d_head=8, d_mlp=64, n_ctx=32, d_vocab=50, attn_only=False)
    at_mid = settings_object(SteeringVectorConfig, {"layer": 1, "hook": "resid_mid"})
    check_shapes(at_mid, shape, None)  # sequential blocks have one
    with pytest.raises(ConfigError, match=r"^hook: expected resid_pre or resid_post on this model of parallel blocks"):
        check_shapes(at_mid, replace(shape, parallel_attn_mlp=True), None)
    with pytest.raises(ConfigError, match=r"^hook: expected resid_pre or resid_post on this attention-only model"):
        check_shapes(at_mid, replace(shape, attn_only=True, d_mlp=None), None)
    check_shapes(settings_object(SteeringVectorConfig, {"layer": 1, "hook": "resid_post"}),
                 replace(shape, parallel_attn_mlp=True), None)

    model, _, facts, cities = world
    vector = caa(model, facts, cities)
    mid = {**vector, "hook": torch.full_like(vector["hook"], HOOK_KINDS.index("resid_mid"))}
    steer(model, mid, facts=facts, control=False)  # this model has one
    model.cfg.parallel_attn_mlp = True  # what the check reads; restored below
    try:
        with pytest.raises(ConfigError, match=r"^inputs.vector: expected resid_pre or resid_post"):
            steer(model, mid, facts=facts)
    finally:
        model.cfg.parallel_attn_mlp = False
