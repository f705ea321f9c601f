"""Pretrained models: TransformerLens names (HookedTransformer) and hub ids or local directories (TransformerBridge).

``check_available`` is the pre-flight: it says, before any work, when a model cannot be
loaded here (a missing directory, a name TransformerLens does not know, a hub model that
is neither cached nor downloadable). ``model_identity`` is what a run logs to say which
weights it used.

torch, transformers and transformer_lens are imported inside the functions: importing
this module must stay cheap.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError, Unobtainable, did_you_mean
from interp_pipeline.common.hf_hub_access import hub_unreachable_reason
from interp_pipeline.common.tl_version import has_hooked_transformer, is_bridge, major

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer
    from transformer_lens.model_bridge import TransformerBridge

# What the error for an unobtainable hub model offers instead. One place, so it can follow the configs.
OFFLINE_OPTIONS = (
    "model=tiny (config-built), model=toy_induction (trained here), model=hf model.name_or_path=/local/dir"
)

# Any one of these in a snapshot means its weights are there too (sharded checkpoints have an index).
_WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)
# Without any of these, TransformerBridge quietly builds an empty GPT-2 tokenizer (vocab_size 0).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
# Organisations whose TransformerLens checkpoints are listed on the hub at every load
# (HfApi.list_repo_files in get_pretrained_state_dict): they cannot load offline, cached or not.
_LISTED_ON_EVERY_LOAD = ("NeelNanda", "ArthurConmy", "Baidicoot")


def _torch_dtype(dtype: str) -> Any:
    import torch

    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"expected a torch dtype name such as 'float32', found '{dtype}'")
    return value


def load_transformer_lens(
    name: str,
    *,
    revision: str | None,
    device: str,
    dtype: str,
    fold_ln: bool,
    center_writing_weights: bool,
    center_unembed: bool,
    fold_value_biases: bool,
    n_devices: int | None = None,
) -> HookedTransformer:
    """A HookedTransformer from a TransformerLens model name (or alias), in eval mode."""
    from transformer_lens import HookedTransformer

    # revision rides in from_pretrained's **kwargs, which reach AutoConfig / AutoModel.from_pretrained
    # (the tokenizer is not pinned by it); left out when unset so those calls stay TransformerLens's own.
    from interp_pipeline.models.embeddings import capturing_state_dict_embedding, keep_unprocessed

    extra = {"revision": revision} if revision is not None else {}
    if n_devices is not None:  # layers split over GPUs 0..n-1 (from_pretrained's own n_devices)
        extra["n_devices"] = n_devices
    with warnings.catch_warnings(), capturing_state_dict_embedding() as checkpoint:
        warnings.filterwarnings("ignore", message=r".*HookedTransformer.*deprecated", category=DeprecationWarning)
        model = HookedTransformer.from_pretrained(
            name,
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
            device=device,
            dtype=_torch_dtype(dtype),
            **extra,
        )
    keep_unprocessed(model, checkpoint.get("W_E"))  # the checkpoint's embeddings, before centring
    model.eval()
    return model


def load_hugging_face(
    name_or_path: str,
    *,
    revision: str | None,
    device: str,
    dtype: str,
    compatibility_mode: bool = True,
    n_devices: int | None = None,
) -> TransformerBridge:
    """A TransformerBridge around a hub model or a ``save_pretrained`` directory, in eval mode.

    ``boot_transformers`` takes a local directory as it is (the architecture comes from its
    config.json) and always loads attention as "eager" so hooks see scores and patterns.
    The bridge has HookedTransformer's hook names ('blocks.0.hook_resid_pre') either way;
    compatibility mode changes the weights, folding LayerNorm, value biases and centring as
    HookedTransformer.from_pretrained does, so activations match a HookedTransformer's.
    Its logits then differ from the HF model's by a constant per position (the centred
    unembedding); log-probs are unchanged.
    """
    from transformer_lens.model_bridge import TransformerBridge

    if _looks_like_path(name_or_path):
        name_or_path = os.path.expanduser(name_or_path)  # transformers does not expand '~'
    # n_devices > 1: TransformerLens turns it into a device_map over that many GPUs (and no single device).
    placement = {"device": device} if n_devices is None or n_devices == 1 else {"n_devices": n_devices}
    model = TransformerBridge.boot_transformers(
        name_or_path, dtype=_torch_dtype(dtype), revision=revision, **placement,
    )
    if compatibility_mode:
        from interp_pipeline.models.embeddings import keep_unprocessed

        raw = model.W_E.detach().cpu().clone()  # compatibility mode centres the HF module's own weights
        model.enable_compatibility_mode()
        keep_unprocessed(model, raw)
    model.eval()
    return model


# --- pre-flight ---------------------------------------------------------------------------


def _path_syntax(name: str) -> bool:
    """Written as a path: absolute, relative to '.' or '..', or under '~'."""
    if name.startswith(("/", "./", "../", "~")) or name in (".", ".."):
        return True
    return bool(os.altsep) and name.startswith((os.altsep, "." + os.altsep, ".." + os.altsep))


def _looks_like_path(name: str) -> bool:
    """A hub-or-path name (model=hf) that means a directory: path syntax, or a directory that exists.

    Hub ids contain '/' too ('org/model'), so a bare 'org/model' is a path only when there is
    such a directory, which is also how transformers decides.
    """
    return _path_syntax(name) or os.path.isdir(os.path.expanduser(name))


def _cached_file(repo_id: str, filename: str, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return found if isinstance(found, str) else None  # None, or the "known not to exist" marker


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    """config.json and some weights file of ``repo_id`` at ``revision`` are in the local cache."""
    if _cached_file(repo_id, "config.json", revision) is None:
        return False
    return any(_cached_file(repo_id, f, revision) is not None for f in _WEIGHT_FILES)


def _cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit hash of the cached snapshot ``revision`` resolves to (snapshots/<commit>/config.json)."""
    try:
        found = _cached_file(repo_id, "config.json", revision)
    except Exception:  # an invalid repo id, say: no commit to report
        return None
    return Path(found).parent.name if found else None


