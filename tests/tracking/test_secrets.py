"""Secrets never logged: a random secret in the environment, used as a command-line override, in a user
YAML, as a plugin stage's param and as the S3 credentials of an activation store, is found in no file
under the outputs directory (MLflow's store and artifacts, run directories, Hydra's files, logs, the
stage cache); the logged config keeps its interpolation text, so it still reproduces the run."""

from __future__ import annotations

import secrets as random_secrets
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from interp_pipeline.config.secrets import MASK, Redactor, is_credential_key, key_params, redact_override
from interp_pipeline.storage.cache_keys import stage_cache_key
from tests.conftest import run_cli
from tests.support.s3 import BUCKET, moto_s3


def test_credential_keys_are_whole_words_at_the_end_of_the_key():
    for key in ("token", "hf_token", "custom.api_key", "aws_secret_access_key", "db.password", "credentials"):
        assert is_credential_key(key), key
    for key in ("max_tokens", "pad_token_id", "training_tokens", "key", "cache_key", "tokenizer", "passed"):
        assert not is_credential_key(key), key
    assert redact_override("+custom.password=hunter2!") == "+custom.password=***"
    assert redact_override("+hf_token=${oc.env:HF_TOKEN}") == "+hf_token=${oc.env:HF_TOKEN}"
    assert redact_override("seed=3") == "seed=3"


def test_the_logged_config_keeps_interpolations_and_masks_credentials(monkeypatch):
    monkeypatch.setenv("EDGE_SECRET", "s3cr3t-value-xyz")
    cfg = OmegaConf.create({
        "custom": {"token": "${oc.env:EDGE_SECRET}", "header": "Bearer ${oc.env:EDGE_SECRET}", "password": "hunter22"},
        "stage": {"params": "${plugin}"},
        "plugin": {"api_token": "${oc.env:EDGE_SECRET}", "copy": "${custom.token}", "n": 3},
        "credentials": {"user": "me", "key": "abcdefgh"},
    })
    redactor = Redactor.from_config(cfg)
    logged = redactor.config(cfg)
    assert logged["custom"] == {"token": "${oc.env:EDGE_SECRET}", "header": "Bearer ${oc.env:EDGE_SECRET}",
                                "password": MASK}
    assert logged["plugin"] == {"api_token": "${oc.env:EDGE_SECRET}", "copy": "${custom.token}", "n": 3}
    # a node interpolated whole (a pipeline's `params: ${plugin}`) is logged expanded: its values are
    # masked by their key, or scrubbed by what they are
    assert logged["stage"]["params"] == {"api_token": MASK, "copy": "${oc.env:EDGE_SECRET}", "n": 3}
    assert logged["credentials"] == {"user": MASK, "key": MASK}
    assert redactor.text("failed with s3cr3t-value-xyz and hunter22") == "failed with ${oc.env:EDGE_SECRET} and ***"
    assert redactor.mapping({"api_token": "s3cr3t-value-xyz", "path": "/x/s3cr3t-value-xyz"}) == {
        "api_token": MASK, "path": "/x/${oc.env:EDGE_SECRET}"}


def test_a_credential_does_not_enter_the_cache_key_but_other_environment_values_do():
    """What runner.compute_keys hashes: a rotated token keeps the cache, a changed data path does not."""
    def key(params):
        return stage_cache_key("t_authorised", 1, key_params(params), {}, {})

    assert key({"api_token": "one", "n": 2}) == key({"api_token": "two", "n": 2})
    assert key({"api_token": "one", "n": 2}) != key({"api_token": "one", "n": 3})
    assert key({"data_dir": "/a", "n": 2}) != key({"data_dir": "/b", "n": 2})
    assert key({"api_token": None, "n": 2}) != key({"api_token": "one", "n": 2})  # with or without one differs


@pytest.fixture
def s3_with_secret(tmp_path, monkeypatch):
    secret = "edge" + random_secrets.token_hex(16)
    with moto_s3(tmp_path / "moto.log") as env:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)  # moto does not check it; s3fs sends it signed
        monkeypatch.setenv("INTERP_TEST_SECRET", secret)
        yield secret


def files_holding(folder: Path, needle: str) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(str(path.relative_to(folder)))
    return found


def test_a_secret_from_the_environment_reaches_no_file_under_the_outputs(outputs, tmp_path, s3_with_secret):
    secret = s3_with_secret
    literal = "lit" + random_secrets.token_hex(8)  # typed on the command line under a credential's key
    pipeline = tmp_path / "leaky.yaml"
    stages = yaml.safe_load((Path(__file__).parents[2] / "pipelines" / "cache_activations.yaml").read_text())["stages"]
    stages += [{"name": "private", "fn": "${labels.fn}", "params": "${labels.params}"},  # from the user YAML
               {"name": "plugin", "fn": "t_authorised", "params": {"api_token": "${oc.env:INTERP_TEST_SECRET}"}}]
    pipeline.write_text(yaml.safe_dump({"stages": stages}))
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "leaky.yaml").write_text(f"""# @package _global_
defaults:
  - /model: tiny
  - /data: random_tokens
  - /cache: default
pipeline: {pipeline}
cache:
  hooks: [blocks.0.hook_resid_post]
  store: s3://{BUCKET}/leaky.zarr
labels:
  fn: t_authorised
  params:
    api_token: ${{oc.env:INTERP_TEST_SECRET}}
    n: 3
""")
    done = run_cli([f"hydra.searchpath=[file://{conf.parent}]", "+experiment=leaky", "runner.plugins=[tests.support.stages]",
                    "+custom.token=${oc.env:INTERP_TEST_SECRET}", f"+custom.password={literal}"], outputs)
    assert done.returncode == 0, done.stdout + done.stderr
    for needle in (secret, literal):
        assert needle not in done.stdout + done.stderr
        assert files_holding(outputs, needle) == []
    assert (outputs / "mlflow.db").is_file() and list((outputs / "mlartifacts").rglob("config.yaml"))

    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("leaky").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.params["custom.token"] == "${oc.env:INTERP_TEST_SECRET}"  # reproduces the run
    assert parent.data.params["labels.params.api_token"] == "${oc.env:INTERP_TEST_SECRET}"
    assert parent.data.params["custom.password"] == MASK
    assert "+custom.token=${oc.env:INTERP_TEST_SECRET}" in parent.data.tags["hydra.overrides"]
    plugin = next(r for r in runs if r.data.tags.get("stage") == "plugin")
    assert plugin.data.params["api_token"] == MASK and plugin.info.status == "FINISHED"
