"""The sae group's settings have one source, the schema's SAEConfig: its keys, types, ranges, choices and
defaults hold for a composed config and for train_sae called from a notebook alike, and each architecture
takes only the keys it reads."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from interp_pipeline.experiments.compose import compose  # noqa: E402
from interp_pipeline.config.ranges import check_ranges  # noqa: E402
from interp_pipeline.experiments.config import ActivationStatsConfig  # noqa: E402
from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.experiments.run import prepare  # noqa: E402
from interp_pipeline.pipeline.preflight import run_preflight  # noqa: E402
from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages  # noqa: E402
from interp_pipeline.pipeline.spec import parse_stages  # noqa: E402
from interp_pipeline.sae.config import SAEConfig, resolve_variants, sae_settings  # noqa: E402
from interp_pipeline.stages.sae import train_sae  # noqa: E402

ACTS = torch.randn(200, 8)
SMALL = dict(train_batch_size_tokens=64, training_tokens=128, eval_tokens=8, device="cpu")


def preflight(params):
    load_stage_modules()
    registered_stages()["train_sae"].preflight(params)


def test_left_out_settings_take_the_schemas_defaults_and_the_architectures():
    defaults = {f.name: f.default for f in dataclasses.fields(SAEConfig) if f.default is not dataclasses.MISSING}
    standard = sae_settings({})
    assert set(standard) == {f.name for f in dataclasses.fields(SAEConfig)}
    assert standard["seed"] == 0 and standard["variants"] == []  # ${seed} resolved as a bare composed config does
    for key in ("lr", "training_tokens", "expansion_factor", "normalize_activations", "dead_feature_window"):
        assert standard[key] == defaults[key], key
    assert (standard["l1_coefficient"], standard["l1_warm_up_steps"], standard["k"], standard["l0_coefficient"]) \
        == (5.0, 0, None, None)
    topk = sae_settings({"architecture": "topk"})
    assert (topk["k"], topk["l1_coefficient"], topk["l1_warm_up_steps"]) == (32, None, None)
    jumprelu = sae_settings({"architecture": "jumprelu"})
    assert (jumprelu["l0_coefficient"], jumprelu["l1_warm_up_steps"], jumprelu["k"]) == (1.0, 0, None)


def test_a_key_an_architecture_does_not_read_is_refused():
    with pytest.raises(ConfigError, match=r"^k: expected no value for a standard SAE \(only topk, batchtopk, "
                                          r"matryoshka_batchtopk read it\), found 8"):
        preflight({"k": 8})
    with pytest.raises(ConfigError, match=r"^l1_coefficient: expected no value for a topk SAE"):
        preflight({"architecture": "topk", "l1_coefficient": 1.0})
    with pytest.raises(ConfigError, match=r"^matryoshka_widths: expected no value for a batchtopk SAE"):
        preflight({"architecture": "batchtopk", "matryoshka_widths": [8, 16]})
    with pytest.raises(ConfigError, match=r"^k: expected no value for a jumprelu SAE"):
        train_sae(activations=ACTS, architecture="jumprelu", k=4, **SMALL)


def test_a_variants_architecture_decides_what_it_may_set_and_inherit():
    named = resolve_variants({"l1_coefficient": 2.0, "variants": [{"lr": 1e-3}, {"architecture": "topk", "k": 8}]})
    assert named["lr-0.001"]["l1_coefficient"] == 2.0
    assert named["architecture-topk_k-8"]["k"] == 8 and named["architecture-topk_k-8"]["l1_coefficient"] is None
    with pytest.raises(ConfigError, match=r"^variants\[0\]\.l1_coefficient: expected no value for a topk SAE"):
        preflight({"variants": [{"architecture": "topk", "l1_coefficient": 1.0}]})
    # Given once for all of them, a key must be read by one of them at least.
    with pytest.raises(ConfigError, match=r"^k: expected no value for a standard SAE"):
        preflight({"k": 8, "variants": [{"lr": 1e-3}, {"l1_coefficient": 1.0}]})
    preflight({"k": 8, "variants": [{"lr": 1e-3}, {"architecture": "topk"}]})


def test_a_notebook_call_meets_the_schemas_keys_types_ranges_and_choices():
    with pytest.raises(ConfigError, match=r"^l1_coeficient: expected a setting of SAEConfig .*"
                                          r"did you mean 'l1_coefficient'"):
        train_sae(activations=ACTS, l1_coeficient=1.0, **SMALL)
    with pytest.raises(ConfigError, match=r"^lr: expected a number > 0, found 0"):
        train_sae(activations=ACTS, lr=0, **SMALL)
    with pytest.raises(ConfigError, match=r"^k: expected integer, found 'many'"):
        train_sae(activations=ACTS, architecture="topk", k="many", **SMALL)
    with pytest.raises(ConfigError, match=r"^normalize_activations: expected one of .*found 'layernorm' "
                                          r"\(did you mean 'layer_norm'\?\)"):
        train_sae(activations=ACTS, normalize_activations="layernorm", **SMALL)
    with pytest.raises(ConfigError, match=r"^variants\[0\]\.d_sae: expected an integer >= 1, found 0"):
        preflight({"variants": [{"d_sae": 0}]})


def test_an_unknown_key_is_refused_under_its_group_before_any_work():
    # The stage is bound to SAEConfig: reading the pipeline already refuses a key it does not have.
    with pytest.raises(ConfigError, match=r"^sae\.lrr: expected a setting of train_sae\(\) .*did you mean 'lr'"):
        parse_stages([{"name": "sae", "fn": "train_sae", "params": {"lrr": 1e-3}}], name="t", label="t",
                     origins=[{"params": "sae"}])


def test_composed_configs_meet_the_same_checks(outputs):
    with pytest.raises(ConfigError, match=r"^sae\.architecture: expected one of .*found 'topkk' "
                                          r"\(did you mean 'topk'\?\)"):
        prepare(compose(["+experiment=sae_toy_superposition", "sae.architecture=topkk"]))
    prepared = prepare(compose(["+experiment=sae_toy_superposition", "sae.k=8"]))
    with pytest.raises(ConfigError, match=r"^sae\.k: expected no value for a standard SAE"):
        run_preflight(prepared.spec.stages)
    variants = "sae.variants=[{l1_coefficient: 1}, {architecture: topk, k: 8}]"  # as the README shows
    run_preflight(prepare(compose(["+experiment=sae_toy_superposition", variants])).spec.stages)


def test_ranges_check_a_plain_mapping_as_a_composed_config():
    with pytest.raises(ConfigError, match=r"^stats\.batch_size_prompts: expected an integer >= 1, found 0"):
        check_ranges({"batch_size_prompts": 0}, ActivationStatsConfig, "stats.")
    check_ranges({"batch_size_prompts": 3, "hooks": []}, ActivationStatsConfig)
