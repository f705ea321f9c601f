"""Transcoders trained with SAELens's training SAE classes, and saved as SAELens's inference transcoders.

Why SAELens's training classes and not eai-sparsify (which trains transcoders): the SAE
stage already drives SAELens's SAETrainer and MultiSAETrainer (metrics, resume, NaN stop,
one pass for several SAEs: interp_pipeline.sae), and SAELens's standard, TopK and
JumpReLU training SAEs carry the sparsity losses, dead-latent bookkeeping and
threshold estimators a transcoder needs unchanged. The only difference is the target
(Dunefsky et al. 2024, "Transcoders find interpretable LLM feature circuits"): the
encoder reads the MLP's input, the loss compares the decoder's output with the MLP's
output. So a training batch is ``[mlp_in | mlp_out]`` side by side, and the mixin
below encodes the first half while SAELens's own ``training_forward_pass`` compares with
the second half (its MSE, aux losses and logged explained variance all see the MLP
output). With a skip connection (Paulo et al. 2025) the target is the MLP output less
``W_skip x``, which gives ``W_skip`` the reconstruction loss's gradient.

Finished transcoders are SAELens's ``Transcoder`` / ``SkipTranscoder`` /
``JumpReLUTranscoder`` / ``JumpReLUSkipTranscoder``. SAELens has no TopK transcoder,
so ``TopKTranscoder`` below is one, registered in SAELens's registry under
``topk_transcoder`` (and ``topk_skip_transcoder``): ``SAE.load_from_disk`` loads it
once this module is imported.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
from torch import nn


class TranscodingMixin:
    """Put before a SAELens TrainingSAE class: encode the batch's first half, reconstruct its second."""

    _source: torch.Tensor | None = None

    def setup_transcoding(self, skip: bool) -> None:
        self._source = None
        self.has_skip = skip
        if skip:  # zeros: training starts as a plain transcoder (as SAELens's SkipTranscoder initialises)
            self.W_skip = nn.Parameter(torch.zeros(self.cfg.d_in, self.cfg.d_in, dtype=self.dtype,
                                                   device=self.device))

    def training_forward_pass(self, step_input: Any) -> Any:
        d_in = self.cfg.d_in
        batch = step_input.sae_in  # [batch, 2 * d_in]: mlp_in | mlp_out
        source, target = batch[:, :d_in], batch[:, d_in:]
        if self.has_skip:
            target = target - source @ self.W_skip.T
        self._source = source
        try:
            return super().training_forward_pass(dataclasses.replace(step_input, sae_in=target))
        finally:
            self._source = None

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().encode_with_hidden_pre(self._source if self._source is not None else x)


@functools.cache
def training_class(base: type) -> type:
    return type(f"Transcoding{base.__name__}", (TranscodingMixin, base), {})


def training_transcoder(params: dict[str, Any], d_model: int, *, hook: str, device: str) -> Any:
    """A fresh training transcoder: SAELens's training SAE for the architecture, with the transcoding mixin."""
    from interp_pipeline.sae.config import training_sae

    sae = training_sae(params, d_model, hook=hook, device=device)
    # A transcoder's decoder bias lives in the output space: never subtract it from the input.
    sae.cfg.apply_b_dec_to_input = False
    transcoder = training_class(type(sae))(sae.cfg)
    transcoder.load_state_dict(sae.state_dict())
    transcoder.setup_transcoding(bool(params["skip"]))
    return transcoder


