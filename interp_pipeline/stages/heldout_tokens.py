"""The store_heldout_tokens stage: the token sequences behind an activation store's held-out rows.

train_sae holds out a store's last ``sae.eval_tokens`` rows; evaluate_sae needs whole
sequences (CE loss reads every token's context), so this stage hands it the sequences
whose rows are all held out (interp_pipeline.sae.heldout).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.sae.heldout import HeldoutTokensConfig, check_heldout_rows
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


def _check_heldout_shapes(settings: HeldoutTokensConfig, inputs: Mapping[str, Any]) -> None:
    store, tokens = inputs.get("store"), inputs.get("tokens")
    if store is not None:
        check_heldout_rows(settings, store.max_rows, "the store's")
    elif tokens is not None:
        check_heldout_rows(settings, tokens.n_tokens, "every token's")


@stage("store_heldout_tokens", outputs=("tokens",), config=HeldoutTokensConfig, version=1,
       check_shapes=_check_heldout_shapes, metrics=("heldout_sequences", "heldout_tokens"),
       summary=("heldout_sequences", "heldout_tokens"))
def store_heldout_tokens(tokens: Int[Tensor, "batch pos"], settings: HeldoutTokensConfig, store: Any = None,
                         tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "heldout pos"]:
    """The sequences of ``tokens`` that have rows among the store's last ``eval_tokens`` rows and none before
    (the sequence at the boundary is left out); without a store, the rows are every token's, in order.
    ``tokens`` must be the dataset the store was cached from (its fingerprint is checked)."""
    from interp_pipeline.sae.heldout import heldout_sequences

    return heldout_sequences(tokens, store, settings, tracker)
