"""Target values of edits, optimised for many requests at once: ROME's v* and MEMIT's z_i.

For each request i, a vector delta_i that, added to a layer's output at the subject's last token of the
request's rewrite prompts, makes the new object the next token. Loss per request (ROME's compute_v and
MEMIT's compute_z, kmeng01/rome and kmeng01/memit, in our own words): the new object's NLL, plus
``kl_weight`` x KL(original || edited) of the next-token distributions on the request's ``essence``
prompts (the subject's other facts, kept), plus ``weight_decay`` x ||delta_i||^2 / ||h_i||^2 (h_i: the
layer's output there). The requests' losses are summed and their deltas stacked in one parameter: the
gradient of delta_i depends on request i's loss alone and Adam's update is elementwise, so one batched
optimisation follows each request's own trajectory (to float rounding) in one forward pass per step
instead of one per request. ROME optimises at the MLP's output of the edited layer (``hook_mlp_out``);
MEMIT at the residual stream after the last layer of its range (``hook_resid_post``): adding there is
the same change to the forward pass, only the decay's norm differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from interp_pipeline.editing.prompts import Prompts


def concat(parts: Sequence[Prompts]) -> tuple[Prompts, torch.Tensor]:
    """One right-padded batch of several prompt sets, and each row's set index (``owner``)."""
    width = max(p.tokens.shape[1] for p in parts)
    tokens = torch.cat([torch.nn.functional.pad(p.tokens, (0, width - p.tokens.shape[1])) for p in parts])
    owner = torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(parts)])
    return (Prompts(tokens, torch.cat([p.subject_last for p in parts]), torch.cat([p.last for p in parts])),
            owner)


def hidden_at_subject(model: Any, hook: str, layer: int, prompts: Prompts) -> torch.Tensor:
    """A hook's activation at each prompt's subject-last token, [n, d], no gradient."""
    with torch.no_grad():
        _, cache = model.run_with_cache(prompts.tokens.to(model.cfg.device), names_filter=hook,
                                        stop_at_layer=layer + 1)
    return cache[hook][torch.arange(len(prompts)), prompts.subject_last.to(cache[hook].device)]


def _per_owner_mean(values: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    sums = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, owner, values)
    counts = torch.bincount(owner, minlength=n).clamp(min=1).to(values)
    return sums / counts


def optimise_deltas(model: Any, layer: int, rewrites: Sequence[Prompts], targets: Sequence[int | Sequence[int]],
                    essences: Sequence[Prompts | None] | None = None, *, steps: int, lr: float, kl_weight: float,
                    weight_decay: float, seed: int, site: str = "hook_mlp_out") -> tuple[torch.Tensor, dict[str, Any]]:
    """The deltas [n, d_model] (float64, CPU) of n requests at ``blocks.{layer}.{site}``, and the final step's
    ``delta_nll``, ``delta_kl``, ``delta_norm_ratio`` per request (tensors [n]) and as means. A request's
    target is one token for all its rewrite prompts, or one per prompt (several facts of one subject
    share its delta: MEMIT's batches, interp_pipeline.editing.scale)."""
    n = len(rewrites)
    device = model.cfg.device
    hook = f"blocks.{layer}.{site}"
    rewrite, rewrite_owner = concat(rewrites)
    kept = [(i, e) for i, e in enumerate(essences or []) if e is not None and len(e)]
    parts = [rewrite] + [e for _, e in kept]
    batch, part = concat(parts)
    owner = torch.cat([rewrite_owner, torch.as_tensor([kept[p - 1][0] for p in part[len(rewrite):].tolist()],
                                                      dtype=torch.int64)])
    is_rewrite = torch.arange(len(batch)) < len(rewrite)
    rows = torch.arange(len(batch), device=device)
    positions, lasts, owner_d = batch.subject_last.to(device), batch.last.to(device), owner.to(device)
    per_row = [t for r, t in zip(rewrites, targets)
               for t in (list(t) if isinstance(t, Sequence) else [t] * len(r))]
    target_ids = torch.as_tensor(per_row, device=device)
    torch.manual_seed(seed)
    delta = torch.zeros(n, model.cfg.d_model, device=device, requires_grad=True)
    with torch.no_grad():
        value_norm = _per_owner_mean(hidden_at_subject(model, hook, layer, rewrite).norm(dim=-1),
                                     rewrite_owner.to(device), n)
        reference = model(batch.tokens[~is_rewrite].to(device), return_type="logits")[
            rows[:int((~is_rewrite).sum())], lasts[~is_rewrite.to(device)]].log_softmax(-1) if kept else None

    def add_delta(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        activation = activation.clone()
        activation[rows, positions] += delta[owner_d]
        return activation

    optimizer = torch.optim.Adam([delta], lr=lr)
    params = list(model.parameters())
    was_required = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    mask = is_rewrite.to(device)
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            logits = model.run_with_hooks(batch.tokens.to(device), fwd_hooks=[(hook, add_delta)])
            logprobs = logits[rows, lasts].log_softmax(-1)
            nll = _per_owner_mean(-logprobs[mask].gather(1, target_ids[:, None])[:, 0], owner_d[mask], n)
            kl = torch.zeros(n, device=device)
            if reference is not None:
                edited = logprobs[~mask]
                kl_rows = (reference.exp() * (reference - edited)).sum(-1)
                kl = _per_owner_mean(kl_rows, owner_d[~mask], n)
            decay = delta.norm(dim=-1) ** 2 / value_norm ** 2
            loss = (nll + weight_decay * decay + kl_weight * kl).sum()
            loss.backward()
            optimizer.step()
    finally:
        for p, required in zip(params, was_required):
            p.requires_grad_(required)
    ratio = delta.detach().norm(dim=-1) / value_norm
    per_request = {"delta_nll": nll.detach().cpu(), "delta_kl": kl.detach().cpu(), "delta_norm_ratio": ratio.cpu()}
    return delta.detach().double().cpu(), {**{k: float(v.mean()) for k, v in per_request.items()},
                                           "per_request": per_request}
