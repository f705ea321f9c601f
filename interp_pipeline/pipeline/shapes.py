"""What pre-flight knows about the data stages make, before they make it.

Each is an upstream stage's ``shape(params, inputs)`` result (interp_pipeline.pipeline.preflight),
read by downstream stages' ``check_shapes``. A field left None is not known from config
alone (a text file's number of sequences, say), and the checks that need it wait for
run time. The model's shape is interp_pipeline.models.shape.ModelShape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of


@dataclass(frozen=True)
class TokensShape:
    """A token dataset: ``[n_sequences, seq_len]`` (seq_len: the longest row, padding included)."""

    n_sequences: int | None
    seq_len: int | None

    @property
    def n_tokens(self) -> int | None:
        return None if self.n_sequences is None or self.seq_len is None else self.n_sequences * self.seq_len


@dataclass(frozen=True)
class StoreShape:
    """An activation store: each hook's per-token width, and at most how many rows it will hold."""

    hooks: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # An upper bound (padding may be left out at run time); None when the dataset's size is unknown.
    max_rows: int | None = None
    # (shard_index, num_shards) when the job writes one shard of it: the rest is other jobs' to write.
    shard: tuple[int, int] | None = None
    # The token dataset it was cached from, when known: what labels laid over its rows must match.
    n_sequences: int | None = None
    seq_len: int | None = None

    def hook_width(self, key: str, hook: str | None) -> tuple[str, tuple[int, ...]]:
        """``hook`` (None: the store's only one) and its width; a hook the store lacks is an error on ``key``."""
        if hook is None:
            if len(self.hooks) != 1:
                raise ConfigError(key, f"expected one of the store's hooks ({one_of(self.hooks)}) to be named, "
                                       "found none")
            hook = next(iter(self.hooks))
        if hook not in self.hooks:
            raise ConfigError(key, f"expected a hook the store caches ({one_of(self.hooks)}), found '{hook}'",
                              suggestion=did_you_mean(hook, self.hooks))
        return hook, self.hooks[hook]


@dataclass(frozen=True)
class SAEShape:
    """An SAE: where it reads (``hook``, None when unknown) and its widths."""

    d_in: int
    d_sae: int | None = None
    hook: str | None = None
