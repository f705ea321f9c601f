"""Factual-recall prompt sets: the toy facts world's prompts, or prompts written in YAML.

Both stages take the model first (its tokenizer and ``cfg.n_ctx``) and return ``facts``:
the dict of CPU tensors described in interp_pipeline/tracing/fact_prompts.py (tokens,
subject span, object, relation, template, split, subject id), which causal tracing,
probes and ROME read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.config.ranges import require_int
from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor
    from transformer_lens import HookedTransformer

SPLIT_CHOICES = ("all", "train", "heldout")
FACT_METRICS = ("prompts", "seq_len", "heldout_prompts", "subject_tokens_mean")


def _log(tracker: Tracker, facts: dict[str, Tensor]) -> None:
    subject = (facts["subject_last"] - facts["subject_first"] + 1).float()
    tracker.log_metrics({"prompts": len(facts["tokens"]), "seq_len": facts["tokens"].shape[1],
                         "heldout_prompts": int(facts["split"].sum()),
                         "subject_tokens_mean": float(subject.mean())})


# ---------------------------------------------------------------- the toy facts world


def _task(task: Mapping[str, Any]) -> Any:
    from interp_pipeline.tasks.base import make_task

    fields = dict(task)
    if fields.get("name") != "facts":
        raise ConfigError("task.name", f"expected 'facts' (the toy factual-recall task), found {fields.get('name')!r}")
    return make_task(fields, key="task")


def _check_toy_params(params: dict[str, Any]) -> None:
    _task(params.get("task") or {})
    split = params.get("split", "all")
    if split not in SPLIT_CHOICES:
        raise ConfigError("split", f"expected one of {one_of(SPLIT_CHOICES)}, found {split!r}",
                          suggestion=did_you_mean(str(split), SPLIT_CHOICES))
    if params.get("n_prompts") is not None:
        require_int(params, "n_prompts")
    require_int(params, "seed", minimum=0)


def _toy_records(task: Any, split: str, n_prompts: int | None, seed: int) -> list[Any]:
    import random

    from interp_pipeline.tracing.fact_prompts import FactRecord

    prompts = task.prompts(None if split == "all" else split)
    if n_prompts is not None and n_prompts < len(prompts):
        chosen = sorted(random.Random(seed).sample(range(len(prompts)), n_prompts))
        prompts = [prompts[i] for i in chosen]
    return [FactRecord(p.text, p.subject, " " + p.object, p.subject_span, p.relation, p.template, p.heldout,
                       p.subject_id) for p in prompts]


def _check_toy_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """Tokenize before the model trains: a tokenizer that cannot place a subject stops the run first."""
    from interp_pipeline.tracing.fact_prompts import tokenize_facts

    model = inputs.get("model")
    if model is None or model.tokenizer is None:
        return
    records = _toy_records(_task(params["task"]), params.get("split", "all"), params.get("n_prompts"), params["seed"])
    tokenize_facts(model.tokenizer, records, prepend_bos=params.get("prepend_bos", True), key="task",
                   max_len=model.n_ctx)


@stage("toy_fact_prompts", outputs=("facts",), preflight=_check_toy_params, check_shapes=_check_toy_shapes,
       metrics=FACT_METRICS, summary=("prompts", "heldout_prompts"))
def toy_fact_prompts(
    model: HookedTransformer,
    task: dict[str, Any],
    seed: int,
    split: str = "all",
    n_prompts: int | None = None,
    prepend_bos: bool = True,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Tensor]:
    """The toy facts world's prompts (``task``: the facts task config the model was trained on,
    so the world is the same): every prompt, or the ``"train"`` or ``"heldout"`` ones, or a
    seeded sample of ``n_prompts`` of them, tokenized with the model's tokenizer."""
    from interp_pipeline.models.tokens import require_tokenizer
    from interp_pipeline.tracing.fact_prompts import tokenize_facts

    _check_toy_params({"task": task, "split": split, "n_prompts": n_prompts, "seed": seed})
    tokenizer = require_tokenizer(model, "task")
    facts = tokenize_facts(tokenizer, _toy_records(_task(task), split, n_prompts, seed), prepend_bos=prepend_bos,
                           key="task", max_len=model.cfg.n_ctx)
    _log(tracker, facts)
    return facts


# ---------------------------------------------------------------- prompts written in YAML


def _check_listed_params(params: dict[str, Any]) -> None:
    from interp_pipeline.tracing.fact_prompts import check_records

    check_records(params.get("prompts"))


def _check_listed_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """Every prompt placed under the model's tokenizer (the object one token), before any model loads."""
    from interp_pipeline.tracing.fact_prompts import as_records, tokenize_facts

    model = inputs.get("model")
    if model is None or model.tokenizer is None:
        return
    tokenize_facts(model.tokenizer, as_records(params["prompts"]), prepend_bos=params.get("prepend_bos", True),
                   max_len=model.n_ctx)


@stage("fact_prompts", outputs=("facts",), preflight=_check_listed_params, check_shapes=_check_listed_shapes,
       metrics=FACT_METRICS, summary=("prompts", "seq_len"))
def fact_prompts(
    model: HookedTransformer,
    prompts: list[dict[str, str]],
    prepend_bos: bool = True,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Tensor]:
    """Prompts written in YAML, ``{prompt, subject, object}`` each (``object`` with its leading
    space, " Seattle"): the subject must occur in the prompt and the object be one token,
    otherwise the error names the prompt, e.g. ``prompts[2].object: expected a single token,
    found 2 tokens [' Sea', 'ttle']``."""
    from interp_pipeline.models.tokens import require_tokenizer
    from interp_pipeline.tracing.fact_prompts import as_records, check_records, tokenize_facts

    check_records(prompts)
    tokenizer = require_tokenizer(model, "prompts")
    facts = tokenize_facts(tokenizer, as_records(prompts), prepend_bos=prepend_bos, max_len=model.cfg.n_ctx)
    _log(tracker, facts)
    return facts
