"""The settings of the causal_tracing stage: the one source of their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from interp_pipeline.config.fields import at_least, choice, positive
from interp_pipeline.tracing.average import AVERAGES
from interp_pipeline.tracing.engine import KINDS


@dataclass
class CausalTracingConfig:
    """Causal tracing of factual recall (Meng et al. 2022, section 2.1; interp_pipeline.tracing).

    Gaussian noise on the subject tokens' embeddings, then the clean hidden state, or a window of
    MLP / attention outputs, restored at each (layer, position); the score is the object's
    probability at the last token. ``noise`` 3 and ``samples`` 10 are the paper's; the window's
    default is the paper's 10 of GPT-2 XL's 48 layers, scaled to the model.
    """

    # The noise std, in multiples of the subject embeddings' empirical std (ROME's collect_embedding_std:
    # the checkpoint's unprocessed embeddings, each prompt's subject tokenized alone, over the whole prompt set)
    noise: float = positive(3.0)
    noise_std: Optional[float] = positive(None)  # an absolute std instead (None: noise x the empirical std)
    samples: int = positive(10)  # noise draws per prompt
    window: Optional[int] = positive(None)  # layers restored together (mlp/attn); None: 10 of 48, scaled
    # Any of hidden, mlp, attn (interp_pipeline.tracing.run.check_kinds: a list, so no `choice`).
    kinds: List[str] = field(default_factory=lambda: list(KINDS))
    # pooled: ROME's average_causal_effects notebook (tokens pooled across prompts, the mean corrupted
    # score subtracted); per_prompt: each prompt's own effect averaged within it first (tracing/average.py)
    average: str = choice("pooled", AVERAGES)
    only_known: bool = True  # average only the prompts whose clean top-1 is the object (the paper's known facts)
    max_prompts: Optional[int] = positive(None)  # a sample of this many prompts, drawn with `seed`; None: all
    seed: int = at_least(0, 0)
    batch_size_prompts: int = positive(1024)  # sequences (prompt copies) in one forward pass
    figures: int = at_least(0, 4)  # prompts drawn one by one (their three heatmaps)
