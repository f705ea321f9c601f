"""Config-built models on the TransformerLens installed: HookedTransformers on 3, boot_native
TransformerBridges on 4 (interp_pipeline.models.from_config). CI runs this file on both
(scripts/tl4_check.sh runs it on 4)."""

from __future__ import annotations

import pytest
import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.common.tl_version import has_hooked_transformer
from interp_pipeline.experiments.compose import compose
from interp_pipeline.experiments.run import prepare
from interp_pipeline.models.config import ModelConfig
from interp_pipeline.models.shape import shape_of_model
from interp_pipeline.pipeline.preflight import run_preflight
from interp_pipeline.stages.models import load_model

TINY = {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_head": 8, "d_vocab": 30, "n_ctx": 12, "act_fn": "gelu"}


def test_the_config_built_model_is_the_class_this_transformer_lens_has():
    model = load_model(source="config", cfg=TINY, seed=0)
    if has_hooked_transformer():
        assert type(model).__name__ == "HookedTransformer"
    else:
        from transformer_lens import TransformerBridge

        assert isinstance(model, TransformerBridge) and model.cfg.architecture == "TransformerLensNative"
    assert (model.cfg.n_layers, model.cfg.d_mlp, model.cfg.act_fn) == (2, 64, "gelu")  # d_mlp: 4 x d_model


def test_preflight_shapes_are_those_of_the_model_the_stage_builds():
    """The meta-device shapes pre-flight records (aliases included: a Bridge lists 'hook_embed' and
    'embed.hook_out' for one hook point) are the shapes a real forward of the built model has."""
    shape = shape_of_model(ModelConfig(source="config", cfg=TINY, seed=0))
    model = load_model(source="config", cfg=TINY, seed=0)
    tokens = torch.randint(0, 30, (1, 7), generator=torch.Generator().manual_seed(0))
    names = ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.1.attn.hook_z",
             "blocks.1.attn.hook_pattern", "blocks.0.mlp.hook_post", "blocks.1.hook_resid_post",
             "ln_final.hook_normalized"]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    for name in names:
        expected = tuple("pos" if d == 7 else int(d) for d in cache[name].shape[1:])
        assert shape.hooks[name] == expected, name
    assert shape.hooks["blocks.0.attn.hook_z"] == ("pos", 2, 8)
    with pytest.raises(ConfigError, match="never calls"):
        shape.check_hook("hooks", "blocks.0.attn.hook_result")  # off unless use_attn_result, on both


def test_a_misspelt_config_field_is_refused_with_a_suggestion(outputs):
    """TransformerBridgeConfig takes any keyword (**kwargs) and drops what it does not know: pre-flight
    refuses the name instead, on both versions."""
    with pytest.raises(ConfigError) as caught:
        run_preflight(prepare(compose(["+experiment=smoke", "model=tiny", "+model.cfg.n_layer=3"])).spec.stages)
    assert caught.value.key == "model.cfg.n_layer" and "did you mean 'n_layers'?" in str(caught.value)


def test_a_trained_toy_model_learns_its_training_pairs(tmp_path):
    """The pipeline's trainer on the config-built class: the loss on modular addition's training pairs falls."""
    from interp_pipeline.tasks.base import make_task

    task = {"name": "modular_addition", "p": 7, "train_fraction": 0.5, "seed": 0}
    train = {"task": task, "steps": 40, "lr": 1e-2, "eval_every": 20, "log_every": 20, "checkpoint_every": 40}
    cfg = {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64, "act_fn": "relu",
           "normalization_type": None}
    model = load_model(source="trained", cfg=cfg, train=train, seed=0, workdir=tmp_path)
    untrained = load_model(source="config", cfg={**cfg, **make_task(task).model_config()}, seed=0)
    pairs = make_task(task).split()[0]
    answers = (pairs[:, 0] + pairs[:, 1]) % 7

    def loss(m):
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(m(pairs)[:, -1], answers).item()

    assert loss(model) < 0.25 * loss(untrained)


@pytest.mark.skipif(has_hooked_transformer(), reason="TransformerLens 3 loads TransformerLens names")
def test_a_transformer_lens_name_is_refused_on_4_with_the_way_that_works(outputs):
    with pytest.raises(ConfigError) as caught:
        run_preflight(prepare(compose(["+experiment=smoke", "model=gpt2_small"])).spec.stages)
    assert caught.value.key == "model.name" and "which TransformerLens 4 removed" in str(caught.value)
    assert "model=hf model.name_or_path=" in str(caught.value)


@pytest.mark.skipif(has_hooked_transformer(), reason="TransformerLens 3 builds HookedTransformers from a config")
def test_circuit_discovery_on_a_native_bridge_says_what_it_lacks():
    """TransformerLens 4's native attention has no split q/k/v inputs (README "TransformerLens 4"):
    one error naming the input, not TransformerLens's NotImplementedError from inside the stage."""
    from interp_pipeline.circuits.graph import Graph
    from interp_pipeline.circuits.scoring import gradient_scores
    from interp_pipeline.patching.metrics import Metric
    from tests.support.models import random_pairs

    model = load_model(source="config", cfg=TINY, seed=0)
    pairs = random_pairs(2, 5, d_vocab=30)
    with pytest.raises(ConfigError) as caught:
        gradient_scores(model, Graph.of(model.cfg), pairs, Metric("logit_diff", pairs), "eap", ig_steps=1,
                        batch_size_prompts=2)
    assert caught.value.key == "inputs.model" and "TransformerLensNative" in str(caught.value)


@pytest.mark.skipif(has_hooked_transformer(), reason="on TransformerLens 3 the whole suite imports every module")
def test_every_module_imports_on_4():
    """No module imports a name TransformerLens 4 removed when it is imported (they ask common/tl_version)."""
    import importlib
    import pkgutil

    import interp_pipeline

    failed = {}
    for module in pkgutil.walk_packages(interp_pipeline.__path__, "interp_pipeline."):
        try:
            importlib.import_module(module.name)
        except ImportError as error:
            failed[module.name] = str(error)
    assert not failed
