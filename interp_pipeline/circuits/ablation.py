"""Running the model with a set of edges ablated: the ground truth edge scores (``exact``) and every
circuit's faithfulness come from here.

An ablated edge u -> v gives v's input u's ablated output instead of u's output in this run:
v's input gets ``target_u - current_u`` added, where ``current_u`` is u's output as the ablated
run computes it (u may itself be changed by ablations upstream) and ``target_u`` is u's output
on the corrupted prompt (``corrupted``, the default), its mean over the corrupted prompts at each
position (``mean``: Wang et al. 2022 mean-ablate over their ABC distribution, which is what the
corrupted prompts are), or zero (``zero``). This is how ACDC, hannamw/EAP-IG's ``evaluate_graph``
and MIB (2025) ablate; we write it over the graph's tensors: one pass runs ``copies`` ablation
masks at once (patch-major, as the patching engine batches), starting at the earliest ablated
receiver's block from the clean run's residual stream where the model allows
(patching/forward.py's fast path), and unembedding only the positions the metric reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from interp_pipeline.circuits.graph import Graph
from interp_pipeline.circuits.hooks import (ReceiverGroup, SenderGroup, as_outputs, graph_hooks_on, output_weights,
                                            receiver_groups, sender_groups, sender_outputs)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import Tensor

    from interp_pipeline.patching.metrics import Metric

ABLATIONS = ("corrupted", "mean", "zero")


class AblatedRuns:
    """Ablated runs of the clean prompts of ``pairs``, ``batch_size_prompts`` sequences a pass."""

    def __init__(self, model: Any, graph: Graph, pairs: Mapping[str, Tensor], metric: Metric, ablation: str, *,
                 batch_size_prompts: int, fast: bool | None = None):
        import torch

        from interp_pipeline.patching.forward import PatchedForward, run_grouped_with_cache, supports_fast_path

        if ablation not in ABLATIONS:
            raise ValueError(f"ablation: expected one of {ABLATIONS}, found {ablation!r}")
        self.model, self.graph, self.metric = model, graph, metric
        self.batch_size_prompts = batch_size_prompts
        self.w_o = output_weights(model)
        clean, corrupted = pairs["clean"], pairs["corrupted"]
        self.n_prompts = clean.shape[0]
        self.clean_out = torch.cat([sender_outputs(model, graph, clean[s:s + batch_size_prompts], self.w_o)
                                    for s in range(0, self.n_prompts, batch_size_prompts)])
        if ablation == "zero":
            self.target = torch.zeros_like(self.clean_out[:1])
        else:
            corrupted_out = torch.cat([sender_outputs(model, graph, corrupted[s:s + batch_size_prompts], self.w_o)
                                       for s in range(0, self.n_prompts, batch_size_prompts)])
            self.target = corrupted_out if ablation == "corrupted" else corrupted_out.mean(0, keepdim=True)
        fast = supports_fast_path(model) if fast is None else fast
        starts = None
        if fast:
            names = {f"blocks.{layer}.hook_resid_pre" for layer in range(graph.n_layers)}
            with torch.inference_mode():
                _, cache = run_grouped_with_cache(model, clean, names, batch_size_prompts)
            starts = {layer: cache[f"blocks.{layer}.hook_resid_pre"] for layer in range(graph.n_layers)}
        self.forward = PatchedForward(model, clean, starts, fast=fast)

    def prompt_groups(self) -> list[Tensor]:
        import torch

        return list(torch.arange(self.n_prompts, device=self.clean_out.device).split(self.batch_size_prompts))

    def values(self, ablated: Tensor, on_pass: Callable[[], None] = lambda: None) -> Tensor:
        """The raw metric (mean over prompts) with each ``ablated[c]`` ([copies, n_senders, n_receivers]
        bool) ablated; float64, one value per mask."""
        import torch

        ablated = ablated & self.graph.valid.to(ablated.device)
        sums = torch.zeros(ablated.shape[0], dtype=torch.float64)
        for rows in self.prompt_groups():
            per_pass = max(1, self.batch_size_prompts // len(rows))
            for start in range(0, ablated.shape[0], per_pass):
                chunk = ablated[start:start + per_pass]
                sums[start:start + len(chunk)] += self._pass(chunk, rows).double().cpu()
                on_pass()
        return sums / self.n_prompts

    def _pass(self, masks: Tensor, rows: Tensor) -> Tensor:
        """Summed per-prompt metric values of ``len(masks)`` ablated copies of ``rows`` in one forward."""
        import torch

        graph, copies, n = self.graph, masks.shape[0], len(rows)
        touched = masks.any(0).any(0).nonzero().flatten()
        if len(touched) == 0:
            layer = graph.n_layers - 1
        else:
            first = int(touched.min())
            layer = min(graph.n_layers - 1, first // graph.per_layer_receivers)
        current = self.clean_out[rows].repeat(copies, 1, 1, 1)  # [copies * n, pos, n_senders, d_model]
        target = self.target[rows] if self.target.shape[0] > 1 else self.target
        weights = masks.to(current.dtype)

        def record(group: SenderGroup) -> Any:
            def hook(activation: Tensor, hook: Any) -> Tensor:
                current[:, :, group.first:group.stop] = as_outputs(group, activation, self.w_o)
                return activation

            return hook

        def ablate(group: ReceiverGroup) -> Any:
            block = weights[:, :group.prefix, group.first:group.stop]  # [copies, prefix, count]

            def hook(activation: Tensor, hook: Any) -> Tensor:
                delta = (target[..., :group.prefix, :] - current[:, :, :group.prefix].unflatten(0, (copies, n)))
                added = torch.einsum("cnpsd,csk->cnpkd", delta, block).flatten(0, 1)
                return activation + (added if group.per_head else added[:, :, 0])

            return hook

        hooks = [(g.hook, record(g)) for g in sender_groups(graph) if g.layer >= layer]
        hooks += [(g.hook, ablate(g)) for g in receiver_groups(graph)
                  if g.layer >= layer and bool(masks[:, :, g.first:g.stop].any())]
        positions = self.metric.readout_positions(rows).repeat(copies, 1)
        with torch.inference_mode(), graph_hooks_on(self.model):
            logits = self.forward.run(layer, rows, copies, hooks, positions)
        return self.metric.per_prompt(logits, rows).view(copies, n).sum(1)


def exact_scores(runs: AblatedRuns, on_pass: Callable[[], None] = lambda: None) -> Tensor:
    """Each edge ablated by itself: the metric's change from the clean run, [n_senders, n_receivers] float32."""
    import torch

    graph = runs.graph
    valid = graph.valid.to(runs.clean_out.device)
    baseline = float(runs.values(torch.zeros_like(valid)[None])[0])
    senders, receivers = valid.nonzero(as_tuple=True)  # receiver-major below, so a pass starts late
    order = torch.argsort(receivers * graph.n_senders + senders)
    senders, receivers = senders[order], receivers[order]
    scores = torch.zeros(graph.n_senders, graph.n_receivers, dtype=torch.float32)
    for start in range(0, len(senders), runs.batch_size_prompts):
        s, r = senders[start:start + runs.batch_size_prompts], receivers[start:start + runs.batch_size_prompts]
        masks = torch.zeros(len(s), *valid.shape, dtype=torch.bool, device=valid.device)
        masks[torch.arange(len(s)), s, r] = True
        scores[s.cpu(), r.cpu()] = (runs.values(masks, on_pass) - baseline).float()
    return scores


def count_exact_passes(graph: Graph, n_prompts: int, batch_size_prompts: int) -> int:
    """Forward passes :func:`exact_scores` takes, roughly (the progress bar's total)."""
    groups = -(-n_prompts // batch_size_prompts)
    per_pass = max(1, batch_size_prompts // min(n_prompts, batch_size_prompts))
    chunks = -(-graph.n_edges // batch_size_prompts)
    return groups * chunks * -(-batch_size_prompts // per_pass)
