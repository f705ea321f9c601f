"""+experiment=sae_features: each mistake stops the run before its first stage (exit status 2, one line
naming the key), whether the SAE is loaded from disk or still to be trained, as in
test_preflight_before_work.py; and GPT-2's default, which needs the hub, stops here with one line."""

from __future__ import annotations

from interp_pipeline.experiments.compose import compose
from tests.conftest import run_cli
from tests.pipeline.test_preflight_before_work import run_and_capture

# Until the package is installed again with this branch's pyproject.toml, the stage's entry point
# is not there: name its module.
TOY = ["+experiment=sae_features", "model=toy_induction"]


def saved_sae(folder, *, d_in: int, hook: str):
    from sae_lens import SAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    cfg = StandardSAEConfig(d_in=d_in, d_sae=2 * d_in, metadata=SAEMetadata(hook_name=hook))
    SAE.from_dict(cfg.to_dict()).save_model(folder)
    return folder


def loading(folder) -> list[str]:
    """The toy model with an SAE loaded from ``folder`` (pipelines/sae_features.yaml) instead of trained."""
    return [*TOY, "pipeline=sae_features", "+sae_source=local", f"sae_source.path={folder}",
            "runner.check_expect=false"]


def test_an_sae_whose_hook_the_model_lacks(outputs, caplog, tmp_path):
    folder = saved_sae(tmp_path / "sae", d_in=64, hook="blocks.5.hook_resid_pre")
    line = run_and_capture(outputs, caplog, loading(folder))
    assert line.startswith("error: sae_features.hook: expected a hook name of this model (2 layers, attention only), "
                           "found 'blocks.5.hook_resid_pre' (the hook the SAE was trained on"), line
    assert "did you mean 'blocks.1.hook_resid_pre'?" in line


def test_an_sae_whose_d_in_is_not_the_hooks_width(outputs, caplog, tmp_path):
    folder = saved_sae(tmp_path / "sae", d_in=32, hook="blocks.1.hook_resid_pre")
    line = run_and_capture(outputs, caplog, loading(folder))
    assert line == ("error: sae_features.hook: expected a hook as wide as the SAE's d_in (32), found "
                    "'blocks.1.hook_resid_pre' of width 64"), line


def test_a_hook_typo_stops_before_the_model_and_the_sae_are_trained(outputs, caplog):
    line = run_and_capture(outputs, caplog, [*TOY, "sae_features.hook=blocks.1.hook_resid_pree"])
    assert line.startswith("error: sae_features.hook: expected a hook name of this model"), line
    assert "did you mean 'blocks.1.hook_resid_pre'?" in line


def test_a_prompt_longer_than_the_context(outputs, caplog):
    words = " ".join(f"t{i % 64}" for i in range(60))
    line = run_and_capture(outputs, caplog, [*TOY, f"prompts.params.prompts=['{words}']"])
    assert line == "error: prompts.params.prompts.0: expected at most n_ctx=49 tokens, found 61", line


def test_several_saes_from_one_pass(outputs, caplog):
    line = run_and_capture(outputs, caplog, [*TOY, "sae.variants=[{l1_coefficient: 1}, {l1_coefficient: 5}]",
                                             "runner.check_expect=false"])
    assert line.startswith("error: sae_features.inputs.sae: expected one SAE, found 2 (l1_coefficient-1, "
                           "l1_coefficient-5)"), line


def test_the_toy_setup_shares_sae_trains_stages_and_settings(outputs):
    """Same params for the model, tokens, cache, SAE and evaluation, so the stage cache serves either from the other."""
    features, train = compose(TOY), compose(["+experiment=sae_train", "model=toy_induction"])
    for group in ("model", "data", "cache", "sae", "sae_eval"):
        assert features[group] == train[group], group
    assert features.pipeline == "sae_features_train"
    gpt2 = compose(["+experiment=sae_features"])
    assert gpt2.pipeline == "sae_features" and gpt2.sae_source.release == "gpt2-small-res-jb"
    assert gpt2.sae_source.sae_id == "blocks.8.hook_resid_pre"
    assert list(gpt2.prompts.params.prompts) == ["The capital of France is Paris"]


def test_gpt2_default_stops_offline_with_one_line(outputs):
    done = run_cli(["+experiment=sae_features"], outputs, HF_HUB_OFFLINE="1")
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: model.name: model 'gpt2-small'"), done.stdout + done.stderr
    assert "offline options" in errors[0]
    assert not (outputs / "cache").exists() or not any((outputs / "cache").rglob("complete.json"))


def test_a_model_without_feature_settings_is_named_as_the_model(outputs):
    from tests.config.test_validation import composition_error

    line = composition_error(["+experiment=sae_features", "model=tiny"])
    assert line == ("model=tiny: this experiment has per-model settings (conf/sae_features_setup/) for model= "
                    "gpt2_small, toy_induction, found 'tiny'; add conf/sae_features_setup/tiny.yaml to run it on "
                    "that model"), line
