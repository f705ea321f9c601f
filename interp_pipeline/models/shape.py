"""What pre-flight knows about a model without its weights: sizes, hook names, hook shapes.

The runner checks every hook name, layer index, context length and SAE width before the
first stage runs (exit status 2 means "found before any work"). Those checks need the
model's shape, and a model may be trained by the pipeline or live on the hub, so the
shape comes from the config alone: the HookedTransformerConfig a source implies, a
HookedTransformer built on torch's meta device (no memory, no weights), and one meta
forward pass that records every hook's shape (on TransformerLens 4, a config-built model is a
boot_native TransformerBridge: models.from_config). Nothing here downloads anything.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_pipeline.common.errors import ConfigError, did_you_mean
from interp_pipeline.models.config import ModelConfig

# The meta forward runs this many positions: a prime that is unlikely to equal any width,
# so a hook's position axis can be told from its other axes.
PROBE_POSITIONS = 7
_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class ModelShape:
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int | None
    n_ctx: int
    d_vocab: int
    attn_only: bool
    # Every hook point's name -> its activation's shape after the batch axis, with the
    # position axis (or axes, for attention patterns) written as "pos"; None for hooks a
    # default forward does not call (hook_result unless use_attn_result, ...).
    hooks: Mapping[str, tuple[int | str, ...] | None] = field(default_factory=dict)
    tokenizer: Any = None  # a transformers tokenizer when the source has one within reach
    # The config's fields of the same names, which the patching checks (patching/grids.py) and circuits' edge
    # count read: grouped-query attention (hook_k / hook_v hold n_key_value_heads heads unless ungrouped) and
    # parallel blocks (no resid_mid).
    n_key_value_heads: int | None = None
    ungroup_grouped_query_attention: bool = False
    parallel_attn_mlp: bool = False

    def check_hook(self, key: str, hook: str) -> None:
        """``hook`` is a hook point of this model that its forward calls."""
        if hook not in self.hooks:
            raise ConfigError(key, f"expected a hook name of this model ({self.n_layers} layers"
                                   f"{', attention only' if self.attn_only else ''}), found '{hook}'",
                              suggestion=did_you_mean(hook, [h for h, s in self.hooks.items() if s is not None]))
        if self.hooks[hook] is None:
            raise ConfigError(key, f"expected a hook this model's forward calls, found '{hook}', which it never "
                                   f"calls{' (the model is attention only)' if self.attn_only else ''}")

    def check_fits_context(self, key: str, length: Any) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ConfigError(key, f"expected a positive integer, found {length!r}")
        if length > self.n_ctx:
            raise ConfigError(key, f"expected sequences of at most n_ctx={self.n_ctx} tokens, found {length}")

    def check_layer(self, key: str, layer: Any) -> None:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise ConfigError(key, f"expected a layer in 0..{self.n_layers - 1}, found {layer!r}")

    def check_head(self, key: str, head: Any) -> None:
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < self.n_heads:
            raise ConfigError(key, f"expected a head in 0..{self.n_heads - 1}, found {head!r}")

    def token_width(self, key: str, hook: str) -> list[int]:
        """The per-token shape of ``hook`` (``[d_model]``, ``[n_heads, d_head]``); refuses hooks
        with no single position axis and hooks the forward never calls (``hook_mlp_out`` of an
        attention-only model)."""
        self.check_hook(key, hook)
        shape = self.hooks[hook]
        assert shape is not None
        if not shape or shape[0] != "pos" or "pos" in shape[1:]:
            raise ConfigError(key, f"expected a hook with one activation per token, found '{hook}' of shape "
                                   f"{tuple(shape)} (attention patterns are per query and key)")
        return [int(d) for d in shape[1:]]


def _annotation_accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` has the type a HookedTransformerConfig field annotation names.

    Only the plain scalar types are judged (int, float, bool, str and their Optional);
    anything richer is left to the config's own __post_init__. None always passes: several
    fields default to None under a plain annotation (``act_fn: str = None``).
    """
    if value is None:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        return any(_annotation_accepts(arg, value) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def check_config_types(cfg: Mapping[str, Any], key: str = "cfg") -> None:
    """Each ``cfg`` value against its config field's type (``n_layers: two`` is refused)."""
    from interp_pipeline.models.from_config import field_types

    hints = field_types()
    for name, value in cfg.items():
        if name in hints and not _annotation_accepts(hints[name], value):
            expected = str(hints[name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise ConfigError(f"{key}.{name}", f"expected {expected}, found {value!r}")


def hooked_transformer_config(fields: Mapping[str, Any], key: str = "cfg") -> Any:
    """The model config (HookedTransformerConfig; TransformerBridgeConfig on TransformerLens 4) on
    the meta device; its own validation errors become ConfigErrors."""
    import torch

    from interp_pipeline.models.from_config import config_class, make_config

    check_config_types(fields, key)
    values = {k: v for k, v in fields.items() if k not in ("device", "dtype")}
    try:
        return make_config(values, device="meta", dtype=torch.float32)
    except (TypeError, ValueError, AssertionError) as error:
        raise ConfigError(key, f"not a valid {config_class().__name__}: {error}") from None


def shape_of_config(config: Any, tokenizer: Any = None) -> ModelShape:
    """Build the model on the meta device and run one meta forward to record every hook's shape."""
    import warnings

    import torch

    from interp_pipeline.models.from_config import build

    model = build(config, meta=True)
    positions = min(PROBE_POSITIONS, config.n_ctx)
    recorded: dict[int, tuple[int | str, ...]] = {}

    def record(activation: Any, hook: Any) -> None:
        # By the hook point, not its name: a TransformerBridge lists one hook point under two
        # names (HookedTransformer's alias 'hook_embed' and its own 'embed.hook_out').
        recorded[id(hook)] = tuple("pos" if d == positions else int(d) for d in activation.shape[1:])

    tokens = torch.zeros((1, positions), dtype=torch.long, device="meta")
    with torch.inference_mode(), warnings.catch_warnings():
        # A Bridge warns of the hooks its forward never calls (hook_result ...): they are recorded as None.
        warnings.filterwarnings("ignore", message=r"run_with_hooks: skipped")
        model.run_with_hooks(tokens, fwd_hooks=[(lambda name: True, record)])
    return ModelShape(
        n_layers=config.n_layers, n_heads=config.n_heads, d_model=config.d_model, d_head=config.d_head,
        d_mlp=None if config.attn_only else config.d_mlp, n_ctx=config.n_ctx, d_vocab=config.d_vocab,
        attn_only=config.attn_only, hooks={name: recorded.get(id(point)) for name, point in model.hook_dict.items()},
        tokenizer=tokenizer, n_key_value_heads=getattr(config, "n_key_value_heads", None),
        ungroup_grouped_query_attention=bool(getattr(config, "ungroup_grouped_query_attention", False)),
        parallel_attn_mlp=bool(getattr(config, "parallel_attn_mlp", False)),
    )


def shape_of_saved(directory: Path) -> ModelShape:
    """A directory models.storage saved: its config.json, and its tokenizer when there is one."""
    from interp_pipeline.models.storage import CONFIG_FILE, TOKENIZER_DIR

    fields = json.loads((directory / CONFIG_FILE).read_text())
    tokenizer = None
    if (directory / TOKENIZER_DIR).is_dir():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory / TOKENIZER_DIR))
    return shape_of_config(hooked_transformer_config(fields, key="path"), tokenizer)


def shape_of_pretrained(name: str, *, hf: bool, revision: str | None = None) -> ModelShape | None:
    """A hub or local model's shape from its config.json alone, as TransformerLens converts it.

    For ``hf`` (TransformerBridge in compatibility mode) the hook names are those of the
    equivalent HookedTransformer, which is what compatibility mode exposes. None when the
    config cannot be had without a download or TransformerLens cannot convert it: pre-flight
    then leaves the checks to the stages.
    """
    from interp_pipeline.common.tl_version import has_hooked_transformer

    if not has_hooked_transformer():
        return None  # TransformerLens 4 has no HookedTransformer equivalent to convert to: the stages check
    from transformer_lens import loading_from_pretrained as loading

    try:
        if hf:
            config = _bridge_equivalent_config(name, revision)
        else:
            config = loading.get_pretrained_model_config(name, revision=revision, device="meta")
    except Exception:  # not cached, an architecture TransformerLens cannot convert, ...: no shape
        return None
    if config is None:
        return None
    return shape_of_config(config, _tokenizer_within_reach(name if hf else config.tokenizer_name))


def _bridge_equivalent_config(name_or_path: str, revision: str | None) -> Any:
    """The HookedTransformerConfig of a hub id or save_pretrained directory, from its config.json."""
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    kwargs = {"revision": revision} if revision else {}
    fields = convert_hf_model_config(name_or_path, **kwargs)
    known = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    return HookedTransformerConfig(**{k: v for k, v in fields.items() if k in known}, device="meta")


def _tokenizer_within_reach(name_or_path: str | None) -> Any:
    if not name_or_path:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name_or_path)
    except Exception:  # no tokenizer files in the cache: token-level checks are left to the stages
        return None


def shape_of_model(settings: ModelConfig) -> ModelShape | None:
    """The shape of the model the load_model stage would return for ``settings``, without building it."""
    if settings.source == "config":
        return shape_of_config(hooked_transformer_config(settings.cfg))
    if settings.source == "trained":
        from interp_pipeline.tasks.base import make_task

        task = make_task(settings.train.task if settings.train is not None else {}, key="train.task")
        config = hooked_transformer_config({**settings.cfg, **task.model_config()})
        return shape_of_config(config, task.tokenizer())
    if settings.source == "saved":
        return shape_of_saved(Path(settings.path).expanduser())
    if settings.source == "tl":
        return shape_of_pretrained(settings.name, hf=False, revision=settings.revision)
    if settings.source == "hf" and settings.compatibility_mode:
        return shape_of_pretrained(settings.name_or_path, hf=True, revision=settings.revision)
    # A Bridge without compatibility mode names its hooks after its own modules (blocks.L.ln2.hook_out),
    # not HookedTransformer's, which is all shape_of_pretrained knows: the stages check them.
    return None


def block_index(hook: str) -> int | None:
    match = _BLOCK_HOOK.match(hook)
    return int(match.group(1)) if match else None