def _transformer_lens_file(name: str) -> Path:
    """A module file of transformer_lens, found without importing the package (its __init__
    imports torch and every model class: seconds that a pre-flight saying "cannot be had" should not wait)."""
    spec = importlib.util.find_spec("transformer_lens")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("transformer_lens is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / name


@functools.lru_cache(maxsize=1)
def _transformer_lens_names() -> tuple[list[str], dict[str, str]]:
    """Official names, and every lower-cased name or alias mapped to its official name
    (TransformerLens's make_model_alias_map), read from supported_models.py, which imports nothing."""
    namespace: dict[str, Any] = {}
    exec(compile(_transformer_lens_file("supported_models.py").read_text(), "supported_models.py", "exec"), namespace)
    official, aliases = namespace["OFFICIAL_MODEL_NAMES"], namespace["MODEL_ALIASES"]
    alias_map = {}
    for name in official:
        for alias in aliases.get(name, []):
            alias_map[alias.lower()] = name
        alias_map[name.lower()] = name
    return list(official) + [alias for names in aliases.values() for alias in names], alias_map


@functools.lru_cache(maxsize=1)
def _non_hf_hosted_names() -> frozenset[str]:
    """loading_from_pretrained.NON_HF_HOSTED_MODEL_NAMES, a literal list, read without importing the module."""
    tree = ast.parse(_transformer_lens_file("loading_from_pretrained.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NON_HF_HOSTED_MODEL_NAMES"
                                                for t in node.targets):
            return frozenset(ast.literal_eval(node.value))
    return frozenset()


def _require_directory(key: str, name: str) -> Path:
    directory = Path(os.path.expanduser(name))
    if not directory.exists():
        raise ConfigError(key, f"expected an existing directory, found no directory at '{name}'")
    if not directory.is_dir():
        raise ConfigError(key, f"expected a directory, found a file at '{name}'")
    return directory


def _require_hub_model(key: str, name: str, repo_id: str, revision: str | None) -> None:
    if _in_hub_cache(repo_id, revision):
        return
    reason = hub_unreachable_reason()
    if reason is None:
        return  # downloadable: the loader fetches it
    label = f"'{name}'" if name == repo_id else f"'{name}' ({repo_id})"
    at = f" at revision '{revision}'" if revision else ""
    raise Unobtainable(
        key,
        f"model {label}{at} cannot be had: not in the local Hugging Face cache and the hub is "
        f"unreachable ({reason})", offline=OFFLINE_OPTIONS,
    )


def _check_transformer_lens(name: str, revision: str | None) -> None:
    key = "name"
    # Only path syntax counts here: a TransformerLens name that happens to match a directory
    # in the working directory ('gpt2') is still the name.
    if _path_syntax(name):
        _require_directory(key, name)
        # HookedTransformer.from_pretrained resolves every name through the alias table first.
        raise ConfigError(key, f"expected a TransformerLens model name, found the directory '{name}'",
                          suggestion=f"load it with model=hf model.name_or_path={name}")
    choices, alias_map = _transformer_lens_names()
    official = alias_map.get(name.lower())
    if official is None:
        raise ConfigError(
            key,
            f"expected a TransformerLens model name or alias ({len(choices)} known, e.g. gpt2, "
            f"pythia-70m, attn-only-2l; see transformer_lens.supported_models), found '{name}'",
            suggestion=did_you_mean(name, choices),
        )
    if official in _non_hf_hosted_names():
        raise Unobtainable(key, f"model '{name}' is not hosted on Hugging Face: TransformerLens needs its "
                                f"weights handed in, which model=tl cannot do", offline=OFFLINE_OPTIONS)
    if official.startswith(_LISTED_ON_EVERY_LOAD):
        reason = hub_unreachable_reason()
        if reason is not None:
            raise Unobtainable(key, f"model '{name}' ({official}) cannot be had: TransformerLens lists its "
                                    f"files on the hub at every load, cached or not, and the hub is unreachable "
                                    f"({reason})", offline=OFFLINE_OPTIONS)
        return
    _require_hub_model(key, name, official, revision)


def _check_hugging_face(name: str, revision: str | None) -> None:
    key = "name_or_path"
    if _looks_like_path(name):
        directory = _require_directory(key, name)
        if not (directory / "config.json").is_file():
            raise ConfigError(key, f"expected a save_pretrained directory (with config.json), "
                                   f"found no config.json in '{name}'")
        if not any((directory / f).is_file() for f in _TOKENIZER_FILES):
            raise ConfigError(key, f"expected a tokenizer saved beside the model ({', '.join(_TOKENIZER_FILES)}), "
                                   f"found none in '{name}'",
                              suggestion="save one with tokenizer.save_pretrained(directory)")
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ConfigError(key, f"expected a hub id ('org/model') or an existing directory, found '{name}'") from None
    _require_hub_model(key, name, name, revision)


def _check_hooked_transformer_here() -> None:
    if not has_hooked_transformer():
        raise ConfigError("name", f"expected a model this TransformerLens ({major()}) can load, found a "
                                  "TransformerLens name: those load as HookedTransformers, which TransformerLens 4 removed",
                          suggestion="load the model's hub id or directory with model=hf model.name_or_path=...")


def check_available(source: str, name: str, revision: str | None = None) -> None:
    """Raise ConfigError (key ``name`` for "tl", ``name_or_path`` for "hf") when the model cannot be loaded here."""
    if source == "tl":
        _check_hooked_transformer_here()
        _check_transformer_lens(name, revision)
    elif source == "hf":
        _check_hugging_face(name, revision)
    else:
        raise ValueError(f"check_available: expected source 'tl' or 'hf', found '{source}'")


# --- identity -----------------------------------------------------------------------------


def _count_parameters(model: Any) -> int:
    """Parameters of the model as its checkpoint defines them.

    A TransformerBridge's own parameters() is no such count: it lists the split q/k/v next
    to the fused qkv they were cut from, adds a zero unembedding bias, and (after folding)
    unties the unembedding. So for a bridge, count the wrapped HF class built from its
    config on the meta device: the architecture's count, tied weights once, no memory used.
    """
    if is_bridge(model) and hasattr(model.original_model, "config"):
        import torch

        original = model.original_model
        with torch.device("meta"):
            skeleton = type(original)(original.config)
        return int(skeleton.num_parameters())
    # parameters() lists a shared tensor once; a boot_native bridge (TransformerLens 4's config-built
    # model, no Hugging Face class to count) lists its native model's own parameters, unsplit.
    return sum(p.numel() for p in model.parameters())


def _tensor_bytes(tensor: Any) -> bytes:
    import torch

    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.to(torch.float32)  # numpy has no bfloat16
    try:
        return tensor.numpy().tobytes()
    except TypeError:  # other dtypes numpy lacks (float8 ...)
        return tensor.to(torch.float32).numpy().tobytes()


def _checksum(model: Any) -> str:
    """sha256 (16 hex) over the state dict in sorted key order: each key, dtype, shape, then the bytes."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for key in sorted(state):
        tensor = state[key]
        digest.update(f"{key}|{str(tensor.dtype).removeprefix('torch.')}|{tuple(tensor.shape)}\n".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()[:16]


def _hub_id(source: str, name: str | None) -> str | None:
    """The hub repository the weights came from, or None (a local directory, a config-built model)."""
    if not name:
        return None
    if source == "hf":
        return None if _looks_like_path(name) else name
    if source == "tl" and not _path_syntax(name):
        try:
            return _transformer_lens_names()[1].get(name.lower())
        except ImportError:
            return None
    return None


def model_identity(model: Any, *, source: str, name: str | None, revision: str | None) -> dict[str, str | int]:
    """What a run logs to say which weights it used.

    ``revision``, when none was asked for, is the commit of the cached snapshot the hub id
    resolved to (what "main" meant when the weights were fetched), or "" for local models.
    """
    if revision is None:
        repo_id = _hub_id(source, name)
        revision = (_cached_commit(repo_id, None) if repo_id else None) or ""
    first = next(iter(model.parameters()), None)
    return {
        "source": source,
        "name": name or "",
        "revision": revision,
        "n_params": _count_parameters(model),
        "dtype": str(first.dtype).removeprefix("torch.") if first is not None else "",
        "device": str(first.device) if first is not None else "",
        "checksum": _checksum(model),
    }
