"""Save and load HookedTransformers as safetensors plus a JSON config: nothing is unpickled.

The directory holds ``model.safetensors``, ``config.json`` (HookedTransformerConfig's
constructor fields) and, when the model has one, its tokenizer (``tokenizer.json``
and friends, via ``save_pretrained``). Registered as a stage-cache codec, so a
trained model is a cached stage output like any other.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from interp_pipeline.common.devices import resolve_device
from interp_pipeline.storage.cache_codecs import Codec, register_codec

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_DIR = "config.json", "model.safetensors", "tokenizer"


def _jsonable_config(cfg: Any) -> dict[str, Any]:
    import torch

    fields = {}
    for field in dataclasses.fields(cfg):
        if not field.init or field.name == "device":
            continue
        value = getattr(cfg, field.name)
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        try:
            json.dumps(value)
        except TypeError:
            continue  # derived or runtime-only fields (they are recomputed on load)
        fields[field.name] = value
    return fields


def save_model(model: Any, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(_jsonable_config(model.cfg), indent=2, sort_keys=True))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    if getattr(model, "tokenizer", None) is not None:
        model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))


def load_model_dir(directory: Path, device: str = "auto") -> Any:
    import torch
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    device = resolve_device(device)  # a cached model comes back where a fresh one would be built
    fields = json.loads((directory / CONFIG_FILE).read_text())
    fields["dtype"] = getattr(torch, fields.get("dtype", "float32"))
    tokenizer = None
    if (directory / TOKENIZER_DIR).is_dir():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory / TOKENIZER_DIR))
    model = HookedTransformer(HookedTransformerConfig(**fields, device=device), tokenizer=tokenizer)
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device=device))
    model.eval()
    return model


def _is_hooked_transformer(value: Any) -> bool:
    module = sys.modules.get("transformer_lens")
    return module is not None and isinstance(value, module.HookedTransformer)


register_codec(Codec("hooked_transformer", "", _is_hooked_transformer, lambda m, p: save_model(m, p), load_model_dir))
