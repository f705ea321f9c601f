"""Attribution graphs: the direct effects between the nodes of a prompt's local replacement model.

Ameisen et al. 2025 ("Circuit Tracing", methods, section 3); the algorithm as
circuit-tracer 0.5.0 implements it (attribution/attribute.py and
context_transformerlens.py, read and rewritten here; tests/reference_data holds its
output on a tiny model, and a test compares). Nodes, in adjacency order: active
features (layer, position, feature; lexicographic), error nodes (layer-major), token
embeddings (one a position), logits (the most probable tokens, up to ``max_n_logits``
covering ``desired_logit_prob``). ``adjacency[target, source]`` is the source's direct
effect on the target: for a feature target, on its pre-activation (the encoder
direction at its MLP input); for a logit, on that logit less the mean logit.

How: one forward pass over ``batch_size`` copies of the prompt in which attention
patterns and LayerNorm scales are detached (frozen) and each MLP output is cut from its
input (only a skip connection's linear path stays). Then, per batch of targets, one
backward pass with each copy's gradient set to its target's direction at the target's
place; the gradient reaching each MLP output (and the embeddings) is contracted with
the sources written there (a_s * W_dec[s], error vectors, token embeddings). Memory is
the adjacency plus one batch of copies, whatever the number of features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from interp_pipeline.transcoders.replacement import PromptRun, run_prompt, skip_of


_UNEMBED_IN = "unembed.hook_in"  # a TransformerBridge's; HookedTransformer has no such hook


@dataclass
class AttributionGraph:
    tokens: torch.Tensor  # [n_pos]
    active_features: torch.Tensor  # [n_features, 3]: layer, position, feature
    activation_values: torch.Tensor  # [n_features]
    logit_tokens: torch.Tensor  # [n_logits]
    logit_probabilities: torch.Tensor  # [n_logits]
    adjacency: torch.Tensor  # [n_nodes, n_nodes]: rows targets, columns sources
    n_layers: int
    str_tokens: list[str] = field(default_factory=list)
    logit_strs: list[str] = field(default_factory=list)
    prompt: str = ""  # the tokens decoded

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.active_features.shape[0])

    @property
    def n_logits(self) -> int:
        return int(self.logit_tokens.shape[0])

    def slices(self) -> dict[str, slice]:
        f, e = self.n_features, self.n_features + self.n_layers * self.n_pos
        t = e + self.n_pos
        return {"features": slice(0, f), "errors": slice(f, e), "tokens": slice(e, t),
                "logits": slice(t, t + self.n_logits)}


def salient_logits(logits: torch.Tensor, unembed: torch.Tensor, max_n_logits: int,
                   desired_logit_prob: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token ids, probabilities, demeaned unembedding directions): the fewest top tokens, at most
    ``max_n_logits``, whose probabilities add up to ``desired_logit_prob``."""
    probs = torch.softmax(logits.float(), dim=-1)
    top_p, top_idx = torch.topk(probs, min(max_n_logits, probs.shape[0]))
    wanted = torch.tensor(desired_logit_prob, device=top_p.device)
    cutoff = int(torch.searchsorted(torch.cumsum(top_p, 0), wanted)) + 1
    ids = top_idx[:cutoff]
    directions = (unembed[:, ids] - unembed.mean(dim=-1, keepdim=True)).T  # [n_logits, d_model]
    return ids, probs[ids], directions


