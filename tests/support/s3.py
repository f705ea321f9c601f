"""A real S3-compatible server on 127.0.0.1 for store tests: moto's server mode in a subprocess
(so the test's own processes and the ones it starts all talk to it over HTTP, as to S3)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BUCKET = "activations"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_s3(log: Path) -> Iterator[dict[str, str]]:
    """Start the server and make a bucket; yields the environment s3fs (through botocore) reads:
    credentials, region and ``AWS_ENDPOINT_URL``, for this process and the ones it starts."""
    port = _free_port()
    with open(log, "w") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.2)
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": url}
        request = urllib.request.Request(f"{url}/{BUCKET}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()  # anonymous CreateBucket: moto does not check auth
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def s3_filesystem():
    """A fresh s3fs filesystem (fsspec caches instances, and their listings, per process)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem(skip_instance_cache=True)
