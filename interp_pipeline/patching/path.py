"""Path patching (Wang et al. 2022): the effect of each sender head through one path only.

For every sender head, in the same direction as the activation grids (corrupted
run, clean activations patched in):

1. run the corrupted prompts with the sender's output (``hook_z``) set to its clean
   value and every other head's output frozen at its corrupted value, so the
   change reaches later layers only through the residual stream and the MLPs
   (which are recomputed, as in Wang et al. and ARENA's replication);
2. receivers ``final``: read the metric off that run's logits (the sender's
   direct path to the output, plus sender -> MLPs -> output);
   receivers heads: take their ``input`` (``hook_q``, ``hook_k`` or ``hook_v``)
   from that run, patch it into a plain corrupted run, and read the metric.

A receiver ``[layer, head]`` indexes its input hook's head axis: a query head for ``q``; for ``k`` and
``v`` on a grouped-query model (Llama, Gemma 3) a key/value head (below ``n_key_value_heads``), whose
patch reaches every query head of its group (see :func:`parse_receivers`).

A sender in a layer at or after every receiver has no path to them; its value is
the corrupted run's, and is filled in without a forward pass. Senders of one
layer run ``batch_size_prompts // n_prompts`` to a forward pass, starting at their layer
(patching/forward.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError, one_of
from interp_pipeline.patching.grids import key_value_heads

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.patching.engine import PatchingSetup

INPUTS = ("q", "k", "v")


@dataclass(frozen=True)
class Receivers:
    """``heads`` None means the final residual stream (the logits)."""

    heads: tuple[tuple[int, int], ...] | None = None
    input: str = "q"
    name: str = ""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.heads is None:
            return "path_to_final"
        return f"path_to_{self.input}_" + "_".join(f"L{layer}H{head}" for layer, head in self.heads)


def parse_receivers(entry: Any, cfg: Any | None, key: str) -> Receivers:
    """One ``patching.path`` entry: ``{receivers: final}`` or ``{receivers: [[9, 9], ...], input: q}``."""
    if not isinstance(entry, dict) or "receivers" not in entry:
        raise ConfigError(key, f"expected {{receivers: final}} or {{receivers: [[layer, head], ...], input: q}}, "
                               f"found {entry!r}")
    unknown = set(entry) - {"receivers", "input", "name"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "expected one of input, name, receivers")
    receivers, name = entry["receivers"], str(entry.get("name") or "")
    if receivers == "final":
        if "input" in entry:
            raise ConfigError(f"{key}.input", "applies to receiver heads, not to receivers: final")
        return Receivers(None, name=name)
    if entry.get("input", "q") not in INPUTS:
        raise ConfigError(f"{key}.input", f"expected one of {one_of(INPUTS)}, found {entry.get('input')!r}")
    if not isinstance(receivers, (list, tuple)) or not receivers:
        raise ConfigError(f"{key}.receivers", f"expected 'final' or a list of [layer, head], found {receivers!r}")
    heads, n_heads, note = [], getattr(cfg, "n_heads", None), ""
    if cfg is not None and entry.get("input", "q") != "q":
        # A k/v receiver is a head of hook_k/hook_v, as the head_k/head_v grids' head axis is: on
        # grouped-query attention a key/value head, whose patch reaches every query head of its group.
        # Naming a query head instead would promise a precision the patch cannot have (the query heads
        # of a group share one key/value head and would be the same receiver) and would not line up
        # with the grids, which TransformerLens indexes by key/value head.
        n_heads = key_value_heads(cfg)
        if n_heads != cfg.n_heads:
            note = f" (a key/value head: this model has n_key_value_heads={n_heads})"
    for index, head in enumerate(receivers):
        ok = isinstance(head, (list, tuple)) and len(head) == 2 and all(isinstance(v, int) for v in head)
        if ok and cfg is not None:
            ok = 0 <= head[0] < cfg.n_layers and 0 <= head[1] < n_heads
        if not ok:
            bounds = f" with layer < {cfg.n_layers} and head < {n_heads}{note}" if cfg is not None else ""
            raise ConfigError(f"{key}.receivers[{index}]", f"expected [layer, head]{bounds}, found {head!r}")
        heads.append((int(head[0]), int(head[1])))
    return Receivers(tuple(heads), entry.get("input", "q"), name)


def path_patch(receivers: Receivers, setup: PatchingSetup, on_forward: Callable[[], None] = lambda: None) -> Tensor:
    """The metric for each sender head's path to ``receivers``: shape [n_layers, n_heads].

    ``setup`` must hold clean and corrupted ``hook_z`` of every layer (see
    :func:`hook_names`) and, for receiver heads, the clean cache is not needed for
    their inputs: those come from step 1.
    """
    import torch

    cfg = setup.model.cfg
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    sums = torch.zeros(n_layers, n_heads, dtype=torch.float64)  # [layer, head]: per-prompt metric, summed
    last = n_layers if receivers.heads is None else max(layer for layer, _ in receivers.heads)
    with torch.inference_mode():
        for layer in range(n_layers):
            if layer >= last:
                sums[layer] = setup.metric.corrupted_value * setup.n_prompts
                continue
            for rows in setup.prompt_groups():
                per_pass = max(1, setup.batch_size_prompts // len(rows))
                for start in range(0, n_heads, per_pass):
                    senders = list(range(start, min(n_heads, start + per_pass)))
                    # [len(senders)]: one forward with a copy of the prompts per sender
                    sums[layer, senders] += _sender_values(setup, receivers, layer, senders, rows).double().cpu()
                    on_forward()
    return torch.as_tensor(setup.metric.finish(sums / setup.n_prompts), dtype=torch.float32)


def hook_names(n_layers: int) -> set[str]:
    """Activations path patching needs from both the clean and the corrupted run."""
    return {f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)}


def _sender_values(setup: PatchingSetup, receivers: Receivers, layer: int, senders: Sequence[int], rows: Tensor) -> Tensor:
    """Summed per-prompt metric values for ``senders`` (heads of ``layer``), one copy each."""
    n_layers = setup.model.cfg.n_layers
    copies = len(senders)
    positions = setup.metric.readout_positions(rows).repeat(copies, 1)  # [copies * prompts, readouts]

    def freeze(z_layer: int) -> Callable[[Tensor, Any], Tensor]:
        frozen = setup.corrupted_cache[f"blocks.{z_layer}.attn.hook_z"][rows]  # [prompts, pos, head, d_head]

        def hook(z: Tensor, hook: Any) -> Tensor:
            view = z.unflatten(0, (copies, len(rows)))  # [copies, prompts, pos, head, d_head]
            view[:] = frozen
            if z_layer == layer:
                clean = setup.clean_cache[f"blocks.{layer}.attn.hook_z"][rows]  # [prompts, pos, head, d_head]
                for j, head in enumerate(senders):
                    view[j, :, :, head] = clean[:, :, head]
            return z

        return hook

    freezing = [(f"blocks.{z_layer}.attn.hook_z", freeze(z_layer)) for z_layer in range(layer, n_layers)]
    if receivers.heads is None:
        logits = setup.forward.run(layer, rows, copies, freezing, positions)
        return setup.metric.per_prompt(logits, rows).view(copies, len(rows)).sum(1)  # [copies]

    # Step 1: the receivers' inputs with the sender patched and the other heads frozen.
    downstream = [(r_layer, head) for r_layer, head in receivers.heads if r_layer > layer]
    captured: dict[str, Tensor] = {}
    by_layer = {r_layer: [h for lay, h in downstream if lay == r_layer] for r_layer, _ in downstream}
    input_names = {r_layer: f"blocks.{r_layer}.attn.hook_{receivers.input}" for r_layer in by_layer}

    # Hooks keyed by the name asked for: a TransformerBridge's hook.name may be its own alias.
    def capture(name: str) -> Callable[[Tensor, Any], Tensor]:
        def hook(activation: Tensor, hook: Any) -> Tensor:
            captured[name] = activation.clone()  # [copies * prompts, pos, head, d_head]
            return activation

        return hook

    setup.forward.run(layer, rows, copies, [*freezing, *((n, capture(n)) for n in input_names.values())],
                      positions[:, :1])

    # Step 2: a plain corrupted run with only the receivers' inputs replaced.
    def replace(r_layer: int) -> Callable[[Tensor, Any], Tensor]:
        name = input_names[r_layer]

        def hook(activation: Tensor, hook: Any) -> Tensor:
            for head in by_layer[r_layer]:
                activation[:, :, head] = captured[name][:, :, head]  # [copies * prompts, pos, d_head]
            return activation

        return hook

    first = min(by_layer)
    logits = setup.forward.run(first, rows, copies, [(n, replace(r_layer)) for r_layer, n in input_names.items()],
                               positions)
    return setup.metric.per_prompt(logits, rows).view(copies, len(rows)).sum(1)  # [copies]


def check_path_entries(entries: Sequence[Any], key: str = "patching.path") -> list[Receivers]:
    """Shape checks before the model loads (bounds are checked again against the model)."""
    return [parse_receivers(entry, None, f"{key}[{index}]") for index, entry in enumerate(entries or [])]
