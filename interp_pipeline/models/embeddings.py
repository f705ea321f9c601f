"""The token embeddings as the checkpoint has them, before TransformerLens's weight processing.

``center_writing_weights`` (HookedTransformer.from_pretrained's default, and a TransformerBridge's
compatibility mode) subtracts each embedding row's mean: the model computes the same function
(every LayerNorm centres its input), but statistics of ``W_E`` change. Causal tracing scales its
noise by the std of the subject tokens' embeddings, which ROME (experiments/causal_trace.py,
``collect_embedding_std``) reads from the unprocessed ``wte`` of the Hugging Face model; on a
centred ``W_E`` that std is ~1% smaller (issue 27). So the loaders keep the unprocessed matrix
when processing changes it (on the CPU, as ``model.unprocessed_W_E``), and
:func:`unprocessed_token_embeddings` gives it back, or ``W_E`` where nothing changed it (models
built from a config or trained here are never processed).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

ATTRIBUTE = "unprocessed_W_E"
log = logging.getLogger(__name__)


def keep_unprocessed(model: Any, raw: Any) -> None:
    """Remember ``raw`` (the embedding before processing) on ``model`` if processing changed ``W_E``."""
    import torch

    if raw is None:  # the loader never saw the checkpoint's tensor
        return
    with torch.no_grad():
        current = model.W_E.detach().cpu()
        if not torch.equal(current, raw.to(current.dtype)):
            object.__setattr__(model, ATTRIBUTE, raw.detach().cpu().clone())


@contextlib.contextmanager
def capturing_state_dict_embedding() -> Iterator[dict[str, Any]]:
    """While active, the ``embed.W_E`` that TransformerLens's ``get_pretrained_state_dict`` returns
    (before ``load_and_process_state_dict`` centres it) is copied into the yielded dict (``"W_E"``).

    HookedTransformer.from_pretrained calls ``loading.get_pretrained_state_dict`` through the module
    (transformer_lens 3.9, HookedTransformer.py), so wrapping the module attribute sees the
    checkpoint's tensor without loading the checkpoint twice."""
    import transformer_lens.loading_from_pretrained as loading

    captured: dict[str, Any] = {}
    original = loading.get_pretrained_state_dict

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        state_dict = original(*args, **kwargs)
        if "embed.W_E" in state_dict:
            captured["W_E"] = state_dict["embed.W_E"].detach().cpu().clone()
        return state_dict

    loading.get_pretrained_state_dict = wrapped
    try:
        yield captured
    finally:
        loading.get_pretrained_state_dict = original


def unprocessed_token_embeddings(model: Any) -> Any:
    """[d_vocab, d_model] on the CPU: the embeddings before weight processing (see the module docstring).

    A model that carries no unprocessed copy and whose rows all have mean ~0 was probably centred
    by a loader other than ours: that is logged, since its std is then the centred one."""
    import torch

    raw = getattr(model, ATTRIBUTE, None)
    if raw is not None:
        return raw
    W_E = model.W_E.detach().cpu()
    with torch.no_grad():
        row_means = W_E.double().mean(-1).abs()
        if W_E.shape[-1] > 1 and float(row_means.max()) <= 1e-6 * float(W_E.double().abs().mean()):
            log.warning("W_E's rows all have mean 0 (centred weights?) and no unprocessed copy is known: "
                        "statistics of the embeddings are those of the centred matrix")
    return W_E
