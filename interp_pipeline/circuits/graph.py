"""The computational graph that edge-level circuit discovery scores: nodes, edges, hook names.

The graph is the one of ACDC (Conmy et al. 2023) and Edge Attribution Patching (Syed et al.
2023), as hannamw/EAP-IG (Hanna et al. 2024) and MIB (Mueller et al. 2025) lay it out:

- senders (nodes with an output): the input embeddings, every attention head, every MLP;
- receivers (node inputs): each head's query input, each key/value head's key and value input, each
  MLP's input, the logits;
- an edge: a sender's output as it reaches one receiver through the residual stream. A receiver
  reads every sender of an earlier layer; an MLP also reads the heads of its own layer (attention
  runs first in a block, unless the model runs them in parallel).

Everything is a tensor indexed [sender, receiver] (``valid`` marks the edges that exist), so
GPT-2 small's 32,491 edges are one 157 x 445 matrix and nothing per edge is a Python object.
Senders are numbered input, then per layer its heads and its MLP; receivers per layer its q, k, v
inputs (q of every head, then k of every key/value head, then v) and its MLP input, then the logits.

Grouped-query attention (Llama, Gemma 3, ...: ``n_key_value_heads`` < ``n_heads``): a layer computes
one key and one value per key/value head, shared by its group of ``n_heads / n_key_value_heads``
query heads, so a k or v receiver is a key/value head's input and reads the residual stream once
for its whole group; q receivers stay one per query head. That is the model's own computation and
what TransformerLens hooks on both model kinds: with ``use_split_qkv_input``, hook_k_input and
hook_v_input are [batch, pos, n_key_value_heads, d_model] on a HookedTransformer (3.9's
components/transformer_block.py) and on a TransformerBridge (model_bridge/generalized_components/
position_embeddings_attention.py, 3.9 and 4.3 alike). hannamw/EAP-IG (README.md, "What about models
with Grouped Query Attention?"; src/eap/attribute.py and evaluate.py assert it) and MIB's circuit
track (hannamw/MIB-circuit-track, run_attribution.py and run_evaluation.py) instead set
``ungroup_grouped_query_attention``, which gives every query head its own copy of the key and value
inputs: more edges (a key edge into one query head of a group alone, an input the grouped model does
not have) and a graph a Bridge cannot run (it has no such flag). We follow the model; a
HookedTransformer whose ``cfg.ungroup_grouped_query_attention`` is set gets their ungrouped graph
(its hooks then have a head per query head), so edge counts can be compared with MIB's. With as
many key/value heads as heads, both are the graph above.
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
    """The graph of a model of ``n_layers`` layers of ``n_heads`` heads (and MLPs unless ``attn_only``)
    sharing ``n_kv_heads`` key/value heads (0: one per head, no grouping)."""

    n_layers: int
    n_heads: int
    has_mlp: bool = True
    parallel_attn_mlp: bool = False
    n_kv_heads: int = 0

    def __post_init__(self) -> None:
        kv = self.n_kv_heads or self.n_heads
        if self.n_heads % kv:
            raise ValueError(f"n_heads ({self.n_heads}) is not a multiple of n_kv_heads ({kv})")
        object.__setattr__(self, "n_kv_heads", kv)  # so Graph(2, 4) == Graph(2, 4, n_kv_heads=4)

    @classmethod
    def of(cls, cfg: Any) -> Graph:
        """From a HookedTransformerConfig, a Bridge's cfg, or the model's shape before it is built."""
        per_layer = getattr(cfg, "per_layer_num_key_value_heads", None)  # a Bridge of Gemma 4, say
        if per_layer and len(set(per_layer)) > 1:
            from interp_pipeline.common.errors import ConfigError

            raise ConfigError("inputs.model", f"expected the same number of key/value heads in every layer (the edge "
                                              f"graph has one shape per layer), found {list(per_layer)}")
        # The heads of hook_k / hook_v, as the patching grids count them (an ungrouped HookedTransformer's
        # cfg, or the shape pre-flight reads from it, gives each query head its own copy).
        from interp_pipeline.patching.grids import key_value_heads

        return cls(int(cfg.n_layers), int(cfg.n_heads), not bool(getattr(cfg, "attn_only", False)),
                   bool(getattr(cfg, "parallel_attn_mlp", False)), int(key_value_heads(cfg)))

    @property
    def grouped(self) -> bool:
        return self.n_kv_heads < self.n_heads

    def kv_head_of(self, head: int) -> int:
        """The key/value head a query head reads (repeat_interleave's order, as TransformerLens and HF's repeat_kv)."""
        return head // (self.n_heads // self.n_kv_heads)

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
    def qkv_count(self, which: str) -> int:
        """Receivers of a layer's q (one per head), k or v (one per key/value head) inputs."""
        return self.n_heads if which == "q" else self.n_kv_heads

    @property
    def per_layer_qkv(self) -> int:
        return self.n_heads + 2 * self.n_kv_heads

    @property
    def per_layer_receivers(self) -> int:
        return self.per_layer_qkv + int(self.has_mlp)

    @property
    def n_receivers(self) -> int:
        return self.n_layers * self.per_layer_receivers + 1

    def qkv_receiver(self, layer: int, which: str, head: int = 0) -> int:
        """``head``: a query head for q, a key/value head for k and v."""
        before = sum(self.qkv_count(w) for w in QKV[:QKV.index(which)])
        return layer * self.per_layer_receivers + before + head

    def mlp_receiver(self, layer: int) -> int:
        return layer * self.per_layer_receivers + self.per_layer_qkv

    @property
    def logits_receiver(self) -> int:
        return self.n_receivers - 1

    @cached_property
    def receiver_names(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            for which in QKV:
                # hannamw/EAP-IG's and MIB's names; a shared key/value head is a{layer}.kv{index}<k>.
                node = "kv" if which != "q" and self.grouped else "h"
                names += [f"a{layer}.{node}{head}<{which}>" for head in range(self.qkv_count(which))]
            names += [f"m{layer}"] if self.has_mlp else []
        return names + ["logits"]

    def receiver_prefix(self, receiver: int) -> int:
        """How many senders (a prefix of the numbering) a receiver reads."""
        if receiver == self.logits_receiver:
            return self.n_senders
        layer, offset = divmod(receiver, self.per_layer_receivers)
        if offset < self.per_layer_qkv or self.parallel_attn_mlp:
            return self.head_sender(layer)
        return self.mlp_sender(layer)

    @cached_property
    def receiver_nodes(self) -> Tensor:
        """[n_senders, n_receivers] bool: the nodes each receiver is an input of: a query input its head's,
        a key or value input every head of its key/value group, an MLP input its MLP; none for the logits
        (which pruning and greedy growth keep always)."""
        import torch

        nodes = torch.zeros(self.n_senders, self.n_receivers, dtype=torch.bool)
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                sender = self.head_sender(layer, head)
                nodes[sender, self.qkv_receiver(layer, "q", head)] = True
                for which in ("k", "v"):
                    nodes[sender, self.qkv_receiver(layer, which, self.kv_head_of(head))] = True
            if self.has_mlp:
                nodes[self.mlp_sender(layer), self.mlp_receiver(layer)] = True
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
