"""The settings of the patching stages: activation_patching and the prompt-pair datasets it reads
(ioi_prompts, prompt_pairs, repeated_pairs): the one source of their defaults.

The pair datasets' settings come through a data group (``data``, ``pairs``: ``fn`` + ``params``),
so no ``conf/`` folder holds them; their options (conf/data/ioi.yaml ...) give the params.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING

from interp_pipeline.config.fields import at_least, choice, positive
from interp_pipeline.patching.metrics import METRICS
from interp_pipeline.patching.prompt_pairs import LOSS_POSITIONS
from interp_pipeline.tasks.ioi_prompts import CORRUPTIONS, ORDERS

ENGINES = ("auto", "fast", "generic")


@dataclass
class PatchingConfig:
    """Activation, path and attribution patching (the activation_patching stage; interp_pipeline.patching.run)."""

    # Any of (patching/grids.py): resid_pre resid_mid resid_post attn_out mlp_out (by layer and position);
    # head_out head_q head_k head_v head_pattern (each head, all positions), the same _by_pos;
    # block_every, head_all_pos_every, head_by_pos_every (stacked, as TransformerLens's *_every).
    grids: List[str] = field(default_factory=lambda: ["resid_pre", "head_out"])
    metric: str = choice("logit_diff", METRICS)  # patching/metrics.py
    normalize: bool = True  # (patched - corrupted) / (clean - corrupted): 0 the corrupted run, 1 the clean run
    attribution: bool = True  # also the gradient estimate of every grid, and its correlation with the exact one
    path: List[Any] = field(default_factory=list)  # {receivers: final} or {receivers: [[l, h], ...], input: q|k|v}
    batch_size_prompts: int = positive(64)  # sequences in any one forward pass; larger grids take more passes
    top_k: int = at_least(0, 10)  # components listed (and logged) per array; 0: none
    engine: str = choice("auto", ENGINES)  # auto: start at the patched layer where the model allows (fast)


@dataclass
class IOIPromptsConfig:
    """IOI prompt pairs (the ioi_prompts stage) from Wang et al. 2022's templates (tasks/ioi_prompts.py).

    Pairs whose names are not single tokens under the model's tokenizer are dropped and counted
    (``pairs_dropped``); fewer than ``min_pairs`` left is an error.
    """

    n_prompts: int = positive(MISSING)
    seed: int = at_least(0, MISSING)
    templates: Optional[List[int]] = None  # indices into the 15 templates; None: all
    orders: List[str] = field(default_factory=lambda: list(ORDERS))  # ABBA (IO first), BABA (S first)
    corruption: str = choice("abc", CORRUPTIONS)  # abc: a third name at S2; s2_swap: the IO name at S2
    min_pairs: int = positive(1)  # at most n_prompts
    names: Optional[List[str]] = None  # None: tasks/ioi_prompts.py's NAMES
    # "shops ." for word-level tokenizers that do not split off punctuation (the toy IOI model's does)
    spaced_punctuation: bool = False
    prepend_bos: bool = True
    loss_positions: str = choice("end", LOSS_POSITIONS)  # end: the answer's loss only; all: every position's too


@dataclass
class PromptPairsConfig:
    """Clean/corrupted prompt pairs written in YAML (the prompt_pairs stage): any task patched without code.

    Each pair ``{clean, corrupted, answer, wrong}``: the two prompts the same number of tokens,
    answer and wrong one token each, with its leading space (" Mary").
    """

    pairs: List[Any] = MISSING
    prepend_bos: bool = True
    loss_positions: str = choice("end", LOSS_POSITIONS)  # end: the answer's loss only; all: every position's too


@dataclass
class RepeatedPairsConfig:
    """Induction prompt pairs (the repeated_pairs stage): a repeated_tokens probe's first ``n_pairs`` rows,
    and the same with a fresh first half."""

    n_pairs: int = positive(MISSING)  # at most the probe's sequences
    seed: int = at_least(0, MISSING)
