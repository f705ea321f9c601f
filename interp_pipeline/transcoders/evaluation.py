"""How good transcoders are: per layer on held-out rows, and the model's loss with all of them spliced in.

``reconstruction``: MSE and explained variance of the MLP's output, L0, and the
fractions of dead latents (never firing on these rows) and dense ones (firing on
more than ``dense_threshold`` of them), as interp_pipeline.sae's evaluation reports
for SAEs. ``spliced_loss``: next-token CE loss of the model as it is, with every
trained layer's MLP output replaced by its transcoder's output on that MLP's input
(all at once: each later transcoder reads an input the earlier ones changed), and
with those MLPs zero-ablated; CE loss score = (zero - spliced) / (zero - clean), as
SAELens's evals score an SAE.
"""

from __future__ import annotations

from typing import Any

import torch


def transcode(transcoder: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, latents) of a SAELens transcoder (skip connection included)."""
    out, latents = transcoder.forward_with_activations(x.to(transcoder.W_enc.dtype))
    return out, latents


@torch.no_grad()
def reconstruction(transcoder: Any, x: torch.Tensor, y: torch.Tensor, *, dense_threshold: float = 0.1,
                   batch_size: int = 4096) -> dict[str, float]:
    if x.shape[0] == 0:
        return {}
    device = transcoder.W_enc.device
    squared = variance = l0 = 0.0
    fires = torch.zeros(transcoder.cfg.d_sae, device=device)
    mean = y.mean(0).to(device)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        out, latents = transcode(transcoder, xb)
        squared += float((out - yb).pow(2).sum())
        variance += float((yb - mean).pow(2).sum())
        active = latents != 0
        l0 += float(active.sum())
        fires += active.float().sum(0)
    n = x.shape[0]
    frequency = fires / n
    return {"eval/mse": squared / n, "eval/explained_variance": 1 - squared / variance if variance else float("nan"),
            "eval/l0": l0 / n, "eval/dead_fraction": float((frequency == 0).float().mean()),
            "eval/dense_fraction": float((frequency > dense_threshold).float().mean()), "eval/tokens": float(n)}


def _splice_hooks(transcoders: Any, mode: str) -> list[tuple[str, Any]]:
    """Hooks replacing each layer's MLP output by its transcoder's (``spliced``) or by zeros (``zero``)."""
    inputs: dict[int, torch.Tensor] = {}
    hooks = []
    for layer in transcoders.layers:
        def keep(act: torch.Tensor, hook: Any, layer: int = layer) -> None:
            inputs[layer] = act

        def replace(act: torch.Tensor, hook: Any, layer: int = layer) -> torch.Tensor:
            if mode == "zero":
                return torch.zeros_like(act)
            out, _ = transcode(transcoders[layer], inputs.pop(layer))
            return out.to(act.dtype)

        hooks += [(transcoders.hook_in(layer), keep), (transcoders.hook_out(layer), replace)]
    return hooks


@torch.no_grad()
def spliced_loss(model: Any, transcoders: Any, tokens: torch.Tensor, *, batch_size_prompts: int = 32,
                 dense_threshold: float = 0.1) -> dict[str, float]:
    """CE loss clean, spliced and zero-ablated; the CE loss score; the spliced model's per-layer L0 on these tokens."""
    totals = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    n = 0
    device = next(model.parameters()).device
    for start in range(0, tokens.shape[0], batch_size_prompts):
        batch = tokens[start:start + batch_size_prompts].to(device)
        count = batch.shape[0] * (batch.shape[1] - 1)
        totals["clean"] += float(model(batch, return_type="loss")) * count
        for mode in ("spliced", "zero"):
            with model.hooks(fwd_hooks=_splice_hooks(transcoders, mode)):
                totals[mode] += float(model(batch, return_type="loss")) * count
        n += count
    clean, spliced, zero = (totals[k] / n for k in ("clean", "spliced", "zero"))
    return {"ce_loss_clean": clean, "ce_loss_spliced": spliced, "ce_loss_zero_ablated": zero,
            "ce_loss_score": (zero - spliced) / (zero - clean) if zero != clean else float("nan")}


def evaluate_transcoders(model: Any, transcoders: Any, tokens: torch.Tensor, settings: Any) -> dict[str, float]:
    """Reconstruction per layer on the tokens' MLP inputs and outputs (and means), then the spliced CE loss."""
    sequences = tokens if settings.max_sequences is None else tokens[:settings.max_sequences]
    hooks = [h for layer in transcoders.layers for h in (transcoders.hook_in(layer), transcoders.hook_out(layer))]
    device = next(model.parameters()).device
    with torch.no_grad():
        caches = [model.run_with_cache(sequences[s:s + settings.batch_size_prompts].to(device), names_filter=hooks)[1]
                  for s in range(0, sequences.shape[0], settings.batch_size_prompts)]
    metrics: dict[str, float] = {}
    for layer in transcoders.layers:
        x, y = (torch.cat([c[hook].reshape(-1, c[hook].shape[-1]) for c in caches])  # [tokens, d_model]
                for hook in (transcoders.hook_in(layer), transcoders.hook_out(layer)))
        for key, value in reconstruction(transcoders[layer], x, y, dense_threshold=settings.dense_threshold).items():
            metrics[f"layer_{layer}/{key.split('/', 1)[1]}"] = value
    for key in ("mse", "explained_variance", "l0", "dead_fraction", "dense_fraction"):
        values = [metrics[f"layer_{layer}/{key}"] for layer in transcoders.layers]
        metrics[f"mean/{key}"] = sum(values) / len(values)
    metrics.update(spliced_loss(model, transcoders, sequences, batch_size_prompts=settings.batch_size_prompts))
    return metrics
