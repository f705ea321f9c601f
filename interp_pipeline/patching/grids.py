"""The activation-patching grids a config can name, and what each one patches.

Each grid is TransformerLens's own definition: the activation name, the axes it
iterates over and the patch setter from ``transformer_lens.patching`` (reused, so a
patch here writes exactly what TransformerLens's writes). ``tl_function`` names
the TransformerLens function that computes the same grid one forward at a time;
the tests and the benchmark compare against it. Composite grids stack several
(``block_every`` is TransformerLens's ``get_act_patch_block_every``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class Grid:
    name: str
    act: str  # TransformerLens activation name: resid_pre, z, pattern, ... (utils.get_act_name)
    axes: tuple[str, ...]  # index axes, layer first, in TransformerLens's order
    setter: str  # patch setter in transformer_lens.patching
    tl_function: str | None  # the equivalent function in transformer_lens.patching

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names of the result array."""
        return tuple("head" if axis == "head_index" else axis for axis in self.axes)

    def patch_setter(self) -> Any:
        from transformer_lens import patching

        return getattr(patching, self.setter)

    def hook_name(self, layer: int) -> str:
        # transformer_lens.utilities (not .utils, which TransformerLens 4 removed): the same function on 3 and 4.
        from transformer_lens.utilities.components_utils import get_act_name

        return get_act_name(self.act, layer)

    def axis_sizes(self, cfg: Any, n_pos: int) -> tuple[int, ...]:
        heads = key_value_heads(cfg) if self.act in ("k", "v") else cfg.n_heads
        sizes = {"layer": cfg.n_layers, "pos": n_pos, "dest_pos": n_pos, "head": heads, "head_index": heads}
        return tuple(sizes[axis] for axis in self.axes)


def key_value_heads(cfg: Any) -> int:
    """The heads of ``hook_k`` and ``hook_v``: what a k/v grid's head axis and a k/v path receiver index.

    On grouped-query attention (Llama, Gemma 3: ``n_key_value_heads`` < ``n_heads``) TransformerLens's
    hooks hold the shared key/value heads, on a HookedTransformer and on a TransformerBridge alike;
    a HookedTransformer's ``ungroup_grouped_query_attention`` repeats them before the hooks, one copy per
    query head (a Bridge's cfg leaves it False and its hooks ignore it; TransformerLens 4 has no such
    field). ``cfg``: a model's cfg or a models.shape.ModelShape."""
    grouped = getattr(cfg, "n_key_value_heads", None)
    if not grouped or getattr(cfg, "ungroup_grouped_query_attention", False):
        return cfg.n_heads
    return grouped


_LAYER_POS = ("layer", "pos")
_RESIDUAL = {
    "resid_pre": "get_act_patch_resid_pre",
    "resid_mid": "get_act_patch_resid_mid",
    "resid_post": None,  # TransformerLens has no function for it; generic_activation_patch does it
    "attn_out": "get_act_patch_attn_out",
    "mlp_out": "get_act_patch_mlp_out",
}
GRIDS: dict[str, Grid] = {
    name: Grid(name, name, _LAYER_POS, "layer_pos_patch_setter", tl) for name, tl in _RESIDUAL.items()
}
for _part, _act in (("out", "z"), ("q", "q"), ("k", "k"), ("v", "v")):
    GRIDS[f"head_{_part}"] = Grid(f"head_{_part}", _act, ("layer", "head"), "layer_head_vector_patch_setter",
                                    f"get_act_patch_attn_head_{_part}_all_pos")
    GRIDS[f"head_{_part}_by_pos"] = Grid(f"head_{_part}_by_pos", _act, ("layer", "pos", "head"),
                                           "layer_pos_head_vector_patch_setter", f"get_act_patch_attn_head_{_part}_by_pos")
GRIDS["head_pattern"] = Grid("head_pattern", "pattern", ("layer", "head_index"), "layer_head_pattern_patch_setter",
                               "get_act_patch_attn_head_pattern_all_pos")
