"""The load_sae stage, offline: SAEs saved on disk round-trip; hub SAEs that cannot be had stop in pre-flight."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from sae_lens import SAE, StandardSAE, StandardSAEConfig  # noqa: E402

from interp_pipeline.common.errors import ConfigError  # noqa: E402
from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages  # noqa: E402
from interp_pipeline.sae import pretrained  # noqa: E402
from interp_pipeline.stages.sae_load import load_sae  # noqa: E402
from interp_pipeline.tracking.base import NullRun, RecordingTracker  # noqa: E402

RELEASE, SAE_ID = "gpt2-small-res-jb", "blocks.8.hook_resid_pre"
REPO_ID = "jbloom/GPT2-Small-SAEs-Reformatted"  # what pretrained_saes.yaml maps the release to


def preflight():
    """The stage's pre-flight, on params resolved as the runner resolves them."""
    load_stage_modules()
    definition = registered_stages()["load_sae"]
    return lambda params: definition.preflight(definition.settings(params))


@pytest.fixture
def saved_sae(tmp_path):
    """A small SAE with random weights, saved by SAELens itself."""
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=8, d_sae=24, dtype="float32", device="cpu"))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_()
    sae.cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    sae.save_model(str(tmp_path / "sae"))
    return sae, tmp_path / "sae"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 and an empty hub cache."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_a_directory_saved_by_sae_lens_round_trips(saved_sae, tmp_path):
    original, directory = saved_sae
    preflight()({"path": str(directory)})
    tracker = RecordingTracker(NullRun(), tmp_path / "artifacts")
    loaded = load_sae(path=str(directory), device="cpu", tracker=tracker)
    assert isinstance(loaded, SAE) and loaded.cfg.d_in == 8 and loaded.cfg.d_sae == 24
    for name, tensor in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded.decode(loaded.encode(x)), original.decode(original.encode(x)))
    assert tracker.tags["sae.source"] == "local" and tracker.tags["sae.hook"] == "blocks.0.hook_resid_post"
    assert tracker.last["d_sae"] == 24


def test_a_train_sae_cache_entry_loads_through_the_stage(tmp_path):
    from interp_pipeline.storage.cache_codecs import codec_for
    from interp_pipeline.stages.sae import train_sae

    trained = train_sae(activations=torch.randn(256, 8), d_sae=16, train_batch_size_tokens=32, training_tokens=192,
                        eval_tokens=32, device="cpu")
    codec_for(trained).save(trained, tmp_path / "entry")
    loaded = load_sae(path=str(tmp_path / "entry"), device="cpu")
    torch.testing.assert_close(loaded.W_dec, trained.W_dec)


def test_an_unreachable_release_stops_in_preflight_with_one_line(offline):
    with pytest.raises(ConfigError) as error:
        preflight()({"release": RELEASE, "sae_id": SAE_ID})
    message = str(error.value)
    assert "\n" not in message and error.value.key == "release"
    assert message.startswith(f"release: SAE release '{RELEASE}', sae_id '{SAE_ID}' ({REPO_ID}) cannot be had: "
                              "not in the local Hugging Face cache and the hub is unreachable (HF_HUB_OFFLINE is set)")
    assert "sae_source=local sae_source.path=" in message  # the offline alternative


def test_a_release_in_the_hub_cache_passes_preflight_offline(offline):
    snapshot = offline / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / "abc123" / SAE_ID
    snapshot.mkdir(parents=True)
    (snapshot / "cfg.json").write_text("{}")
    preflight()({"release": RELEASE, "sae_id": SAE_ID})
    with pytest.raises(ConfigError, match=r"blocks\.9\.hook_resid_pre.*cannot be had"):
        preflight()({"release": RELEASE, "sae_id": "blocks.9.hook_resid_pre"})


def test_unknown_releases_and_ids_get_a_did_you_mean(offline):
    with pytest.raises(ConfigError, match=r"^release: expected a release in SAELens's pretrained_saes\.yaml "
                                          r"\(\d+ known.*found 'gpt2-small-res-jbb' \(did you mean "
                                          r"'gpt2-small-res-jb'\?\)$"):
        preflight()({"release": "gpt2-small-res-jbb", "sae_id": SAE_ID})
    with pytest.raises(ConfigError, match=r"^sae_id: expected an SAE of release 'gpt2-small-res-jb' "
                                          r"\(blocks\.0\.hook_resid_pre, .*\), found 'blocks\.8\.hook_resid_pr' "
                                          r"\(did you mean 'blocks\.8\.hook_resid_pre'\?\)$"):
        preflight()({"release": RELEASE, "sae_id": "blocks.8.hook_resid_pr"})


def test_the_stage_itself_checks_before_loading(offline):
    with pytest.raises(ConfigError, match=r"^release: SAE release .*cannot be had"):
        load_sae(release=RELEASE, sae_id=SAE_ID)


@pytest.mark.parametrize(("params", "pattern"), [
    ({}, r"^release: expected release and sae_id .* or path, found neither$"),
    ({"release": RELEASE}, r"^sae_id: expected the id of an SAE of release 'gpt2-small-res-jb', found none$"),
    ({"path": "/nonexistent/sae"}, r"^path: expected a directory holding an SAE saved by SAELens .*found nothing"),
    ({"path": "/tmp", "release": RELEASE}, r"^path: expected either path .* found both"),
    ({"path": "/tmp", "dtype": "float33"}, r"^dtype: .*found 'float33' \(did you mean 'float32'\?\)$"),
])
def test_config_errors_name_their_keys(params, pattern):
    with pytest.raises(ConfigError, match=pattern):
        preflight()(params)


def test_a_directory_without_the_weights_is_refused(saved_sae):
    _, directory = saved_sae
    (directory / "sae_weights.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"^path: expected an SAE saved by SAELens in .*found no "
                                          r"sae_weights\.safetensors \(save one with sae\.save_model"):
        preflight()({"path": str(directory)})


def test_the_registry_lookup_matches_sae_lens():
    assert pretrained.resolve(RELEASE, SAE_ID) == (REPO_ID, SAE_ID)
    assert pretrained.resolve("someone/their-saes", "layer_3") == ("someone/their-saes", "layer_3")


PIPELINE = """\
stages:
  - name: sae
    fn: load_sae
    params: ${sae_source}
"""


def test_the_sae_source_group_composes_and_its_preflight_runs(saved_sae, offline, outputs, tmp_path):
    from interp_pipeline.experiments.compose import compose
    from interp_pipeline.experiments.run import prepare
    from interp_pipeline.pipeline.preflight import run_preflight

    (tmp_path / "load.yaml").write_text(PIPELINE)
    base = [f"pipeline={tmp_path / 'load.yaml'}"]
    local = prepare(compose([*base, "+sae_source=local", f"sae_source.path={saved_sae[1]}"]))
    run_preflight(local.spec.stages)
    hub = prepare(compose([*base, "+sae_source=pretrained"]))
    with pytest.raises(ConfigError, match=r"^sae_source\.release: SAE release 'gpt2-small-res-jb', sae_id "
                                          r"'blocks\.8\.hook_resid_pre' .*HF_HUB_OFFLINE is set"):
        run_preflight(hub.spec.stages)
