"""The transcoder and attribution-graph stages' schemas (every default written once, here).

TranscoderConfig (train_transcoder), TranscoderEvalConfig (evaluate_transcoders) and
AttributionConfig (attribution_graph). Hook names are templates with ``{layer}``: the
MLP's normalised input and its output, as TransformerLens names them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import SI

from interp_pipeline.config.fields import at_least, choice, fraction, positive, used_by

# Our names for the architectures, and the SAELens training class each one trains with.
ARCHITECTURES = ("relu", "topk", "jumprelu")
SAE_LENS_TRAINING = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}


@dataclass
class TranscoderConfig:
    """Per-layer transcoders, MLP input -> MLP output, all layers trained in one pass over the data."""

    layers: Optional[List[int]] = None  # None: every layer of the store (or model)
    hook_in: str = "blocks.{layer}.ln2.hook_normalized"  # the MLP's input, after its LayerNorm
    hook_out: str = "blocks.{layer}.hook_mlp_out"
    architecture: str = choice("relu", ARCHITECTURES)
    skip: bool = False  # a linear skip connection W_skip x (Paulo et al. 2025, skip transcoders)
    expansion_factor: int = positive(8)  # d_transcoder = expansion_factor * d_model
    # Read by some architectures only (None unless given; another architecture refuses them, as SAEConfig does):
    l1_coefficient: Optional[float] = used_by(("relu",), at_least(0, 1.0))  # SAELens's standard SAE's L1
    l1_warm_up_steps: Optional[int] = used_by(("relu", "jumprelu"), at_least(0, 0))  # jumprelu: its L0's
    k: Optional[int] = used_by(("topk",), positive(16))  # latents kept per token
    l0_coefficient: Optional[float] = used_by(("jumprelu",), at_least(0, 1.0))
    lr: float = positive(3e-3)
    train_batch_size_tokens: int = positive(1024)
    training_tokens: int = positive(400_000)
    allow_fewer_tokens: bool = True  # one epoch of what the store holds, when it holds less
    eval_tokens: int = at_least(0, 2048)  # the store's last rows, held out for the per-layer evaluation
    dead_feature_window: int = positive(1000)
    feature_sampling_window: int = positive(2000)
    log_every: int = positive(50)
    checkpoint_every: int = at_least(0, 500)  # steps between checkpoints a killed run resumes from; 0: none
    buffer_chunks: int = positive(8)
    device: str = choice("auto", ("auto", "cpu", "cuda", "mps"))
    seed: int = SI("${seed}")


def architecture_settings(settings: TranscoderConfig) -> dict[str, Any]:
    """The per-architecture keys, completed with the architecture's defaults; a key given to an architecture
    that does not read it is a ConfigError (relative to ``transcoder``), as for SAEs."""
    from interp_pipeline.common.errors import ConfigError

    found = {}
    for f in dataclasses.fields(TranscoderConfig):
        if "architectures" not in f.metadata:
            continue
        value = getattr(settings, f.name)
        if value is not None and settings.architecture not in f.metadata["architectures"]:
            raise ConfigError(f.name, f"expected no value for a {settings.architecture} transcoder (only "
                                      f"{', '.join(f.metadata['architectures'])} read it), found {value!r}",
                              suggestion="remove it or set it to null, or pick an architecture that reads it")
        found[f.name] = f.metadata["architecture_default"] if value is None else value
    return found


@dataclass
class TranscoderEvalConfig:
    """Transcoders on held-out sequences: reconstruction per layer, and the CE loss with all of them spliced in."""

    batch_size_prompts: int = positive(32)
    max_sequences: Optional[int] = positive(256)
    dense_threshold: float = fraction(0.1, open_below=True)  # firing on more of the tokens than this: dense


@dataclass
class TranscoderSourceConfig:
    """Transcoders to load (the load_transcoders stage): SAELens's registry, or folders SAELens saved."""

    release: Optional[str] = None  # a release of sae_lens/pretrained_saes.yaml
    sae_id: Optional[str] = None  # its id for one layer, with {layer}: "transcoder/layer_{layer}_width_16k_l0_big"
    path: Optional[str] = None  # instead: a folder per layer, with {layer}, or a folder train_transcoder wrote
    layers: Optional[List[int]] = None  # None: every layer of the model
    # The hooks each transcoder reads and writes, when the saved metadata's names do not fit this model.
    hook_in: Optional[str] = None
    hook_out: Optional[str] = None
    device: str = choice("auto", ("auto", "cpu", "cuda", "mps"))


@dataclass
class AttributionConfig:
    """Attribution graphs (Ameisen et al. 2025, circuit-tracer's method) for prompts, with transcoders."""

    prompts: Optional[List[str]] = None  # None: the prompts input's first max_prompts prompts
    max_prompts: int = positive(4)
    max_n_logits: int = positive(10)  # at most this many logit nodes ...
    desired_logit_prob: float = fraction(0.95, open_below=True)  # ... covering this much probability
    batch_size_targets: int = positive(64)  # backward passes batched together
    max_feature_nodes: Optional[int] = positive(None)  # None: every active feature
    node_threshold: float = fraction(0.8, open_below=True)  # pruning: keep nodes covering this much influence
    edge_threshold: float = fraction(0.98, open_below=True)  # and edges covering this much
    # The page: features shown with their top-activating contexts from the activation store.
    contexts_per_feature: int = at_least(0, 5)
    context_window: int = positive(6)  # tokens of each context shown before the activating one
    max_features_on_page: int = positive(40)
    device: str = choice("auto", ("auto", "cpu", "cuda", "mps"))
