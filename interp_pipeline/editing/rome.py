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

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Prompts:
    """Right-padded prompts: ``tokens`` [n, seq], the subject's last token ``subject_last`` [n], and the
    position whose next-token prediction is the object, ``last`` [n] (the prompt's final token)."""

    tokens: torch.Tensor
    subject_last: torch.Tensor
    last: torch.Tensor

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]], subject_last: Sequence[int], pad: int = 0) -> Prompts:
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), pad, dtype=torch.int64)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = torch.as_tensor(list(row))
        return cls(tokens, torch.as_tensor(list(subject_last)), torch.as_tensor([len(r) - 1 for r in rows]))

    def __len__(self) -> int:
        return self.tokens.shape[0]


def mlp_key_hook(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"


def key_covariance(model: Any, layer: int, tokens: torch.Tensor, *, batch_size_prompts: int,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """C = E[k k^T] (uncentred, as ROME's second moment) of the MLP keys over the tokens ``mask`` keeps
    (default: all), accumulated ``batch_size_prompts`` sequences at a time in float64: memory is one
    d_mlp x d_mlp matrix."""
    hook = mlp_key_hook(layer)
    d_mlp = model.cfg.d_mlp
    total = torch.zeros(d_mlp, d_mlp, dtype=torch.float64)
    count = 0
    for start in range(0, tokens.shape[0], batch_size_prompts):
        batch = tokens[start:start + batch_size_prompts]
        keys = _run_to_hook(model, batch, hook, layer)
        keep = mask[start:start + batch_size_prompts] if mask is not None else torch.ones(batch.shape, dtype=torch.bool)
        keys = keys[keep.to(keys.device)].double().cpu()
        total += keys.T @ keys
        count += keys.shape[0]
    return total / max(count, 1)


def _run_to_hook(model: Any, tokens: torch.Tensor, hook: str, layer: int) -> torch.Tensor:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook, stop_at_layer=layer + 1)
    return cache[hook]


def subject_key(model: Any, layer: int, prompts: Prompts) -> torch.Tensor:
    """k*: the MLP key at the subject's last token, averaged over the prompts (their prefixes differ)."""
    keys = _run_to_hook(model, prompts.tokens, mlp_key_hook(layer), layer)
    return keys[torch.arange(len(prompts)), prompts.subject_last.to(keys.device)].double().mean(0).cpu()


def _last_logprobs(model: Any, prompts: Prompts, hooks: list[tuple[str, Any]] | None = None) -> torch.Tensor:
    logits = model.run_with_hooks(prompts.tokens.to(model.cfg.device), fwd_hooks=hooks or [])
    return logits[torch.arange(len(prompts)), prompts.last.to(logits.device)].log_softmax(-1)


def optimise_delta(model: Any, layer: int, rewrite: Prompts, target: int, essence: Prompts | None = None, *,
                   steps: int, lr: float, kl_weight: float, weight_decay: float,
                   seed: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The vector that, added to the MLP output at each rewrite prompt's subject token, makes ``target``
    the next token; ROME's loss: the target's NLL, plus ``kl_weight`` x KL(original || edited) on the
    ``essence`` prompts' next-token distributions, plus ``weight_decay`` x ||delta||^2 / ||v||^2
    (the settings' defaults: interp_pipeline.editing.config.RomeConfig)."""
    hook = f"blocks.{layer}.hook_mlp_out"
    torch.manual_seed(seed)
    delta = torch.zeros(model.cfg.d_model, device=model.cfg.device, requires_grad=True)
    with torch.no_grad():
        _, cache = model.run_with_cache(rewrite.tokens.to(model.cfg.device), names_filter=hook,
                                        stop_at_layer=layer + 1)
        value_norm = cache[hook][torch.arange(len(rewrite)), rewrite.subject_last].norm(dim=-1).mean()
        reference = _last_logprobs(model, essence) if essence is not None and len(essence) else None

    def add_at(positions: torch.Tensor):
        rows = torch.arange(len(positions))

        def hook_fn(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            activation = activation.clone()
            activation[rows, positions.to(activation.device)] += delta
            return activation
        return [(hook, hook_fn)]

    optimizer = torch.optim.Adam([delta], lr=lr)
    params = [p for p in model.parameters()]
    was_required = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            nll = -_last_logprobs(model, rewrite, add_at(rewrite.subject_last))[:, target].mean()
            loss = nll + weight_decay * delta.norm() ** 2 / value_norm ** 2
            kl = torch.zeros(())
            if reference is not None:
                edited = _last_logprobs(model, essence, add_at(essence.subject_last))
                kl = F.kl_div(edited, reference, log_target=True, reduction="batchmean")
                loss = loss + kl_weight * kl
            loss.backward()
            optimizer.step()
    finally:
        for p, required in zip(params, was_required):
            p.requires_grad_(required)
    return delta.detach().double().cpu(), {"delta_nll": float(nll.detach()), "delta_kl": float(kl.detach()),
                                           "delta_norm_ratio": float(delta.detach().norm() / value_norm)}


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
    """A copy of ``model`` with block ``layer``'s W_out replaced; the original's parameters are untouched
    (a model served from the stage cache, or held by another stage, stays as it was)."""
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.blocks[layer].mlp.W_out.copy_(new_weight.to(edited.blocks[layer].mlp.W_out.device))
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
    weight = model.blocks[layer].mlp.W_out
    value = at @ weight.detach().double().cpu() + delta
    return Edit(rank_one_update(weight, covariance, key, value, at=at), key, at, value, info)


def top1(model: Any, prompts: Prompts) -> torch.Tensor:
    """Each prompt's top next-token prediction at its last position."""
    with torch.no_grad():
        return _last_logprobs(model, prompts).argmax(-1).cpu()
