"""Where the graph's nodes live in a TransformerLens model (HookedTransformer or TransformerBridge):
the hooks that read every sender's output and every receiver's input, and the model flags they need.

Both model kinds have the same hook names once ``use_split_qkv_input`` (a copy of the residual
stream per head and per q/k/v, so an edge can change one head's query alone) and ``use_hook_mlp_in``
are on; :func:`graph_hooks_on` turns them on for the duration of a computation and back after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.circuits.graph import QKV, Graph, head_outputs
from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class SenderGroup:
    """Senders written by one hook: the input (one), a layer's heads (hook_z, one per head), an MLP (one)."""

    hook: str
    first: int
    count: int
    layer: int  # -1 for the input
    is_heads: bool

    @property
    def stop(self) -> int:
        return self.first + self.count


@dataclass(frozen=True)
class ReceiverGroup:
    """Receivers read at one hook: a layer's q (or k, v) inputs ([b, p, head, d]; k and v: a key/value
    head each), an MLP input, the logits."""

    hook: str
    first: int
    count: int
    layer: int  # the block the hook runs in (the logits: the last block's resid_post)
    prefix: int  # the senders they read: 0 .. prefix-1
    per_head: bool

    @property
    def stop(self) -> int:
        return self.first + self.count


def sender_groups(graph: Graph) -> list[SenderGroup]:
    groups = [SenderGroup(graph.input_hook(), 0, 1, -1, False)]
    for layer in range(graph.n_layers):
        groups.append(SenderGroup(f"blocks.{layer}.attn.hook_z", graph.head_sender(layer), graph.n_heads, layer, True))
        if graph.has_mlp:
            groups.append(SenderGroup(f"blocks.{layer}.hook_mlp_out", graph.mlp_sender(layer), 1, layer, False))
    return groups


def receiver_groups(graph: Graph) -> list[ReceiverGroup]:
    groups = []
    for layer in range(graph.n_layers):
        for which in QKV:
            first = graph.qkv_receiver(layer, which)
            # k and v: [b, p, n_key_value_heads, d] under grouped-query attention (graph.py).
            groups.append(ReceiverGroup(f"blocks.{layer}.hook_{which}_input", first, graph.qkv_count(which), layer,
                                        graph.receiver_prefix(first), True))
        if graph.has_mlp:
            first = graph.mlp_receiver(layer)
            groups.append(ReceiverGroup(f"blocks.{layer}.hook_mlp_in", first, 1, layer, graph.receiver_prefix(first), False))
    last = graph.logits_receiver
    groups.append(ReceiverGroup(graph.final_hook(), last, 1, graph.n_layers - 1, graph.n_senders, False))
    return groups


@contextmanager
def graph_hooks_on(model: Any) -> Iterator[None]:
    """Split q/k/v inputs and hook_mlp_in on while the block runs; the model's own flags after."""
    cfg = model.cfg
    before = (bool(getattr(cfg, "use_split_qkv_input", False)), bool(getattr(cfg, "use_hook_mlp_in", False)))
    try:
        model.set_use_split_qkv_input(True)
    except NotImplementedError:  # TransformerLens 4's native model (a config-built model there): README
        raise ConfigError("inputs.model", "expected a model with split q/k/v inputs per head (an edge changes one "
                                          f"head's query, key or value), found {type(model).__name__} of "
                                          f"architecture {getattr(cfg, 'architecture', None)!r} without them") from None
    if not getattr(cfg, "attn_only", False):
        model.set_use_hook_mlp_in(True)
    try:
        yield
    finally:
        model.set_use_split_qkv_input(before[0])
        if not getattr(cfg, "attn_only", False):
            model.set_use_hook_mlp_in(before[1])


def output_weights(model: Any) -> Tensor:
    """W_O of every layer, [layer, head, d_head, d_model], detached (no edge needs its gradient)."""
    return model.W_O.detach()


def as_outputs(group: SenderGroup, activation: Tensor, w_o: Tensor) -> Tensor:
    """The group's senders' outputs, [batch, pos, count, d_model], from its hook's activation."""
    if group.is_heads:
        return head_outputs(activation, w_o[group.layer])
    return activation.unsqueeze(2)


def recording_hooks(graph: Graph, w_o: Tensor, write: Callable[[SenderGroup, Tensor], None],
                    from_layer: int = 0) -> list[tuple[str, Any]]:
    """Forward hooks that hand each sender group's outputs to ``write`` (groups from ``from_layer`` on)."""

    def hook_for(group: SenderGroup) -> Any:
        def hook(activation: Tensor, hook: Any) -> Tensor:
            write(group, as_outputs(group, activation, w_o))
            return activation

        return hook

    return [(g.hook, hook_for(g)) for g in sender_groups(graph) if g.layer >= from_layer or (g.layer < 0 and from_layer == 0)]


def sender_outputs(model: Any, graph: Graph, tokens: Tensor, w_o: Tensor) -> Tensor:
    """Every sender's output on ``tokens``: [batch, pos, n_senders, d_model], without a graph."""
    import torch

    out = torch.zeros(*tokens.shape, graph.n_senders, model.cfg.d_model, device=tokens.device, dtype=w_o.dtype)

    def write(group: SenderGroup, values: Tensor) -> None:
        out[:, :, group.first:group.stop] = values

    with torch.no_grad(), graph_hooks_on(model):  # not inference_mode: the outputs meet gradients later
        model.run_with_hooks(tokens, fwd_hooks=recording_hooks(graph, w_o, write))
    return out
