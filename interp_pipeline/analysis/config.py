"""The settings of the analysis stages: the one source of their defaults.

The look-inside stages, inspect_model and logit_lens, read their sequences from one of three
places (interp_pipeline.analysis.prompt_set): text ``prompts``, or the pipeline's data stage's
tokens or prompt pairs (then ``prompts`` stays None). ``positions`` is ``last``, ``all``,
``START:STOP`` (a Python slice) or a list of positions. Activation statistics (the ``stats``
group), head scores (``scores``), the Fourier analysis of an embedding (``fourier``) and an SAE's
features on prompts (``sae_features``) follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from interp_pipeline.config.fields import at_least, positive


@dataclass
class InspectConfig:
    """A first look at a model on some sequences (the inspect_model stage; analysis/first_look.py): tokens,
    residual-stream norms per layer, attention patterns, top next-token predictions."""

    prompts: Optional[List[str]] = None  # text prompts; None: the sequences come from the pipeline's data stage
    prepend_bos: bool = True
    layers: Optional[List[int]] = None  # attention patterns of these layers; None: all
    heads: Optional[List[int]] = None  # ... and of these heads; None: all
    positions: Any = "last"  # where to read the top-k: last, all, START:STOP or a list of positions
    top_k: int = positive(5)
    show_prompt: int = at_least(0, 0)  # the sequence whose attention patterns are drawn
    exclude_bos: bool = True  # leave BOS (an attention sink with an outsized norm) out of the norms' means
    max_table_prompts: int = positive(8)  # sequences listed in the token and prediction tables
    batch_size_prompts: int = positive(16)  # sequences per forward pass


@dataclass
class LogitLensConfig:
    """Each layer's residual stream read through the final LayerNorm and the unembedding (the logit_lens
    stage; analysis/logit_lens.py).

    With text ``prompts``, ``answer`` (one token) is their expected next token; with a data stage's
    tokens each position's actual next token is its answer, with prompt pairs the answer at END
    (then ``answer`` stays None).
    """

    prompts: Optional[List[str]] = None  # text prompts; None: the sequences come from the pipeline's data stage
    answer: Optional[str] = None  # one token, the prompts' expected next token (" Paris")
    prepend_bos: bool = True
    positions: Any = "last"  # where the metrics are read: last, all, START:STOP or a list of positions
    top_k: int = positive(5)
    show_prompt: int = at_least(0, 0)  # the sequence drawn in the heatmaps
    max_positions: int = positive(24)  # the heatmaps show the shown sequence's last this many positions
    batch_size_prompts: int = positive(16)  # sequences per forward pass


@dataclass
class ActivationStatsConfig:
    """Per-hook activation statistics and the model's loss, batch by batch (interp_pipeline.analysis.activation_stats)."""

    # The smoke experiment's hooks: the embedding, both layers' residual stream, and an MLP's neurons.
    hooks: List[str] = field(default_factory=lambda: [
        "hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.1.mlp.hook_post"])
    batch_size_prompts: int = positive(16)  # sequences per forward pass


@dataclass
class HeadScoresConfig:
    """Previous-token, duplicate-token and induction score of every head (interp_pipeline.analysis.head_scores)."""

    batch_size_prompts: int = positive(16)  # sequences per forward pass
    top_k: int = positive(10)  # heads listed per score
    # TransformerLens's detect_head option (its default there is False): attention to BOS left out of
    # each score's denominator. On a [BOS] r r probe an induction head rests on BOS while reading the
    # first half, where there is nothing to induct from; counting that rest caps a perfect head at ~0.5.
    exclude_bos: bool = True


@dataclass
class FourierConfig:
    """Energy of a modular-addition model's W_E per Fourier frequency over Z_p (interp_pipeline.analysis.fourier)."""

    # The modulus: odd (every frequency 1..(p-1)/2 has a cos and a sin, and there is no Nyquist term to
    # treat alone); Z_p is prime in practice. conf/fourier/default.yaml reads it from the trained task.
    p: int = at_least(3, 113)
    top_k: int = positive(5)  # key frequencies reported, at most (p-1)/2


@dataclass
class SAEFeaturesConfig:
    """An SAE's features on prompts, and a dashboard of the strongest (the sae_features stage,
    interp_pipeline.analysis.sae_feature_report; numbers from .sae_features, cards from .feature_dashboard)."""

    hook: Optional[str] = None  # where to read the model; None: the hook the SAE was trained on
    top_k: int = positive(5)  # features listed per token, as SAELens's first tutorial prints them
    heatmap_features: int = positive(20)  # heatmap columns: the strongest of the tokens' top-k
    dashboard_features: int = positive(10)  # features on the dashboard, strongest on the prompts first
    contexts: int = positive(8)  # max-activating contexts per feature
    context_before: int = at_least(0, 8)  # tokens shown left of the max token
    context_after: int = at_least(0, 4)  # and right of it
    histogram_bins: int = positive(30)
    batch_size_prompts: int = positive(16)  # sequences per forward pass
    max_sequences: Optional[int] = positive(None)  # the dashboard reads the first so many; None: all
    # BOS/EOS/PAD out of the metrics, heatmap and max search (SAELens's evals do the same)
    exclude_special_tokens: bool = True
    model_label: Optional[str] = None  # names in titles; None: the model's name
    sae_label: Optional[str] = None  # None: the SAE's architecture and width
