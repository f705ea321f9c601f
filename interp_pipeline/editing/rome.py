"""ROME (Meng et al. 2022, "Locating and Editing Factual Associations in GPT"), on a HookedTransformer.

The MLP of block ``layer`` is read as a linear associative memory: its output weights ``W_out``
([d_mlp, d_model], TransformerLens's row layout: out = k @ W_out + b_out) map a key ``k`` (the
activation after the non-linearity, ``blocks.L.mlp.hook_post``) to a value. ROME inserts one new
association k* -> v* with the least disturbance of the keys' second moment C = E[k k^T]:

    W' = W + (C^-1 k*) (v* - k W)^T / (k^T C^-1 k*)

so that k W' = v* exactly, and any key x with x . C^-1 k* = 0 maps as before. k* is the key at the
subject's last token, averaged over several prefixes (the relation's templates put different text
before the subject): it sets the update's direction. k is the key at the subject's last token of the
rewrite prompt itself, and v* = k W + delta, with delta the vector that, added to the MLP's output at
that token, makes the model say the new object (optimised with a KL term that keeps the subject's
other facts, and a weight decay). As in the reference code (compute_v: (target - cur_output) /
(cur_input . left_vector)), the update is scaled at k, the key delta was optimised at, not at k*: the
rewrite prompt's output then moves by delta exactly. Scaled at k* it moved by delta x (k . C^-1 k*) /
(k*^T C^-1 k*), a factor of 0.72-1.20 on the toy facts edits; at 0.80 an edit whose delta gave the new
object 0.92 was left at 0.46, below the true one. Written here because neither TransformerLens nor
SAELens ships ROME, and the reference code (kmeng01/rome) is tied to Hugging Face GPT modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from interp_pipeline.editing.prompts import Prompts, mlp_key_hook  # noqa: F401 (re-exported: ROME's names)


def key_covariance(model: Any, layer: int, tokens: torch.Tensor, *, batch_size_prompts: int,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """C = E[k k^T] (uncentred, as ROME's second moment) of the MLP keys over the tokens ``mask`` keeps
    (default: all): one layer of :func:`interp_pipeline.editing.covariance.key_covariances`."""
    from interp_pipeline.editing.covariance import key_covariances

    return key_covariances(model, [layer], tokens, batch_size_prompts=batch_size_prompts, mask=mask)[0][layer]


def _run_to_hook(model: Any, tokens: torch.Tensor, hook: str, layer: int) -> torch.Tensor:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook, stop_at_layer=layer + 1)
    return cache[hook]


def subject_key(model: Any, layer: int, prompts: Prompts) -> torch.Tensor:
    """k*: the MLP key at the subject's last token, averaged over the prompts (their prefixes differ)."""
    keys = _run_to_hook(model, prompts.tokens, mlp_key_hook(layer), layer)
    return keys[torch.arange(len(prompts)), prompts.subject_last.to(keys.device)].double().mean(0).cpu()


def _last_logprobs(model: Any, prompts: Prompts) -> torch.Tensor:
    logits = model(prompts.tokens.to(model.cfg.device), return_type="logits")
    return logits[torch.arange(len(prompts)), prompts.last.to(logits.device)].log_softmax(-1)


def optimise_delta(model: Any, layer: int, rewrite: Prompts, target: int, essence: Prompts | None = None, *,
                   steps: int, lr: float, kl_weight: float, weight_decay: float,
                   seed: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The vector that, added to the MLP output at each rewrite prompt's subject token, makes ``target``
    the next token; ROME's loss: the target's NLL, plus ``kl_weight`` x KL(original || edited) on the
    ``essence`` prompts' next-token distributions, plus ``weight_decay`` x ||delta||^2 / ||v||^2
    (the settings' defaults: interp_pipeline.editing.config.RomeConfig). One request of
    :func:`interp_pipeline.editing.targets.optimise_deltas`."""
    from interp_pipeline.editing.targets import optimise_deltas

    deltas, info = optimise_deltas(model, layer, [rewrite], [target], [essence], steps=steps, lr=lr,
                                   kl_weight=kl_weight, weight_decay=weight_decay, seed=seed)
    return deltas[0], {k: v for k, v in info.items() if k != "per_request"}


def rank_one_update(weight: torch.Tensor, covariance: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    at: torch.Tensor | None = None) -> torch.Tensor:
    """ROME's closed form in TransformerLens's layout (out = k @ W): the W' with ``at`` W' = v* (``at``: the
    key the value was found for, default k*) that changes W only along C^-1 k*, leaving every key orthogonal
    to it where it was. Computed in float64, returned in ``weight``'s dtype."""
    w = weight.detach().double().cpu()
    at = (key if at is None else at).double()
    left = torch.linalg.solve(covariance.double(), key.double())  # C^-1 k*
    residual = value.double() - at @ w
    return (w + torch.outer(left, residual) / (left @ at)).to(weight.dtype)


def edited_copy(model: Any, layer: int, new_weight: torch.Tensor) -> Any:
    """A copy of ``model`` with block ``layer``'s W_out replaced (a TransformerBridge's Conv1D or Linear through
    interp_pipeline.editing.weights); the original's parameters are untouched
    (a model served from the stage cache, or held by another stage, stays as it was)."""
    from interp_pipeline.editing.weights import model_copy, set_mlp_out_weight

    edited = model_copy(model)
    set_mlp_out_weight(edited, layer, new_weight)
    return edited


@dataclass
class Edit:
    weight: torch.Tensor
    key: torch.Tensor  # k*: averaged over the key prompts' prefixes; the update is along C^-1 k*
    rewrite_key: torch.Tensor  # k: the rewrite prompt's, where delta was optimised; k W' = value
    value: torch.Tensor  # v* = k W + delta
    info: dict[str, float]


def rome_edit(model: Any, layer: int, covariance: torch.Tensor, rewrite: Prompts, target: int,
              essence: Prompts | None = None, key_prompts: Prompts | None = None, **optimise: Any) -> Edit:
    """k*, k, v* and the updated W_out of one edit (the model is not changed; see :func:`edited_copy`)."""
    key = subject_key(model, layer, key_prompts if key_prompts is not None else rewrite)
    at = subject_key(model, layer, rewrite)
    delta, info = optimise_delta(model, layer, rewrite, target, essence, **optimise)
    from interp_pipeline.editing.weights import mlp_out_weight

    weight = mlp_out_weight(model, layer)
    value = at @ weight.detach().double().cpu() + delta
    return Edit(rank_one_update(weight, covariance, key, value, at=at), key, at, value, info)


def top1(model: Any, prompts: Prompts) -> torch.Tensor:
    """Each prompt's top next-token prediction at its last position."""
    with torch.no_grad():
        return _last_logprobs(model, prompts).argmax(-1).cpu()
