"""``model.n_devices``: a model too large for one GPU, split over several, from one config key.

No GPU here: the tests check that the composed key reaches TransformerLens's loaders
(HookedTransformer.from_pretrained's ``n_devices``, TransformerBridge.boot_transformers's)
and that pre-flight refuses more GPUs than are visible.
"""

from __future__ import annotations

import pytest

from interp_pipeline import api
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.models.config import ModelConfig
from interp_pipeline.models.loading import check_model_settings, load
from interp_pipeline.pipeline.spec import load_pipeline

pytest.importorskip("transformer_lens")


class Reached(Exception):
    """The loader was called: what it was called with is in ``kwargs``."""

    def __init__(self, kwargs):
        super().__init__("reached")
        self.kwargs = kwargs


def _stop(*args, **kwargs):
    raise Reached(kwargs)


def test_the_composed_key_reaches_hooked_transformer_from_pretrained(monkeypatch):
    from transformer_lens import HookedTransformer

    cfg = api.compose("sae_train", ["model.n_devices=2"])
    params = load_pipeline(cfg).stage("model").params
    assert params["n_devices"] == 2
    monkeypatch.setattr(HookedTransformer, "from_pretrained", _stop)
    with pytest.raises(Reached) as reached:
        load(ModelConfig(**{k: v for k, v in params.items() if k not in ("cfg", "train")}))
    assert reached.value.kwargs["n_devices"] == 2


def test_a_bridge_gets_it_instead_of_a_device(monkeypatch):
    from transformer_lens.model_bridge import TransformerBridge

    from interp_pipeline.models.hub import load_hugging_face

    monkeypatch.setattr(TransformerBridge, "boot_transformers", _stop)
    with pytest.raises(Reached) as reached:
        load_hugging_face("gpt2", revision=None, device="cpu", dtype="float32", n_devices=4)
    assert reached.value.kwargs["n_devices"] == 4 and "device" not in reached.value.kwargs
    with pytest.raises(Reached) as reached:
        load_hugging_face("gpt2", revision=None, device="cpu", dtype="float32")
    assert reached.value.kwargs["device"] == "cpu" and "n_devices" not in reached.value.kwargs


def test_more_gpus_than_visible_or_another_source_are_refused(monkeypatch):
    import torch

    monkeypatch.setattr("interp_pipeline.models.hub.check_available", lambda *args: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^n_devices: expected at most the 0 GPUs visible here, found 2"):
        check_model_settings(ModelConfig(source="tl", name="gpt2", n_devices=2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_model_settings(ModelConfig(source="tl", name="gpt2", n_devices=2))
    with pytest.raises(ConfigError, match=r"^n_devices: is read by source tl / hf, not by source 'config'"):
        check_model_settings(ModelConfig(source="config", cfg={"n_layers": 1}, n_devices=2))
