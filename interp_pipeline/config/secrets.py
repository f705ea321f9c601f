"""Secrets kept out of everything a run logs: MLflow params, tags, run names, artifacts, log lines
and the stage cache's records.

Two rules. A value read from the environment by a resolver (``${oc.env:HF_TOKEN}``, or a resolver
registered with :func:`register_credential_resolver`) is logged as its interpolation text, never
its value, so the logged config still reproduces the run on a machine that sets the same variable.
A value under a key that names a credential (``token``, ``api_key``, ``password``, ... ending the
key: :data:`CREDENTIAL_WORDS`, or ``tracking.mask_keys``) is masked wherever it came from (a literal
in a user YAML as much as the environment); an interpolation there is kept as its text.

The secret values found that way are also scrubbed from free text (a log line, an error message,
a text artifact), replaced by their interpolation text or ``***``. One :class:`Redactor` is built
per job from its config and made the process's active one (:func:`activate`); the MLflow tracker,
the log filter and the stage cache's records use it.

Cache keys (runner.compute_keys, :func:`key_params`): a credential-named param enters a stage's key
as a fixed marker, not its value: a token grants access to data, it does not change what is
computed, so rotating it keeps the cache. A value read from the environment under any other name
(a data path, a model id) does enter the key by value, since it may change the result; the key is
a SHA-256 over all the stage's params, which does not give the value back.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

# Words that, ending a key (``hf_token``, ``aws_secret_access_key``, ``password``), mark its value as a
# credential. Whole words only: ``max_tokens`` or ``pad_token_id`` are not credentials.
CREDENTIAL_WORDS = ("token", "secret", "password", "passwd", "passphrase", "credential", "credentials", "api_key",
                    "apikey", "access_key", "secret_key", "private_key", "auth_key", "client_secret")
ENV_RESOLVERS = {"oc.env", "env"}
_CREDENTIAL_RESOLVERS: set[str] = set()
MASK = "***"
# Free text is scrubbed of secret values at least this long; shorter ones ("1", "true") would
# mangle every line they happen to occur in, and are masked where they are logged as values.
MIN_SCRUBBED = 6
_KEY_MARKER = "<credential: not part of the key>"


def register_credential_resolver(name: str) -> None:
    """Declare an OmegaConf resolver that reads credentials: its values are logged as interpolation text."""
    _CREDENTIAL_RESOLVERS.add(name)


def _resolvers() -> set[str]:
    return ENV_RESOLVERS | _CREDENTIAL_RESOLVERS


def _interpolations(text: str) -> list[tuple[str, str]]:
    """The ``(resolver, first argument)`` of each secret-reading interpolation in ``text``."""
    names = "|".join(re.escape(name) for name in sorted(_resolvers(), key=len, reverse=True))
    return re.findall(rf"\$\{{\s*({names})\s*:\s*([^,}}\s]*)", text)


def reads_secret(raw: Any) -> bool:
    return isinstance(raw, str) and bool(_interpolations(raw))


def is_credential_key(key: str, words: Iterable[str] = CREDENTIAL_WORDS) -> bool:
    """``hf_token``, ``api_key``, ``custom.password`` are; ``max_tokens``, ``pad_token_id``, ``key`` are not."""
    last = str(key).rsplit(".", 1)[-1].lower().replace("-", "_")
    return any(last == word or last.endswith("_" + word) for word in words)


class Redactor:
    """Replaces the secret values it knows, and masks credential-named values."""

    def __init__(self, secrets: Mapping[str, str] | None = None, words: Iterable[str] = CREDENTIAL_WORDS):
        # value -> what is written instead (its interpolation text, or MASK); longest first, so that
        # a secret containing another is replaced whole
        self.secrets = dict(sorted((secrets or {}).items(), key=lambda item: -len(item[0])))
        self.words = tuple(words)

    @classmethod
    def from_config(cls, cfg: Any, words: Iterable[str] | None = None) -> Redactor:
        from omegaconf import OmegaConf

        if words is None:
            words = OmegaConf.select(cfg, "tracking.mask_keys", default=None) or CREDENTIAL_WORDS
        words = tuple(str(w) for w in words)
        raw = OmegaConf.to_container(cfg, resolve=False)
        secrets: dict[str, str] = {}
        for key, value in _leaves("", raw):
            if not isinstance(value, str):
                continue
            for resolver, name in _interpolations(value):
                found = os.environ.get(name) if resolver in ENV_RESOLVERS else None
                if found:
                    secrets.setdefault(found, f"${{{resolver}:{name}}}")
            if reads_secret(value) or is_credential_key(key, words):
                resolved = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
                if isinstance(resolved, str) and resolved and resolved != value:
                    secrets.setdefault(resolved, value if reads_secret(value) else MASK)
                elif isinstance(resolved, str) and resolved and is_credential_key(key, words):
                    secrets.setdefault(resolved, MASK)
        return cls(secrets, words)

    @classmethod
    def from_overrides(cls, overrides: Iterable[str]) -> Redactor:
        """Before any config exists (an error while composing): the environment values the command line names."""
        secrets = {}
        for override in overrides:
            for resolver, name in _interpolations(override):
                found = os.environ.get(name) if resolver in ENV_RESOLVERS else None
                if found:
                    secrets[found] = f"${{{resolver}:{name}}}"
        return cls(secrets)

    def text(self, text: str) -> str:
        for secret, instead in self.secrets.items():
            if len(secret) >= MIN_SCRUBBED and secret in text:
                text = text.replace(secret, instead)
        return text

    def value(self, key: str, value: Any, raw: Any = None) -> Any:
        """What is logged for ``key``: its interpolation text if it read a secret, masked if its key names a
        credential, else the value with secrets scrubbed from its text."""
        if reads_secret(raw):
            return raw
        if reads_secret(value):  # already its interpolation text
            return value
        if is_credential_key(key, self.words) and isinstance(value, str) and value:
            return raw if isinstance(raw, str) and "${" in raw else MASK
        if isinstance(value, str):
            if isinstance(raw, str) and "${" in raw and (value in self.secrets or self.text(value) != value):
                return raw  # an interpolation that reaches a secret (``${custom.token}``): its text reproduces it
            return self.text(value) if value not in self.secrets else self.secrets[value]
        return value

    def mapping(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Flat or nested key -> value (params, tags): every value through :meth:`value`."""
        return {str(k): (self.mapping(v) if isinstance(v, Mapping) else self._below(str(k), v))
                for k, v in values.items()}

    def _below(self, key: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self._below(key, v) for v in value]
        if is_credential_key(key, self.words) and isinstance(value, Mapping):
            return {k: MASK for k in value}
        return self.value(key, value)

    def config(self, cfg: Any) -> Any:
        """The resolved config as plain containers, as it may be logged."""
        from omegaconf import OmegaConf

        return self._merge("", OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_container(cfg, resolve=False))

    def _merge(self, key: str, resolved: Any, raw: Any) -> Any:
        if reads_secret(raw):
            return raw  # a whole node read from a secret-reading resolver
        if isinstance(resolved, dict):
            if is_credential_key(key, self.words):
                return {k: (raw[k] if isinstance(raw, dict) and isinstance(raw.get(k), str) and "${" in raw[k]
                            else MASK) for k in resolved}
            return {k: self._merge(f"{key}.{k}" if key else str(k), v, raw.get(k) if isinstance(raw, dict) else None)
                    for k, v in resolved.items()}
        if isinstance(resolved, list):
            raws = raw if isinstance(raw, list) and len(raw) == len(resolved) else [None] * len(resolved)
            return [self._merge(key, v, r) for v, r in zip(resolved, raws)]
        return self.value(key, resolved, raw)


