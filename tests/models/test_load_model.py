"""The load_model stage's sources, the trained-model codec, and the model pre-flight."""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.experiments.compose import compose
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.models.storage import load_model_dir, save_model
from interp_pipeline.experiments.run import prepare
from interp_pipeline.pipeline.preflight import run_preflight
from interp_pipeline.runner.stage_cache import StageCache
from interp_pipeline.stages.models import load_model
from tests.support.tiny_gpt2 import save_tiny_gpt2

TINY = {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_head": 8, "d_vocab": 30, "n_ctx": 12, "act_fn": "relu"}
TRAIN = {"task": {"name": "induction", "d_vocab": 12, "seq_len": 10, "min_repeat": 2, "max_repeat": 5,
                  "eval_sequences": 8}, "steps": 6, "batch_size_prompts": 4, "eval_every": 3, "checkpoint_every": 3}


def state(model):
    return model.state_dict()


def test_config_built_model_is_seeded():
    a = load_model(source="config", cfg=TINY, seed=1)
    b = load_model(source="config", cfg=TINY, seed=1)
    c = load_model(source="config", cfg=TINY, seed=2)
    assert all(torch.equal(state(a)[k], state(b)[k]) for k in state(a))
    assert not torch.equal(a.W_E, c.W_E)
    assert a.cfg.device == "cpu" and not a.training


def test_trained_model_goes_through_the_cache_bit_identically(tmp_path):
    model = load_model(source="trained", cfg={"n_layers": 1, "d_model": 16, "n_heads": 2, "d_head": 8,
                                             "attn_only": True}, train=TRAIN, seed=0, workdir=tmp_path / "work")
    pending = StageCache(tmp_path / "cache").begin("load_model", "k" * 32)
    pending.write_output("model", model)
    loaded = pending.commit(run_id=None, metrics={}, extra={}).load_output("model")
    assert all(torch.equal(state(model)[k], state(loaded)[k]) for k in state(model))
    assert loaded.to_str_tokens("t1 t2") == model.to_str_tokens("t1 t2") == ["<bos>", "t1", "t2"]
    tokens = model.to_tokens("t1 t2 t3 t1 t2")
    assert torch.equal(model(tokens), loaded(tokens))
    assert not list(tmp_path.rglob("*.pt")) or all("work" in str(p) for p in tmp_path.rglob("*.pt"))


def test_saved_source_loads_what_save_model_wrote(tmp_path):
    model = load_model(source="config", cfg=TINY, seed=3)
    save_model(model, tmp_path / "saved")
    loaded = load_model(source="saved", path=str(tmp_path / "saved"), seed=0)
    assert all(torch.equal(state(model)[k], state(loaded)[k]) for k in state(model))


def test_hf_source_through_the_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = save_tiny_gpt2(tmp_path / "gpt2")
    model = load_model(source="hf", name_or_path=str(directory), seed=0)
    _, cache = model.run_with_cache(torch.tensor([[1, 5, 7, 9]]))
    assert "blocks.0.hook_resid_pre" in cache and "blocks.1.hook_resid_post" in cache


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (["model.source=tll"], "model.source", "did you mean 'tl'?"),
        (["model=gpt2_small", "+model.cfg.n_layers=2"], "model.cfg", "not by source 'tl'"),
        (["model=saved", "model.path=/nonexistent/dir"], "model.path", "/nonexistent/dir"),
        (["model=toy_induction", "model.train.task.name=inducton"], "model.train.task.name", "did you mean"),
        (["model=toy_induction", "+model.cfg.d_vocab=5"], "model.cfg.d_vocab", "fixed by task 'induction'"),
        (["model=hf", "model.name_or_path=/no/such/checkpoint"], "model.name_or_path", "/no/such/checkpoint"),
    ],
)
def test_model_preflight_errors_name_the_key(overrides, key, fragment, outputs, monkeypatch):
    """Before any model is loaded: ModelConfig's choices when the experiment is prepared, the rest in pre-flight."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as caught:
        run_preflight(prepare(compose(["+experiment=smoke", *overrides])).spec.stages)
    assert caught.value.key == key and fragment in str(caught.value), str(caught.value)


def test_load_model_dir_refuses_nothing_pickled(tmp_path):
    model = load_model(source="config", cfg=TINY, seed=0)
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    assert load_model_dir(tmp_path / "m").cfg.d_model == 16