def _topk_classes() -> tuple[type, type, type, type]:
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopK
    from sae_lens.saes.transcoder import SkipTranscoder, SkipTranscoderConfig, Transcoder, TranscoderConfig
    from sae_lens.util import filter_valid_dataclass_fields

    def from_dict(cfg_class: type) -> Any:
        def build(cls: type, config_dict: dict[str, Any]) -> Any:
            res = cls(**filter_valid_dataclass_fields(config_dict, cls))
            if "metadata" in config_dict:
                res.metadata = SAEMetadata(**config_dict["metadata"])
            return res
        return classmethod(build)

    def topk(base: type, base_cfg: type, architecture: str) -> tuple[type, type]:
        """``base`` (a SAELens transcoder) with a TopK activation, and its config with ``k``."""
        cfg_class = dataclasses.make_dataclass(f"TopK{base_cfg.__name__}", [("k", int, dataclasses.field(default=16))],
                                               bases=(base_cfg,))
        cfg_class.architecture = classmethod(lambda cls: architecture)
        cfg_class.from_dict = from_dict(cfg_class)
        cls = type(f"TopK{base.__name__}", (base,), {
            "__doc__": "A transcoder whose activation keeps each token's k largest pre-activations (then ReLU).",
            "get_activation_fn": lambda self: TopK(self.cfg.k),
            "from_dict": classmethod(lambda cls, config_dict: cls(cfg_class.from_dict(config_dict)))})
        return cls, cfg_class

    TopKTranscoder, TopKTranscoderConfig = topk(Transcoder, TranscoderConfig, "topk_transcoder")
    TopKSkipTranscoder, TopKSkipTranscoderConfig = topk(SkipTranscoder, SkipTranscoderConfig, "topk_skip_transcoder")
    return TopKTranscoder, TopKTranscoderConfig, TopKSkipTranscoder, TopKSkipTranscoderConfig


@functools.cache
def register_topk_transcoders() -> None:
    """Put our TopK transcoders in SAELens's registry (once), so ``SAE.load_from_disk`` finds them."""
    from sae_lens.registry import register_sae_class

    topk, topk_cfg, topk_skip, topk_skip_cfg = _topk_classes()
    register_sae_class("topk_transcoder", topk, topk_cfg)
    register_sae_class("topk_skip_transcoder", topk_skip, topk_skip_cfg)


def inference_class(architecture: str, skip: bool) -> tuple[type, type]:
    """SAELens's inference transcoder class (and config class) for a trained architecture."""
    import sae_lens
    from sae_lens.registry import get_sae_class

    if architecture == "topk":
        register_topk_transcoders()
        return get_sae_class("topk_skip_transcoder" if skip else "topk_transcoder")
    if architecture == "jumprelu":
        return ((sae_lens.JumpReLUSkipTranscoder, sae_lens.JumpReLUSkipTranscoderConfig) if skip
                else (sae_lens.JumpReLUTranscoder, sae_lens.JumpReLUTranscoderConfig))
    return ((sae_lens.SkipTranscoder, sae_lens.SkipTranscoderConfig) if skip
            else (sae_lens.Transcoder, sae_lens.TranscoderConfig))


def to_inference(trained: Any, architecture: str, *, hook_in: str, hook_out: str, layer: int,
                 extra_metadata: dict[str, Any] | None = None) -> Any:
    """The inference transcoder with ``trained``'s weights (same function: a test checks it)."""
    from sae_lens.saes.sae import SAEMetadata

    cls, cfg_class = inference_class(architecture, trained.has_skip)
    d_model, d_sae = trained.cfg.d_in, trained.cfg.d_sae
    kwargs = {"k": int(trained.cfg.k)} if architecture == "topk" else {}
    cfg = cfg_class(d_in=d_model, d_sae=d_sae, d_out=d_model, dtype="float32", device=str(trained.W_enc.device),
                    apply_b_dec_to_input=False,
                    metadata=SAEMetadata(hook_name=hook_in, hook_name_out=hook_out, hook_layer=layer,
                                         hook_layer_out=layer, **(extra_metadata or {})),
                    **kwargs)
    transcoder = cls(cfg)
    state = {"W_enc": trained.W_enc, "b_enc": trained.b_enc, "W_dec": trained.W_dec, "b_dec": trained.b_dec}
    if architecture == "jumprelu":
        state["threshold"] = trained.threshold
    if trained.has_skip:
        state["W_skip"] = trained.W_skip
    transcoder.load_state_dict({k: v.detach().float().clone() for k, v in state.items()})
    return transcoder.eval()
