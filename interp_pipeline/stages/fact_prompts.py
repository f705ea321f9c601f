"""Factual-recall prompt sets: the toy facts world's prompts, or prompts written in YAML.

Both stages take the model first (its tokenizer and ``cfg.n_ctx``) and return ``facts``:
the dict of CPU tensors described in interp_pipeline/facts/prompts.py (tokens, subject span,
object, relation, template, split, subject id), which causal tracing, probes and ROME read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.facts.config import FactPromptsConfig, ToyFactPromptsConfig
from interp_pipeline.facts.prompts import FACT_METRICS
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor
    from transformer_lens import HookedTransformer


def _check_toy_task(settings: ToyFactPromptsConfig) -> None:
    from interp_pipeline.facts.task import facts_task

    facts_task(settings.task)


def _check_toy_shapes(settings: ToyFactPromptsConfig, inputs: Mapping[str, Any]) -> None:
    """Tokenize before the model trains: a tokenizer that cannot place a subject stops the run first."""
    from interp_pipeline.facts.prompts import toy_facts
    from interp_pipeline.facts.task import facts_task

    model = inputs.get("model")
    if model is not None and model.tokenizer is not None:
        toy_facts(model.tokenizer, facts_task(settings.task), settings, model.n_ctx)


@stage("toy_fact_prompts", outputs=("facts",), config=ToyFactPromptsConfig, preflight=_check_toy_task,
       check_shapes=_check_toy_shapes, metrics=FACT_METRICS, summary=("prompts", "heldout_prompts"))
def toy_fact_prompts(model: HookedTransformer, settings: ToyFactPromptsConfig,
                     tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """The toy facts world's prompts (``task``: the facts task config the model was trained on,
    so the world is the same): every prompt, or the ``"train"`` or ``"heldout"`` ones, or a
    seeded sample of ``n_prompts`` of them, tokenized with the model's tokenizer."""
    from interp_pipeline.facts.prompts import toy_prompt_set
    from interp_pipeline.facts.task import facts_task

    return toy_prompt_set(model, facts_task(settings.task), settings, tracker)


def _check_listed(settings: FactPromptsConfig) -> None:
    from interp_pipeline.facts.prompts import check_records

    check_records(settings.prompts)


def _check_listed_shapes(settings: FactPromptsConfig, inputs: Mapping[str, Any]) -> None:
    """Every prompt placed under the model's tokenizer (the object one token), before any model loads."""
    from interp_pipeline.facts.prompts import listed_facts

    model = inputs.get("model")
    if model is not None and model.tokenizer is not None:
        listed_facts(model.tokenizer, settings, model.n_ctx)


@stage("fact_prompts", outputs=("facts",), config=FactPromptsConfig, preflight=_check_listed,
       check_shapes=_check_listed_shapes, metrics=FACT_METRICS, summary=("prompts", "seq_len"))
def fact_prompts(model: HookedTransformer, settings: FactPromptsConfig,
                 tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Prompts written in YAML, ``{prompt, subject, object}`` each (``object`` with its leading
    space, " Seattle"): the subject must occur in the prompt and the object be one token,
    otherwise the error names the prompt, e.g. ``prompts[2].object: expected a single token,
    found 2 tokens [' Sea', 'ttle']``."""
    from interp_pipeline.facts.prompts import listed_prompt_set

    return listed_prompt_set(model, settings, tracker)