class _Backward:
    """The batched forward pass with its freezes, and backward passes that fill rows of direct effects."""

    def __init__(self, model: Any, transcoders: Any, run: PromptRun, batch_size: int):
        self.model, self.run = model, run
        n_layers, n_pos = run.mlp_in.shape[:2]
        active = run.activations.nonzero()  # [n_features, 3], lexicographic
        self.active = active
        self.values = run.activations[active[:, 0], active[:, 1], active[:, 2]]
        self.decoders = torch.stack([transcoders[int(l)].W_dec[int(f)] for l, _, f in active]) * self.values[:, None] \
            if len(active) else torch.zeros(0, model.cfg.d_model)
        self.encoders = torch.stack([transcoders[int(l)].W_enc[:, int(f)] for l, _, f in active]) \
            if len(active) else torch.zeros(0, model.cfg.d_model)
        self.n_layers, self.n_pos = n_layers, n_pos
        self.n_sources = len(active) + (n_layers + 1) * n_pos
        self.targets: list[torch.Tensor] = []  # per layer, and the final normalised residual
        self.buffer: torch.Tensor | None = None
        self._forward(transcoders, batch_size)

    def _read(self, rows: slice | torch.Tensor, vectors: torch.Tensor, positions: torch.Tensor | None) -> Any:
        def hook(grad: torch.Tensor) -> None:
            g = grad if positions is None else grad[:, positions]  # [batch, n, d_model]
            self.buffer[rows] += torch.einsum("bnd,nd->nb", g.to(vectors.dtype), vectors)
        return hook

    def _forward(self, transcoders: Any, batch_size: int) -> None:
        model, run = self.model, self.run
        tokens = run.tokens[None].expand(batch_size, -1)
        feature_layers = self.active[:, 0]
        error_start = len(self.active)
        live_in: dict[int, torch.Tensor] = {}

        def detach(act: torch.Tensor, hook: Any) -> torch.Tensor:
            return act.detach()

        def embed(act: torch.Tensor, hook: Any) -> torch.Tensor:
            act = act.detach().requires_grad_(True)
            start = error_start + self.n_layers * self.n_pos
            # The embedding nodes' vectors are hook_embed's own values: W_E[tokens] on GPT-2, but Gemma
            # multiplies them by sqrt(d_model) before the hook (tests/transcoders/test_gemma3_hooks.py).
            act.register_hook(self._read(slice(start, start + self.n_pos), act[0].detach().clone(), None))
            return act

        def mlp_in(act: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
            live_in[layer] = act
            self.targets.append(act)
            return act

        def mlp_out(act: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
            skip = skip_of(transcoders[layer], live_in.pop(layer))
            out = skip + (act - skip).detach()  # the value of the model's MLP output; only the skip is linear
            mask = feature_layers == layer
            if mask.any():
                idx = mask.nonzero()[:, 0]
                out.register_hook(self._read(idx, self.decoders[idx], self.active[idx, 1]))
            rows = slice(error_start + layer * self.n_pos, error_start + (layer + 1) * self.n_pos)
            out.register_hook(self._read(rows, run.errors[layer], None))
            return out

        hooks = [(name, detach) for name in model.hook_dict
                 if name.endswith(("hook_scale", "attn.hook_pattern"))]
        hooks.append(("hook_embed", embed))
        for layer in range(self.n_layers):
            hooks.append((transcoders.hook_in(layer), lambda a, hook, layer=layer: mlp_in(a, hook, layer)))
            hooks.append((transcoders.hook_out(layer), lambda a, hook, layer=layer: mlp_out(a, hook, layer)))
        unembed_in: list[torch.Tensor] = []
        if _UNEMBED_IN in model.hook_dict:
            # A TransformerBridge runs every block whatever stop_at_layer says: take the unembedding's
            # input (after the final LayerNorm, its scale frozen) from a full forward pass.
            hooks.append((_UNEMBED_IN, lambda a, hook: unembed_in.append(a)))
        with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            if _UNEMBED_IN in model.hook_dict:
                model(tokens)
                final = unembed_in[0]
            else:
                residual = model(tokens, stop_at_layer=model.cfg.n_layers)
                final = model.ln_final(residual) if hasattr(model, "ln_final") else residual
        self.targets.append(final)

    def rows(self, layers: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor,
             retain_graph: bool = True) -> torch.Tensor:
        """[len(layers), n_sources]: the direct effects on each target (layer n_layers: the logits)."""
        batch = self.targets[0].shape[0]
        device = self.targets[0].device
        self.buffer = torch.zeros(self.n_sources, batch, dtype=vectors.dtype, device=device)
        layers, positions, vectors = layers.to(device), positions.to(device), vectors.to(device)
        index = torch.arange(len(layers), device=device)
        handles = []
        for layer in layers.unique().tolist():
            mask = layers == layer

            def inject(grad: torch.Tensor, b=index[mask], p=positions[mask], v=vectors[mask]) -> torch.Tensor:
                grad = grad.clone()
                grad[b, p] = v.to(grad.dtype)
                return grad
            handles.append(self.targets[int(layer)].register_hook(inject))
        try:
            last = self.targets[int(layers.max())]
            last.backward(gradient=torch.zeros_like(last), retain_graph=retain_graph)
        finally:
            for handle in handles:
                handle.remove()
        out, self.buffer = self.buffer.T[:len(layers)].cpu(), None
        return out


@contextlib.contextmanager
def _frozen_parameters(model: Any, transcoders: Any) -> Iterator[None]:
    """No gradients for weights (only activations carry them); put back afterwards."""
    params = list(model.parameters()) + [p for tc in transcoders.values() for p in tc.parameters()]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)


def influence_order(rows: torch.Tensor, row_nodes: torch.Tensor, logit_probabilities: torch.Tensor,
                    n_features: int, max_iter: int = 128) -> torch.Tensor:
    """Features by their influence on the logits through the rows computed so far (most first)."""
    from interp_pipeline.transcoders.graph import normalize_rows

    normalized = normalize_rows(rows)
    weights = torch.zeros(rows.shape[1])
    weights[-len(logit_probabilities):] = logit_probabilities
    influence = torch.zeros(rows.shape[1])
    for _ in range(max_iter):
        weights = weights[row_nodes] @ normalized
        if not weights.any():
            break
        influence += weights
    return torch.argsort(influence[:n_features], descending=True)


def attribute(model: Any, transcoders: Any, tokens: torch.Tensor, *, max_n_logits: int = 10,
              desired_logit_prob: float = 0.95, batch_size: int = 64,
              max_feature_nodes: int | None = None) -> AttributionGraph:
    """The attribution graph of ``tokens`` (1-D, BOS first) under ``transcoders`` (one per layer)."""
    from interp_pipeline.transcoders.replacement import check_transcoders

    check_transcoders(model, transcoders)
    tokens = tokens.to(next(model.parameters()).device)
    with _frozen_parameters(model, transcoders):
        run = run_prompt(model, transcoders, tokens)
        ids, probs, directions = salient_logits(run.logits[-1], model.W_U, max_n_logits, desired_logit_prob)
        engine = _Backward(model, transcoders, run, batch_size)
        n_feat, n_logits, n_layers, n_pos = len(engine.active), len(ids), engine.n_layers, engine.n_pos
        keep = n_feat if max_feature_nodes is None else min(max_feature_nodes, n_feat)
        n_sources = engine.n_sources
        # One buffer for every row computed (logits first, then features in the order visited), with
        # columns for all sources and the logits: memory is the adjacency's, whatever the candidates.
        rows = torch.zeros(n_logits + keep, n_sources + n_logits)
        row_nodes = torch.zeros(n_logits + keep, dtype=torch.long)
        filled = 0
        for d in directions.split(batch_size):
            rows[filled:filled + len(d), :n_sources] = engine.rows(torch.full((len(d),), n_layers),
                                                                   torch.full((len(d),), n_pos - 1), d)
            row_nodes[filled:filled + len(d)] = torch.arange(filled, filled + len(d)) + n_sources
            filled += len(d)
        done = torch.zeros(n_feat, dtype=torch.bool)
        while int(done.sum()) < keep:
            if keep == n_feat:
                pending = torch.arange(n_feat)
            else:  # the most influential features first, by the rows computed so far (circuit-tracer's order)
                order = influence_order(rows[:filled], row_nodes[:filled], probs, n_feat)
                pending = order[~done[order]][:min(4 * batch_size, keep - int(done.sum()))]
            for chunk in pending.split(batch_size):
                rows[filled:filled + len(chunk), :n_sources] = engine.rows(
                    engine.active[chunk, 0], engine.active[chunk, 1], engine.encoders[chunk])
                row_nodes[filled:filled + len(chunk)] = chunk
                filled += len(chunk)
                done[chunk] = True
    selected = done.nonzero()[:, 0]
    columns = torch.cat([selected, torch.arange(n_feat, n_sources)])
    n_nodes = len(selected) + (n_layers + 1) * n_pos + n_logits
    feature_order = row_nodes[n_logits:filled].argsort()  # rows of the selected features, by feature index
    adjacency = torch.zeros(n_nodes, n_nodes)
    adjacency[:len(selected), :len(columns)] = rows[n_logits:filled][feature_order][:, columns]
    adjacency[-n_logits:, :len(columns)] = rows[:n_logits, columns]
    del rows
    tokenizer = getattr(model, "tokenizer", None)
    return AttributionGraph(
        tokens=tokens.cpu(), active_features=engine.active[selected].cpu(),
        activation_values=engine.values[selected].detach().cpu(), logit_tokens=ids.cpu(),
        logit_probabilities=probs.detach().cpu(), adjacency=adjacency, n_layers=n_layers,
        str_tokens=model.to_str_tokens(tokens) if tokenizer is not None else [str(int(t)) for t in tokens],
        logit_strs=[model.to_string(torch.tensor([int(i)])) if tokenizer is not None else str(int(i)) for i in ids],
        prompt=model.to_string(tokens.cpu()) if tokenizer is not None else " ".join(str(int(t)) for t in tokens))
