"""The settings of the prompt-set stages (toy_fact_prompts, fact_prompts): the one source of their defaults.

Their params come through a dataset group (``data: {fn, params}``, conf/data/toy_facts.yaml and
fact_prompts_paper.yaml) and are checked against these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, SI

from interp_pipeline.config.fields import at_least, choice, positive
from interp_pipeline.facts.world import SPLITS


@dataclass
class ToyFactPromptsConfig:
    """The toy facts world's prompts (interp_pipeline.facts.world), tokenized with the model's tokenizer."""

    # The facts task's config the model was trained on (model.train.task), so the world is the same.
    task: Dict[str, Any] = MISSING
    split: str = choice("all", ("all", *SPLITS))  # every prompt, or the training or held-out (subject, template) ones
    n_prompts: Optional[int] = positive(None)  # None: every prompt; else a sample of this many, drawn with `seed`
    prepend_bos: bool = True
    seed: int = at_least(0, SI("${seed}"))


@dataclass
class FactPromptsConfig:
    """Prompts written in YAML (the fact_prompts stage): ``{prompt, subject, object}`` each, the object one
    token with its leading space (" Seattle"); interp_pipeline.facts.prompts.check_records checks them."""

    prompts: List[Any] = MISSING
    prepend_bos: bool = True
