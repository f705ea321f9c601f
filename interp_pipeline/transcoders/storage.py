"""Per-layer transcoders (``TranscoderSet``) and their stage-cache codec: SAELens's format, one folder a layer.

Each layer's folder is what ``Transcoder.save_model`` writes (``cfg.json``,
``sae_weights.safetensors``), so ``sae_lens.SAE.load_from_disk(folder)`` (or
``Transcoder.load_from_disk``) reads it without this package; ``layers.json`` lists
the layers. The metadata of each carries its hooks (``hook_name``: the MLP's input,
``hook_name_out``: its output) and layer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from interp_pipeline.common.devices import resolve_device
from interp_pipeline.storage.cache_codecs import Codec, register_codec


class TranscoderSet(Mapping[int, Any]):
    """SAELens transcoders by layer (each maps ``hook_name`` at that layer to ``hook_name_out``)."""

    def __init__(self, transcoders: Mapping[int, Any]):
        self._by_layer = {int(layer): tc for layer, tc in sorted(transcoders.items())}

    def __getitem__(self, layer: int) -> Any:
        return self._by_layer[layer]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_layer)

    def __len__(self) -> int:
        return len(self._by_layer)

    @property
    def layers(self) -> list[int]:
        return list(self._by_layer)

    def hook_in(self, layer: int) -> str:
        return str(self[layer].cfg.metadata.hook_name)

    def hook_out(self, layer: int) -> str:
        return str(self[layer].cfg.metadata.hook_name_out)

    @property
    def d_transcoder(self) -> int:
        return int(next(iter(self.values())).cfg.d_sae)

    def to(self, device: Any) -> TranscoderSet:
        for tc in self.values():
            tc.to(device)
        return self

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for layer, tc in self.items():
            tc.save_model(str(directory / f"layer_{layer}"))
        (directory / "layers.json").write_text(json.dumps(self.layers))

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> TranscoderSet:
        from sae_lens import SAE

        from interp_pipeline.transcoders.architectures import register_topk_transcoders

        register_topk_transcoders()
        layers = json.loads((Path(directory) / "layers.json").read_text())
        return cls({layer: SAE.load_from_disk(str(Path(directory) / f"layer_{layer}"),
                                              device=resolve_device(device)).eval() for layer in layers})


def load_transcoders(settings: Any, n_layers: int) -> TranscoderSet:
    """A TranscoderSet from SAELens's registry (``release`` + ``sae_id``) or from disk (``path``), with the
    hooks ``hook_in``/``hook_out`` (``{layer}`` templates) written into each one's metadata when given."""
    from pathlib import Path as _Path

    from sae_lens import SAE

    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.transcoders.architectures import register_topk_transcoders

    register_topk_transcoders()
    if (settings.path is None) == (settings.release is None or settings.sae_id is None):
        raise ConfigError("path", "expected either path, or release with sae_id, found "
                                  f"path={settings.path!r}, release={settings.release!r}, sae_id={settings.sae_id!r}")
    device = resolve_device(settings.device)
    if settings.path is not None and (_Path(settings.path) / "layers.json").is_file():
        loaded = TranscoderSet.load(_Path(settings.path), settings.device)
    else:
        layers = settings.layers if settings.layers is not None else list(range(n_layers))
        loaded = TranscoderSet({layer: (SAE.load_from_disk(settings.path.format(layer=layer), device=device)
                                        if settings.path is not None else
                                        SAE.from_pretrained(settings.release, settings.sae_id.format(layer=layer),
                                                            device=device)).eval() for layer in layers})
    for layer, transcoder in loaded.items():
        if settings.hook_in is not None:
            transcoder.cfg.metadata.hook_name = settings.hook_in.format(layer=layer)
        if settings.hook_out is not None:
            transcoder.cfg.metadata.hook_name_out = settings.hook_out.format(layer=layer)
        if transcoder.cfg.metadata.hook_name_out is None:
            raise ConfigError("hook_out", f"expected a transcoder (with an output hook), found layer {layer}'s "
                                          f"{type(transcoder).__name__} without one; set transcoder_source.hook_out")
    return loaded


def _is_transcoder_set(value: Any) -> bool:
    return isinstance(value, TranscoderSet)


def _load(directory: Path) -> TranscoderSet:
    return TranscoderSet.load(directory)


def _save(value: TranscoderSet, directory: Path) -> None:
    value.save(directory)


register_codec(Codec("transcoder_set", "", _is_transcoder_set, _save, _load))
