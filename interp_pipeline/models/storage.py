"""Save and load config-built models as safetensors plus a JSON config: nothing is unpickled.

Config-built models are HookedTransformers, or on TransformerLens 4 boot_native TransformerBridges
(interp_pipeline.models.from_config). The directory holds ``model.safetensors``, ``config.json``
(the config's constructor fields) and, when the model has one, its tokenizer (``tokenizer.json``
and friends, via ``save_pretrained``). Registered as a stage-cache codec, so a
trained model is a cached stage output like any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interp_pipeline.common.devices import resolve_device
from interp_pipeline.models.from_config import is_config_built
from interp_pipeline.storage.cache_codecs import Codec, register_codec

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_DIR = "config.json", "model.safetensors", "tokenizer"


def _jsonable_config(model: Any) -> dict[str, Any]:
    import torch

    from interp_pipeline.models.from_config import config_values

    fields = {}
    for name, value in config_values(model).items():
        if name == "device":
            continue
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        try:
            json.dumps(value)
        except TypeError:
            continue  # derived or runtime-only fields (they are recomputed on load)
        fields[name] = value
    return fields


def save_model(model: Any, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(_jsonable_config(model), indent=2, sort_keys=True))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    if getattr(model, "tokenizer", None) is not None:
        model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))


def load_model_dir(directory: Path, device: str = "auto") -> Any:
    import torch
    from safetensors.torch import load_file

    from interp_pipeline.models.from_config import build, make_config

    device = resolve_device(device)  # a cached model comes back where a fresh one would be built
    fields = json.loads((directory / CONFIG_FILE).read_text())
    fields["dtype"] = getattr(torch, fields.get("dtype", "float32"))
    tokenizer = None
    if (directory / TOKENIZER_DIR).is_dir():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory / TOKENIZER_DIR))
    model = build(make_config(fields, device=device), tokenizer=tokenizer)
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device=device))
    model.eval()
    return model


# The codec's name stays "hooked_transformer": cache entries written before TransformerLens 4 name it.
register_codec(Codec("hooked_transformer", "", is_config_built, lambda m, p: save_model(m, p), load_model_dir))