GRIDS["head_pattern_by_pos"] = Grid("head_pattern_by_pos", "pattern", ("layer", "head_index", "dest_pos"),
                                      "layer_head_pos_pattern_patch_setter", "get_act_patch_attn_head_pattern_by_pos")

# Several grids stacked along a leading "component" dimension, as TransformerLens's
# *_every functions stack them.
COMPOSITES: dict[str, tuple[str, ...]] = {
    "block_every": ("resid_pre", "attn_out", "mlp_out"),
    "head_all_pos_every": ("head_out", "head_q", "head_k", "head_v", "head_pattern"),
    "head_by_pos_every": ("head_out_by_pos", "head_q_by_pos", "head_k_by_pos", "head_v_by_pos", "head_pattern_by_pos"),
}
ALL_NAMES = (*GRIDS, *COMPOSITES)
_NEEDS_MLP = {"resid_mid", "mlp_out"}


def check_grid_names(names: Sequence[str], key: str = "patching.grids") -> None:
    """Unknown names, with a did-you-mean; before any model is loaded."""
    if isinstance(names, str) or not names:
        raise ConfigError(key, f"expected a non-empty list of grid names ({one_of(ALL_NAMES)}), found {names!r}")
    for index, name in enumerate(names):
        if name not in ALL_NAMES:
            raise ConfigError(f"{key}[{index}]", f"expected one of {one_of(ALL_NAMES)}, found {name!r}",
                              suggestion=did_you_mean(str(name), ALL_NAMES))
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise ConfigError(key, f"lists {', '.join(duplicates)} more than once")


def parts(name: str) -> tuple[Grid, ...]:
    """The plain grids a (possibly composite) name runs."""
    return tuple(GRIDS[p] for p in COMPOSITES.get(name, (name,)))


def result_dims(name: str) -> tuple[str, ...]:
    """Dimension names of a (possibly composite) grid's result, as run_parts stacks it."""
    grids = parts(name)
    if len(grids) == 1:
        return grids[0].dims
    return ("component", *grids[0].dims)


def run_parts(name: str, compute: Callable[[Grid], Tensor]) -> Tensor:
    """``compute`` for a named grid; composites stacked on a leading component axis as
    TransformerLens's ``*_every`` functions stack them (k and v padded to n_heads,
    patterns by position moved to [layer, pos, head])."""
    import torch

    grids = parts(name)
    if len(grids) == 1:
        return compute(grids[0])
    results: list[Tensor] = []
    for grid in grids:
        result = compute(grid)
        if grid.name == "head_pattern_by_pos":
            result = result.permute(0, 2, 1)
        if results and result.shape[-1] < results[0].shape[-1]:
            result = torch.nn.functional.pad(result, (0, results[0].shape[-1] - result.shape[-1]))
        results.append(result)
    return torch.stack(results)


def check_model_supports(names: Sequence[str], cfg: Any, key: str = "patching.grids") -> None:
    """Grids of activations the model does not have: MLP grids on attention-only models, resid_mid on
    parallel blocks (GPT-NeoX/Pythia, GPT-J: attention and MLP both read resid_pre and add to resid_post,
    so no stream lies between them and neither a HookedTransformer nor a Bridge has a hook_resid_mid).
    ``cfg``: a model's cfg or a models.shape.ModelShape."""
    attn_only, parallel = getattr(cfg, "attn_only", False), getattr(cfg, "parallel_attn_mlp", False)
    for index, name in enumerate(names):
        missing = [p.name for p in parts(name) if p.name in _NEEDS_MLP] if attn_only else []
        if missing:
            raise ConfigError(f"{key}[{index}]", f"'{name}' patches {', '.join(missing)}, and this model is "
                                                 "attention-only (it has no MLP layers)")
        if parallel and any(p.name == "resid_mid" for p in parts(name)):
            raise ConfigError(f"{key}[{index}]", f"'{name}' patches resid_mid, and this model's blocks are parallel "
                                                 "(attention and MLP both read resid_pre): it has no resid_mid")
