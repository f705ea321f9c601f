"""Whether the Hugging Face hub can be reached from here, decided once per process.

Pre-flight checks for models and datasets ask this before any work, so a run that
needs a download stops with one line instead of a long time-out mid-run.
"""

from __future__ import annotations

import functools
import os
import threading
from urllib.parse import urlparse

HUB_PROBE_TIMEOUT_S = 3.0
_OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}  # as huggingface_hub reads its flags


def _hub_offline_by_setting() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: look at both its value and the live environment.
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").upper() in _OFFLINE_VALUES:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_endpoint() -> tuple[str, int]:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    return parsed.hostname or "huggingface.co", parsed.port or (80 if parsed.scheme == "http" else 443)


def _first_hop(host: str, port: int) -> tuple[str, int]:
    """Where a connection to the hub goes first: the HTTPS proxy when one is set for it, else the hub."""
    from urllib.request import getproxies, proxy_bypass

    proxy = getproxies().get("https")
    if not proxy or proxy_bypass(host):
        return host, port
    parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    return parsed.hostname or host, parsed.port or 80


def _connects(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection opens within ``timeout`` seconds, name lookup included."""
    import socket

    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # create_connection's timeout does not bound the DNS lookup, which can stall for many
    # seconds on a machine without network: wait on a daemon thread instead.
    thread = threading.Thread(target=attempt, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


@functools.lru_cache(maxsize=1)
def _hub_probe() -> bool:
    """One connection attempt to the hub per process; sweeps and repeated pre-flights reuse it."""
    return _connects(*_first_hop(*_hub_endpoint()), HUB_PROBE_TIMEOUT_S)


def hub_unreachable_reason() -> str | None:
    """Why the hub cannot be reached (a setting, or a failed probe), or None when it can."""
    if _hub_offline_by_setting():
        return "HF_HUB_OFFLINE is set"
    if not _hub_probe():
        host, _ = _hub_endpoint()
        return f"no connection to {host} within {HUB_PROBE_TIMEOUT_S:g} s"
    return None


def datasets_unreachable_reason() -> str | None:
    """As :func:`hub_unreachable_reason`, for the datasets library, where HF_DATASETS_OFFLINE,
    when set, overrides HF_HUB_OFFLINE."""
    value = os.environ.get("HF_DATASETS_OFFLINE")
    if value is not None:
        if value.upper() in _OFFLINE_VALUES:
            return f"HF_DATASETS_OFFLINE={value}"
        if not _hub_probe():
            return f"no connection to {_hub_endpoint()[0]} within {HUB_PROBE_TIMEOUT_S:g} s"
        return None
    return hub_unreachable_reason()

