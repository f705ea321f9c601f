"""Pre-flight for an object store (``s3://``, ``gs://``): its endpoint answers, its bucket exists, the
credentials are accepted; in bounded time, before any stage runs.

Without it, a store whose endpoint is down is found when the first chunk is written, after the
model and the tokens, by botocore's retries (half a minute), and the async readers it leaves behind
print pages of "coroutine was never awaited" on the way out. Here one request (S3's HeadBucket,
else the filesystem's ``info`` of the bucket) is made with one attempt and short timeouts, in a
thread that is abandoned after ``timeout_s``, and what failed is said in one line.
"""

from __future__ import annotations

import threading
from typing import Any

from interp_pipeline.common.errors import ConfigError

OBJECT_STORES = ("s3", "s3a", "gs", "gcs")
TIMEOUT_S = 15.0


def _s3_check(bucket: str) -> None:
    import s3fs
    from fsspec.asyn import sync

    fs = s3fs.S3FileSystem(skip_instance_cache=True,
                           config_kwargs={"connect_timeout": 5, "read_timeout": 5, "retries": {"max_attempts": 1}})
    sync(fs.loop, fs._call_s3, "head_bucket", Bucket=bucket)


def _generic_check(protocol: str, bucket: str) -> None:
    import fsspec

    fsspec.filesystem(protocol, skip_instance_cache=True).info(bucket)


def _endpoint() -> str:
    import os

    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS's default endpoint"


def _what_failed(protocol: str, bucket: str, error: BaseException) -> str:
    name = type(error).__name__
    text = str(error).splitlines()[0] if str(error) else name
    if name == "NoCredentialsError":
        return ("found no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in "
                "~/.aws/credentials)")
    if isinstance(error, PermissionError) or "403" in text or "Forbidden" in text or "AccessDenied" in text:
        return f"the credentials were refused for bucket '{bucket}' ({name})"
    if isinstance(error, FileNotFoundError) or "NoSuchBucket" in text or "404" in text:
        return f"found no bucket '{bucket}'"
    if "Connect" in name or "Endpoint" in name or isinstance(error, (ConnectionError, TimeoutError)):
        where = _endpoint() if protocol in ("s3", "s3a") else "its endpoint"
        return f"could not reach the endpoint {where} ({name})"
    return f"{name}: {text[:200]}"


def check_object_store(url: str, key: str = "store", timeout_s: float = TIMEOUT_S) -> None:
    """Raise ConfigError(key, ...) naming the store and what failed; nothing for a local path."""
    protocol, sep, rest = str(url).partition("://")
    if not sep or protocol not in OBJECT_STORES:
        return
    bucket = rest.split("/", 1)[0]
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            _s3_check(bucket) if protocol in ("s3", "s3a") else _generic_check(protocol, bucket)
        except BaseException as error:  # noqa: BLE001 - reported below, in one line
            outcome["error"] = error
        outcome["done"] = True

    worker = threading.Thread(target=attempt, name="object-store-preflight", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if "done" not in outcome:
        raise ConfigError(key, f"the object store {url} did not answer within {timeout_s:g} s "
                               f"(endpoint {_endpoint() if protocol.startswith('s3') else protocol})")
    error = outcome.get("error")
    if error is not None:
        import logging

        logging.getLogger(__name__).debug("pre-flight of %s failed", url, exc_info=error)
        raise ConfigError(key, f"the object store {url} cannot be used: {_what_failed(protocol, bucket, error)}")
