"""Attribution patching: every grid's first-order estimate from two passes.

Nanda's gradient approximation: patching activation ``a`` from clean into corrupted
changes the metric by about ``(a_clean - a_corrupted) . dM/da``, the gradient taken
on the corrupted run. One forward and backward on the corrupted prompts and one
forward on the clean ones give the estimate for every component of every grid.
The estimate is reported in the exact grid's units (the patched metric, not the
change), so the two arrays compare directly; it is exact where the metric is
linear in the activation (e.g. the last layer's outputs of a model without a final
LayerNorm).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.patching.engine import hook_names_for
from interp_pipeline.patching.forward import run_grouped_with_cache
from interp_pipeline.patching.metrics import Metric
from interp_pipeline.patching.grids import Grid, run_parts

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class AttributionData:
    cfg: Any
    n_pos: int
    delta: dict[str, Tensor]  # clean minus corrupted activation, per hook name
    grads: dict[str, Tensor]  # d(metric)/d(activation) on the corrupted run
    corrupted_value: float  # the reported metric of the unpatched corrupted run
    seconds: float  # time of the two passes


def prepare_attribution(model: Any, pairs: Mapping[str, Tensor], metric: Metric, grid_names: Sequence[str], *,
                        batch_size_prompts: int) -> AttributionData:
    """The two passes (``batch_size_prompts`` prompts at a time); ``metric`` must be calibrated."""
    import torch

    start = time.perf_counter()
    device = model.cfg.device
    pairs = {k: v.to(device) for k, v in pairs.items()}
    names = hook_names_for(grid_names, model.cfg.n_layers)
    with torch.inference_mode():
        _, clean = run_grouped_with_cache(model, pairs["clean"], names, batch_size_prompts)
    n_prompts = pairs["clean"].shape[0]
    corrupted: dict[str, list[Tensor]] = {name: [] for name in names}
    grads: dict[str, list[Tensor]] = {name: [] for name in names}
    for rows in torch.arange(n_prompts, device=device).split(batch_size_prompts):
        captured: dict[str, Tensor] = {}

        def as_leaf(activation: Tensor, hook: Any) -> Tensor:
            # Where the weights do not require grad, start the graph at the embedding.
            return activation if activation.requires_grad else activation.detach().requires_grad_(True)

        def capture(name: str) -> Any:
            # Keyed by the name asked for: a TransformerBridge's hook.name may be its own alias.
            def hook(activation: Tensor, hook: Any) -> Tensor:
                captured[name] = activation
                return activation

            return hook

        with torch.enable_grad():
            logits = model.run_with_hooks(pairs["corrupted"][rows],
                                          fwd_hooks=[("hook_embed", as_leaf), *((n, capture(n)) for n in names)])
            positions = metric.readout_positions(rows)
            readout = logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
            # The group's share of the mean, so gradients add up over groups.
            value = metric.finish(metric.per_prompt(readout, rows).sum() / n_prompts)
            ordered = sorted(names)
            for name, grad in zip(ordered, torch.autograd.grad(value, [captured[n] for n in ordered]), strict=True):
                grads[name].append(grad.detach())
                corrupted[name].append(captured[name].detach())
    delta = {name: clean[name] - torch.cat(corrupted[name]) for name in names}
    return AttributionData(
        cfg=model.cfg, n_pos=pairs["clean"].shape[1], delta=delta, grads={n: torch.cat(g) for n, g in grads.items()},
        corrupted_value=float(metric.finish(metric.corrupted_value)), seconds=time.perf_counter() - start,
    )


# Dimensions summed away, per grid axes: the batch always; then whatever the index leaves.
# Vectors are [batch, pos, (head,) d]; patterns are [batch, head, dest, src].
_SUMMED = {
    ("layer", "pos"): (0, 2),
    ("layer", "head"): (0, 1, 3),
    ("layer", "pos", "head"): (0, 3),
    ("layer", "head_index"): (0, 2, 3),
    ("layer", "head_index", "dest_pos"): (0, 3),
}


def attribution_estimate(grid: Grid, data: AttributionData) -> Tensor:
    """The estimated patched metric for every index of ``grid`` (TransformerLens's shape)."""
    import torch

    dims = _SUMMED[grid.axes]
    per_layer = [
        (data.delta[grid.hook_name(layer)] * data.grads[grid.hook_name(layer)]).sum(dims)
        for layer in range(data.cfg.n_layers)
    ]
    return (torch.stack(per_layer) + data.corrupted_value).float().cpu()


def attribution_grid(name: str, data: AttributionData) -> Tensor:
    """A named grid's estimate, composites stacked as the exact ones are (grids.run_parts)."""
    return run_parts(name, lambda grid: attribution_estimate(grid, data))
