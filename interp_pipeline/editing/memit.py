"""MEMIT (Meng et al. 2023, "Mass-Editing Memory in a Transformer"): many edits spread over a range of MLPs.

Each MLP of the range is a linear associative memory, as in ROME (interp_pipeline.editing.rome). For a
batch of n requests, MEMIT finds each request's target z_i at the residual stream after the LAST layer
of the range (h_i + delta_i, interp_pipeline.editing.targets), then walks the range from its first
layer: at layer l, with K [n, d_mlp] the requests' keys there (the subject's last token, averaged over
the key prompts' prefixes) and R [n, d_model] the part of the remaining residual z_i - h_i(current
model) that this layer carries (1 / the layers left, the paper's eq. 14-20), it writes

    Delta = argmin  lambda ||C^(1/2) Delta||^2 + ||K Delta - R||^2  =  (lambda C + K^T K)^-1 K^T R

into W_out (TransformerLens's layout: out = k @ W_out), C the keys' uncentred second moment
E[k k^T] (interp_pipeline.editing.covariance) and lambda ``mom2_update_weight``, which weighs the
keys already stored against the new ones. With one request and one layer, by Sherman-Morrison,
(lambda C + k k^T)^-1 k = C^-1 k / (lambda + q), q = k^T C^-1 k: ROME's rank-one update scaled by
q / (lambda + q) (tested). Read from kmeng01/memit (memit/memit_main.py: execute_memit; compute_z,
compute_ks), written here for TransformerLens's hooks and layout; neither TransformerLens nor SAELens
ships it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from interp_pipeline.editing.prompts import Prompts, mlp_key_hook
from interp_pipeline.editing.targets import hidden_at_subject
from interp_pipeline.editing.weights import mlp_out_weight, model_copy, set_mlp_out_weight


def memit_update(covariance: torch.Tensor, keys: torch.Tensor, residuals: torch.Tensor,
                 mom2_update_weight: float) -> torch.Tensor:
    """The least-squares change of one layer's W_out [d_mlp, d_model]: solves the normal equations
    (lambda C + K^T K) Delta = K^T R in float64."""
    c, k, r = covariance.double(), keys.double(), residuals.double()
    return torch.linalg.solve(mom2_update_weight * c + k.T @ k, k.T @ r)


@dataclass
class LayerUpdate:
    layer: int
    keys: torch.Tensor  # K [n, d_mlp]
    residuals: torch.Tensor  # R [n, d_model]: this layer's share of the remaining residual
    update: torch.Tensor  # Delta [d_mlp, d_model]


@dataclass
class MemitResult:
    model: Any
    targets: torch.Tensor  # z [n, d_model] at the last layer's residual stream
    layers: list[LayerUpdate] = field(default_factory=list)

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the stage stores beside the model (``memit.edit``): z and each layer's K, R and Delta."""
        out = {"targets": self.targets.float()}
        for u in self.layers:
            out.update({f"L{u.layer}/keys": u.keys.float(), f"L{u.layer}/residuals": u.residuals.float(),
                        f"L{u.layer}/update": u.update.float()})
        return out


def subject_keys(model: Any, layer: int, prompts: Prompts) -> torch.Tensor:
    """K [n, d_mlp]: the MLP key at each prompt's subject-last token, float64 on the CPU."""
    return hidden_at_subject(model, mlp_key_hook(layer), layer, prompts).double().cpu()


def apply_memit(model: Any, layers: Sequence[int], covariances: Mapping[int, torch.Tensor], rewrites: Prompts,
                deltas: torch.Tensor, *, mom2_update_weight: float) -> MemitResult:
    """A copy of ``model`` with the batch written into ``layers`` (ascending); ``model`` is not changed.

    ``rewrites``: the edits' rewrite prompts, one row each, with ``deltas`` [n, d_model] optimised at
    ``blocks.{layers[-1]}.hook_resid_post`` (rows of one subject share theirs). The keys are read at each
    rewrite prompt's own subject token (as interp_pipeline.editing.rome scales ROME's update at k; the
    paper averages them over random prefixes). ``covariances``: each layer's C, ridge included."""
    last = layers[-1]
    hook = f"blocks.{last}.hook_resid_post"
    targets = hidden_at_subject(model, hook, last, rewrites).double().cpu() + deltas
    edited = model_copy(model)
    result = MemitResult(edited, targets)
    for index, layer in enumerate(layers):
        keys = subject_keys(edited, layer, rewrites)
        current = hidden_at_subject(edited, hook, last, rewrites).double().cpu()
        residuals = (targets - current) / (len(layers) - index)
        update = memit_update(covariances[layer], keys, residuals, mom2_update_weight)
        weight = mlp_out_weight(edited, layer)
        set_mlp_out_weight(edited, layer, (weight.detach().double().cpu() + update).to(weight.dtype))
        result.layers.append(LayerUpdate(layer, keys, residuals, update))
    return result
