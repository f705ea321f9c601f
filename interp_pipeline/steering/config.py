"""The settings of the steering stages (steering_vector, steer): the one source of their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import SI

from interp_pipeline.config.fields import at_least, choice, fraction
from interp_pipeline.config.fields import positive as above_zero  # `positive` is a setting's name here

# The residual-stream hook points a vector is read at and added to (blocks.L.hook_<kind>).
HOOK_KINDS = ("resid_pre", "resid_mid", "resid_post")
METHODS = ("caa", "actadd", "sae")
POSITIONS = ("all", "last", "front")


@dataclass
class SteeringVectorConfig:
    """A steering vector (interp_pipeline.steering.vectors): ActAdd, CAA or an SAE feature's decoder direction.

    ``actadd`` (Turner et al. 2023): the residual stream of prompt ``positive`` minus that of prompt
    ``negative`` at ``layer``, every position (the shorter prompt padded with ``pad``): one row per position.
    ``caa`` (Rimsky et al. 2024): the mean over a facts input's prompts answering ``positive`` minus the
    mean over those answering ``negative``, read at ``read_at`` of each prompt at ``layer``: one row.
    ``sae``: row ``feature`` of an SAE input's decoder, at the layer of the SAE's hook.
    """

    method: str = choice("caa", METHODS)
    layer: Optional[int] = at_least(0, None)  # actadd and caa; sae: the layer of the SAE's hook
    hook: str = choice("resid_pre", HOOK_KINDS)  # blocks.{layer}.hook_{hook}; sae: the SAE's hook
    # actadd: the two prompts ("Love", "Hate"); caa: the two answers whose prompts are contrasted
    # ("Paris", "Rome": the facts input's rows whose object is that token).
    positive: Optional[str] = None
    negative: Optional[str] = None
    pad: str = " "  # actadd: appended to the shorter prompt until both have as many tokens (the paper's spaces)
    read_at: str = choice("last", ("last", "subject_last"))  # caa: the position of each prompt read
    # caa: the fraction of each answer's subjects whose prompts make the vector, drawn with `seed`; the
    # steer stage scores the others (held-out subjects).
    fit_fraction: float = fraction(0.5, open_below=True)
    feature: Optional[int] = at_least(0, None)  # sae: the latent whose decoder row is the vector
    batch_size_prompts: int = above_zero(64)  # prompts per forward pass reading activations
    seed: int = at_least(0, SI("${seed}"))


@dataclass
class SteerConfig:
    """A steering vector added to the residual stream, ``coefficient`` x vector, while scoring and generating.

    ``positions``: ``all`` (every position), ``last`` (each prompt's last token, and while generating every
    token after it), ``front`` (the vector's rows at positions ``start``, ``start`` + 1, ...: ActAdd's way).
    """

    coefficient: float = 1.0
    layer: Optional[int] = at_least(0, None)  # None: the vector's own layer (at the vector's hook kind)
    positions: str = choice("last", POSITIONS)
    start: int = at_least(0, 0)  # `front`: the position the vector's first row is added at
    # The answer steered towards, and the one away from, each one token (" love" / " hate"); None:
    # the vector's own (caa: its positive and negative answers). Scored prompts: the facts input's
    # rows answering `source` (all rows when there is none), of subjects the vector was not made from.
    target: Optional[str] = None
    source: Optional[str] = None
    heldout_only: bool = True  # caa: score only subjects the vector was not made from
    control: bool = True  # the same metrics for a random direction of the vector's norm (control_*)
    generate: List[str] = field(default_factory=list)  # prompts completed with and without steering
    max_new_tokens: int = above_zero(24)
    temperature: float = at_least(0, 0.0)  # 0: greedy
    top_p: float = fraction(1.0, open_below=True)  # nucleus sampling when temperature > 0
    batch_size_prompts: int = above_zero(64)
    seed: int = at_least(0, SI("${seed}"))
