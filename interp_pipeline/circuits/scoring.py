"""Edge scores from gradients: EAP, EAP-IG (inputs, activations) and the clean-corrupted variant.

Every method estimates, for each edge u -> v, how the metric changes when v's input receives u's
corrupted output instead of its clean one (the other edges left clean), and all of them have the
form ``(a_u(corrupted) - a_u(clean)) . g_v``, summed over positions and averaged over prompts:

- ``eap`` (Syed et al. 2023, "Attribution Patching Outperforms Automated Circuit Discovery"):
  ``g_v`` is the metric's gradient at v's input on the clean run: one forward and one backward;
- ``eap_ig_inputs`` (Hanna et al. 2024, "Have Faith in Faithfulness", hannamw/EAP-IG): ``g_v``
  averaged over ``ig_steps`` runs whose input embeddings lie on the line from the corrupted ones
  (alpha = 0) towards the clean ones (alpha = k / steps, k = 0 .. steps-1, as the reference does);
- ``eap_ig_activations`` (MIB, Mueller et al. 2025): the sender's own activation interpolated
  (alpha = k / steps, k = 1 .. steps), one sender group (the input, a layer's heads, an MLP) at a
  time; an edge's gradient is averaged over the runs that interpolate its own sender. (hannamw's
  code averages every edge over every group's runs; we keep each edge to its sender's integral,
  which is the integrated-gradients path the method names.)
- ``clean_corrupted``: ``g_v`` averaged over the clean and the corrupted run (two points).

We write the gradient-times-difference products during the backward pass, in tensor hooks on the
receivers' inputs, so no [batch, pos, receiver, d_model] gradient is ever held: the scores are one
[n_senders, n_receivers] tensor (graph.py) and the activation differences [batch, pos, n_senders,
d_model] for one batch of prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.circuits.graph import Graph
from interp_pipeline.circuits.hooks import (ReceiverGroup, graph_hooks_on, output_weights, receiver_groups,
                                            sender_groups, sender_outputs)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import Tensor

    from interp_pipeline.patching.metrics import Metric

GRADIENT_METHODS = ("eap", "eap_ig_inputs", "eap_ig_activations", "clean_corrupted")
METHODS = (*GRADIENT_METHODS, "exact")


def gradient_scores(model: Any, graph: Graph, pairs: Mapping[str, Tensor], metric: Metric, method: str, *,
                    ig_steps: int, batch_size_prompts: int, on_pass: Callable[[], None] = lambda: None) -> Tensor:
    """[n_senders, n_receivers] float32 scores of ``method`` (zero off the graph's edges)."""
    import torch

    if method not in GRADIENT_METHODS:
        raise ValueError(f"not a gradient method: {method!r}")
    device = pairs["clean"].device
    scores = torch.zeros(graph.n_senders, graph.n_receivers, device=device, dtype=torch.float32)
    w_o = output_weights(model)
    n_total = pairs["clean"].shape[0]
    for rows in torch.arange(n_total, device=device).split(batch_size_prompts):
        clean, corrupted = pairs["clean"][rows], pairs["corrupted"][rows]
        clean_out = sender_outputs(model, graph, clean, w_o)
        corrupted_out = sender_outputs(model, graph, corrupted, w_o)
        run = _GradientRun(model, graph, metric, rows, n_total, corrupted_out - clean_out, scores)
        if method == "eap":
            run(clean, weight=1.0)
            on_pass()
        elif method == "clean_corrupted":
            for tokens in (clean, corrupted):
                run(tokens, weight=0.5)
                on_pass()
        elif method == "eap_ig_inputs":
            start, end = corrupted_out[:, :, 0], clean_out[:, :, 0]
            for k in range(ig_steps):
                run(clean, weight=1.0 / ig_steps, input_value=start + (k / ig_steps) * (end - start))
                on_pass()
        else:
            _interpolate_activations(model, graph, run, clean, corrupted, ig_steps, on_pass)
    return scores.masked_fill(~graph.valid.to(device), 0.0)


def count_passes(graph: Graph, method: str, ig_steps: int, n_batches: int) -> int:
    """Backward passes a gradient method takes (the progress bar's total)."""
    per_batch = {"eap": 1, "clean_corrupted": 2, "eap_ig_inputs": ig_steps,
                 "eap_ig_activations": ig_steps * len(sender_groups(graph))}[method]
    return per_batch * n_batches


def _interpolate_activations(model: Any, graph: Graph, run: _GradientRun, clean: Tensor, corrupted: Tensor,
                             steps: int, on_pass: Callable[[], None]) -> None:
    """EAP-IG on activations: each sender group's hook activation moved from corrupted to clean."""
    import torch

    groups = sender_groups(graph)
    names = {g.hook for g in groups}
    with torch.no_grad(), graph_hooks_on(model):
        _, clean_cache = model.run_with_cache(clean, names_filter=lambda n: n in names)
        _, corrupted_cache = model.run_with_cache(corrupted, names_filter=lambda n: n in names)
    for group in groups:
        start, end = corrupted_cache[group.hook], clean_cache[group.hook]
        for k in range(1, steps + 1):
            value = start + (k / steps) * (end - start)
            if group.layer < 0:
                run(clean, weight=1.0 / steps, input_value=value, senders=(group.first, group.stop))
            else:
                def replace(activation: Tensor, hook: Any, value: Tensor = value) -> Tensor:
                    return value

                run(clean, weight=1.0 / steps, senders=(group.first, group.stop), extra_hooks=[(group.hook, replace)])
            on_pass()


class _GradientRun:
    """One forward and backward on a batch; each receiver's input gradient, as it arrives, is
    multiplied with the activation differences of the senders it reads and added to ``scores``."""

    def __init__(self, model: Any, graph: Graph, metric: Metric, rows: Tensor, n_total: int, difference: Tensor,
                 scores: Tensor):
        self.model, self.graph, self.metric = model, graph, metric
        self.rows, self.n_total = rows, n_total
        self.difference = difference  # [batch, pos, n_senders, d_model]: corrupted minus clean
        self.scores = scores
        self.receivers = receiver_groups(graph)

    def __call__(self, tokens: Tensor, *, weight: float, input_value: Tensor | None = None,
                 senders: tuple[int, int] | None = None, extra_hooks: Sequence[tuple[str, Any]] = ()) -> None:
        import torch

        lo, hi = senders or (0, self.graph.n_senders)
        leaves: list[Tensor] = []

        def as_leaf(activation: Tensor, hook: Any) -> Tensor:
            # The graph starts here: the weights need no gradient, and IG puts its interpolation here.
            leaf = (activation if input_value is None else input_value).detach().requires_grad_(True)
            leaves.append(leaf)
            return leaf

        def watch(group: ReceiverGroup) -> Any:
            stop = min(hi, group.prefix)

            def accumulate(grad: Tensor) -> None:
                grad = grad if group.per_head else grad.unsqueeze(2)  # [batch, pos, count, d_model]
                part = torch.einsum("bpsd,bpkd->sk", self.difference[:, :, lo:stop].to(grad.dtype), grad)
                self.scores[lo:stop, group.first:group.stop] += weight * part.float()

            def hook(activation: Tensor, hook: Any) -> Tensor:
                if stop > lo and activation.requires_grad:
                    # A copy, so that the gradient is the receiver's alone: a Bridge's hook_mlp_in hands us
                    # the residual stream itself, whose gradient also has the skip connection's.
                    activation = activation.clone()
                    activation.register_hook(accumulate)
                return activation

            return hook

        hooks = [(self.graph.input_hook(), as_leaf), *extra_hooks, *((g.hook, watch(g)) for g in self.receivers)]
        with torch.enable_grad(), graph_hooks_on(self.model):
            logits = self.model.run_with_hooks(tokens, fwd_hooks=hooks)
            positions = self.metric.readout_positions(self.rows)
            readout = logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
            # The batch's share of the mean over all prompts, so batches add up.
            value = self.metric.per_prompt(readout, self.rows).sum() / self.n_total
            torch.autograd.grad(value, leaves)
