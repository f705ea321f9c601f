"""The token sequences behind an activation store's held-out rows (the store_heldout_tokens stage).

train_sae holds out a store's last ``sae.eval_tokens`` rows (interp_pipeline.sae.data);
evaluate_sae needs whole sequences (CE loss reads every token's context), so these are
the sequences whose rows are all held out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING

from interp_pipeline.config.fields import positive
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


@dataclass
class HeldoutTokensConfig:
    eval_tokens: int = positive(MISSING)  # the store's last rows held out (pipelines give sae.eval_tokens)


def check_heldout_rows(settings: HeldoutTokensConfig, n_rows: int | None, what: str) -> None:
    """``eval_tokens`` is at most the ``n_rows`` rows (``what``: whose) there are, when that is known."""
    if n_rows is not None and settings.eval_tokens > n_rows:
        raise ConfigError("eval_tokens", f"expected an integer in [1, {n_rows}] (at most {what} rows), "
                                         f"found {settings.eval_tokens}")


def heldout_sequences(tokens: Int[Tensor, "batch pos"], store: Any, settings: HeldoutTokensConfig,
                      tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "heldout pos"]:
    """The sequences of ``tokens`` that have rows among the store's last ``eval_tokens`` rows and none before.

    The sequence at the boundary (some rows trained on, some held out) is left out.
    ``tokens`` must be the dataset the store was cached from (its fingerprint is checked).
    Without a store (train_sae streamed from the model), the rows are every position of
    every sequence, in order.
    """
    import numpy as np
    import torch

    from interp_pipeline.activations.layout import fingerprint
    from interp_pipeline.sae.data import open_store

    eval_tokens = settings.eval_tokens
    tokens_np = tokens.cpu().numpy()
    if store is None:
        sequences = np.repeat(np.arange(tokens_np.shape[0]), tokens_np.shape[1])
        what = "every token's"
    else:
        opened = open_store(store)
        sequences, what = opened.sequences(), "the store's"
        expected, found = opened.attrs.get("dataset_fingerprint"), fingerprint(tokens_np)
        if expected != found:
            raise ConfigError("inputs.tokens", f"expected the token dataset activation store {opened.url} was "
                                               f"cached from (fingerprint {expected}), found one with fingerprint "
                                               f"{found} and shape {list(tokens_np.shape)}; wire the cache stage's "
                                               "tokens here")
    n_rows = len(sequences)
    if eval_tokens > n_rows:
        raise ConfigError("eval_tokens", f"expected an integer in [1, {n_rows}] ({what} rows), found {eval_tokens!r}")
    first_heldout = n_rows - eval_tokens
    heldout = np.unique(sequences[first_heldout:])
    heldout = heldout[~np.isin(heldout, sequences[:first_heldout])]
    if heldout.size == 0:
        raise ConfigError("eval_tokens", f"expected the held-out rows to cover at least one whole sequence "
                                         f"({tokens_np.shape[1]} tokens), found {eval_tokens} rows that do not; "
                                         "raise sae.eval_tokens")
    selected = tokens[torch.as_tensor(heldout, dtype=torch.long)]
    tracker.log_metrics({"heldout_sequences": float(selected.shape[0]), "heldout_tokens": float(selected.numel())})
    return selected
