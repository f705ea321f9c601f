"""User-facing errors: one line naming the config key, what was expected and what was found."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

MAX_SHOWN = 160  # characters of a value shown in an error line (a long path still fits)
MAX_LINE = 2000


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """A value as shown in an error line: at most ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({len(text):,} characters)"


def cut_values(text: str) -> str:
    """Quoted values in an error line cut to a readable length (a 10 MB string is not echoed back whole)."""
    # Quotes are paired from the left, every quoted value matched: a pattern for long values alone would
    # take the text between one short value's closing quote and the next one's opening quote as a value.
    text = re.sub(r"'([^']*)'", lambda m: f"'{shorten(m.group(1))}'" if len(m.group(1)) >= MAX_SHOWN else m.group(0),
                  text)
    return shorten(text, MAX_LINE)


class ConfigError(Exception):
    """A problem with the experiment's configuration, found before any work (exit status 2)."""

    def __init__(self, key: str, message: str, *, suggestion: str | None = None, absolute: bool = False):
        self.key = key
        self.message = message
        self.suggestion = suggestion
        # True once the key is the one the user wrote (``sae.hook``), not relative to a stage's params.
        self.absolute = absolute
        text = f"{key}: {message}" if key else message
        if suggestion:
            text += f" ({suggestion})"
        super().__init__(cut_values(text))

    def under(self, prefix_key: str) -> ConfigError:
        """The same error keyed under a stage's params key (``hook`` -> ``sae.hook``); absolute keys stay."""
        if self.absolute:
            return self
        key = f"{prefix_key}.{self.key}" if prefix_key and self.key else (prefix_key or self.key)
        return self._with(key, self.message, absolute=True)

    def _with(self, key: str, message: str, *, absolute: bool) -> ConfigError:
        return ConfigError(key, message, suggestion=self.suggestion, absolute=absolute)


class Unobtainable(ConfigError):
    """A model, SAE or dataset that cannot be had here (not cached, hub unreachable); the message
    ends with what runs offline instead, which an experiment may replace with its own variant."""

    def __init__(self, key: str, message: str, *, offline: str, absolute: bool = False):
        self.reason = message
        self.offline = offline
        super().__init__(key, f"{message}; offline options: {offline}", absolute=absolute)

    def _with(self, key: str, message: str, *, absolute: bool) -> ConfigError:
        return Unobtainable(key, self.reason, offline=self.offline, absolute=absolute)

    def offering(self, offline: str) -> Unobtainable:
        """The same error suggesting ``offline`` instead."""
        return Unobtainable(self.key, self.reason, offline=offline, absolute=self.absolute)


class NotFound(LookupError):
    """No such experiment, run, stage or output; the message is one line saying what exists."""

    def __str__(self) -> str:  # LookupError's str() would quote the message
        return str(self.args[0])


class StageFailed(Exception):
    """A stage raised while running (exit status 1); ``__cause__`` holds the original error."""

    def __init__(self, stage: str, error: BaseException):
        self.stage = stage
        super().__init__(f"stage '{stage}' failed: {type(error).__name__}: {error}")


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so runs end KILLED, like Ctrl-C does.

    A BaseException, as KeyboardInterrupt is, so ``except Exception`` in stage
    code cannot swallow it.
    """


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """A "did you mean 'x'?" hint for the closest choice, or None when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def one_of(choices: Iterable[str]) -> str:
    return ", ".join(sorted(choices)) or "(none)"
