"""The computational graph that edge-level circuit discovery scores: nodes, edges, hook names.

The graph is the one of ACDC (Conmy et al. 2023) and Edge Attribution Patching (Syed et al.
2023), as hannamw/EAP-IG (Hanna et al. 2024) and MIB (Mueller et al. 2025) lay it out:

- senders (nodes with an output): the input embeddings, every attention head, every MLP;
- receivers (node inputs): each head's query, key and value input, each MLP's input, the logits;
- an edge: a sender's output as it reaches one receiver through the residual stream. A receiver
  reads every sender of an earlier layer; an MLP also reads the heads of its own layer (attention
  runs first in a block, unless the model runs them in parallel).

Everything is a tensor indexed [sender, receiver] (``valid`` marks the edges that exist), so
GPT-2 small's 32,491 edges are one 157 x 445 matrix and nothing per edge is a Python object.
Senders are numbered input, then per layer its heads and its MLP; receivers per layer its heads'
q, k, v inputs (q of every head, then k, then v) and its MLP input, then the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

QKV = ("q", "k", "v")


@dataclass(frozen=True)
class Graph:
    """The graph of a model of ``n_layers`` layers of ``n_heads`` heads (and MLPs unless ``attn_only``)."""

    n_layers: int
    n_heads: int
    has_mlp: bool = True
    parallel_attn_mlp: bool = False

    @classmethod
    def of(cls, cfg: Any) -> Graph:
        """From a HookedTransformerConfig, a Bridge's cfg, or the model's shape before it is built."""
        return cls(int(cfg.n_layers), int(cfg.n_heads), not bool(getattr(cfg, "attn_only", False)),
                   bool(getattr(cfg, "parallel_attn_mlp", False)))

    # --- senders ---------------------------------------------------------------------------
    @property
    def per_layer_senders(self) -> int:
        return self.n_heads + int(self.has_mlp)

    @property
    def n_senders(self) -> int:
        return 1 + self.n_layers * self.per_layer_senders

    def head_sender(self, layer: int, head: int = 0) -> int:
        return 1 + layer * self.per_layer_senders + head

    def mlp_sender(self, layer: int) -> int:
        return 1 + layer * self.per_layer_senders + self.n_heads

    @cached_property
    def sender_names(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{head}" for head in range(self.n_heads)]
            names += [f"m{layer}"] if self.has_mlp else []
        return names

    # --- receivers -------------------------------------------------------------------------
    @property
    def per_layer_receivers(self) -> int:
        return 3 * self.n_heads + int(self.has_mlp)

    @property
    def n_receivers(self) -> int:
        return self.n_layers * self.per_layer_receivers + 1

    def qkv_receiver(self, layer: int, which: str, head: int = 0) -> int:
        return layer * self.per_layer_receivers + QKV.index(which) * self.n_heads + head

    def mlp_receiver(self, layer: int) -> int:
        return layer * self.per_layer_receivers + 3 * self.n_heads

    @property
    def logits_receiver(self) -> int:
        return self.n_receivers - 1

    @cached_property
    def receiver_names(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{head}<{which}>" for which in QKV for head in range(self.n_heads)]
            names += [f"m{layer}"] if self.has_mlp else []
        return names + ["logits"]

    def receiver_prefix(self, receiver: int) -> int:
        """How many senders (a prefix of the numbering) a receiver reads."""
        if receiver == self.logits_receiver:
            return self.n_senders
        layer, offset = divmod(receiver, self.per_layer_receivers)
        if offset < 3 * self.n_heads or self.parallel_attn_mlp:
            return self.head_sender(layer)
        return self.mlp_sender(layer)

    @cached_property
    def receiver_node(self) -> Tensor:
        """For each receiver, the sender that is the same node (its head or MLP); -1 for the logits."""
        import torch

        nodes = torch.full((self.n_receivers,), -1, dtype=torch.long)
        for layer in range(self.n_layers):
            for which in QKV:
                for head in range(self.n_heads):
                    nodes[self.qkv_receiver(layer, which, head)] = self.head_sender(layer, head)
            if self.has_mlp:
                nodes[self.mlp_receiver(layer)] = self.mlp_sender(layer)
        return nodes

    @cached_property
    def valid(self) -> Tensor:
        """[n_senders, n_receivers] bool: the edges that exist."""
        import torch

        prefixes = torch.tensor([self.receiver_prefix(r) for r in range(self.n_receivers)])
        return torch.arange(self.n_senders)[:, None] < prefixes[None, :]

    @property
    def n_edges(self) -> int:
        return int(self.valid.sum())

    def edge_names(self, mask: Tensor) -> list[str]:
        """``sender->receiver`` for the edges of ``mask`` (for a circuit's JSON, not for scoring)."""
        senders, receivers = mask.nonzero(as_tuple=True)
        return [f"{self.sender_names[s]}->{self.receiver_names[r]}" for s, r in zip(senders.tolist(), receivers.tolist())]

    # --- where each node is read and written in a TransformerLens model ----------------------
    # Senders: blocks.0.hook_resid_pre (embeddings, positional ones included), each head's
    # output z @ W_O (its share of attn_out, without b_O, which no edge carries), hook_mlp_out.
    # Receivers: the split q/k/v inputs (use_split_qkv_input), hook_mlp_in (use_hook_mlp_in) and
    # the last block's resid_post, which only the final LayerNorm and unembedding read.
    @staticmethod
    def input_hook() -> str:
        return "blocks.0.hook_resid_pre"

    def final_hook(self) -> str:
        return f"blocks.{self.n_layers - 1}.hook_resid_post"


def head_outputs(z: Tensor, w_o: Tensor) -> Tensor:
    """Each head's output in the residual stream: [batch, pos, head, d_head] x [head, d_head, d_model]."""
    import torch

    return torch.einsum("bphd,hdm->bphm", z, w_o.to(z.dtype))