def _leaves(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(f"{prefix}.{k}" if prefix else str(k), v)
    elif isinstance(value, list):
        for index, v in enumerate(value):
            yield from _leaves(f"{prefix}[{index}]" if prefix else f"[{index}]", v)
    else:
        yield prefix, value


def redact_override(override: str, words: Iterable[str] = CREDENTIAL_WORDS) -> str:
    """``+custom.password=hunter2`` -> ``+custom.password=***``; an interpolation (``${oc.env:PW}``) is kept."""
    key, sep, value = override.partition("=")
    if sep and value and "${" not in value and is_credential_key(key.lstrip("+~"), words):
        return f"{key}={MASK}"
    return override


def scrub_files(paths: Iterable[Any], redactor: Redactor) -> None:
    """Rewrite text files that hold a secret (Hydra's ``.hydra/*.yaml`` keep a literal credential typed on the
    command line; its interpolations they keep as text)."""
    for path in paths:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        clean = redactor.text(text)
        if clean != text:  # replaced whole, so that a reader never sees half a file
            partial = path.with_name(f".{path.name}.{os.getpid()}.scrubbing")
            partial.write_text(clean)
            os.replace(partial, path)


def key_params(params: Mapping[str, Any], words: Iterable[str] = CREDENTIAL_WORDS) -> dict[str, Any]:
    """A stage's params as its cache key sees them: credential-named values replaced by a marker."""
    return {k: (_KEY_MARKER if is_credential_key(k, words) and v not in (None, "") else
                key_params(v, words) if isinstance(v, Mapping) else v) for k, v in params.items()}


_ACTIVE = Redactor()


def activate(redactor: Redactor) -> None:
    """Make ``redactor`` the process's: the tracker, log lines and cache records use it from now on."""
    global _ACTIVE
    _ACTIVE = redactor
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())


def active() -> Redactor:
    return _ACTIVE


class ScrubFilter(logging.Filter):
    """Scrubs the active redactor's secrets from a record's message and traceback, on each handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = _ACTIVE
        if not redactor.secrets:
            return True
        message = record.getMessage()
        scrubbed = redactor.text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redactor.text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True
