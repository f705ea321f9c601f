"""An object store is checked before any stage: endpoint, bucket and credentials, in bounded time, one line
naming the store and what failed; botocore's chatter goes to the run's log file, not the terminal."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.storage.object_stores import check_object_store
from tests.conftest import run_cli
from tests.support.s3 import BUCKET, moto_s3

pytest.importorskip("s3fs")


@contextlib.contextmanager
def refused_endpoint() -> Iterator[str]:
    """An endpoint on 127.0.0.1 that refuses connections for as long as the block runs: its port stays
    bound (not listening), so no server started meanwhile (CI runs another pytest process beside this
    one, with MLflow servers of its own) can take it. A port that was merely free a moment ago could
    be, and then answered 404 ('found no bucket') instead of refusing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with moto_s3(tmp_path_factory.mktemp("moto") / "server.log") as env:
        yield env


def test_what_failed_is_said_for_the_bucket_the_credentials_and_the_endpoint(s3, monkeypatch):
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    check_object_store(f"s3://{BUCKET}/fine.zarr")  # a store that may not exist yet, in a bucket that does
    with pytest.raises(ConfigError, match=r"^store: the object store s3://no-such-bucket/x.zarr cannot be used: "
                                          r"found no bucket 'no-such-bucket'$"):
        check_object_store("s3://no-such-bucket/x.zarr")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigError, match=r"cannot be used: found no credentials \(set AWS_ACCESS_KEY_ID"):
        check_object_store(f"s3://{BUCKET}/x.zarr")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with refused_endpoint() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        started = time.monotonic()
        with pytest.raises(ConfigError, match=rf"cannot be used: could not reach the endpoint {endpoint} "):
            check_object_store(f"s3://{BUCKET}/x.zarr", timeout_s=20)
        assert time.monotonic() - started < 20


def test_an_unreachable_store_stops_the_run_before_the_model_in_one_line(outputs):
    with refused_endpoint() as endpoint:
        done = run_cli(["+experiment=cache_activations", "model=tiny", "data=random_tokens",
                        "cache.hooks=[blocks.0.hook_resid_post]", f"cache.store=s3://{BUCKET}/down.zarr"], outputs,
                       AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                       AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    assert done.returncode == 2, done.stdout + done.stderr
    said = (done.stdout + done.stderr).strip()
    assert said == (f"error: cache.store: the object store s3://{BUCKET}/down.zarr cannot be used: could not reach "
                    f"the endpoint {endpoint} (EndpointConnectionError)"), said
    assert not (outputs / "cache").exists()  # neither the model nor the tokens were made
    (log,) = (outputs / "runs").rglob("cli.log")
    assert "Found credentials in environment variables." in log.read_text()  # kept, in the log file
