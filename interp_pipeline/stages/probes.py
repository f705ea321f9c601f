"""Linear probes (the linear_probe stage) and the label stages that say what a probe predicts.

A label stage lays labels over a token dataset (interp_pipeline.probes.labels: ``labels`` and
``tokens`` grids, -1 where there is none); linear_probe lines them up with the rows of an activation
store cached from the same tokens and fits one logistic-regression probe per hook, with a control
task and the selectivity of Hewitt & Liang (2019) (interp_pipeline.probes.run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.probes.config import FactLabelsConfig, ProbeConfig, RepeatedHalfLabelsConfig
from interp_pipeline.probes.labels import LabelsShape, check_labels_fit_store
from interp_pipeline.probes.run import METRICS, check_heldout_fraction
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor


def _check_shapes(settings: ProbeConfig, inputs: Mapping[str, Any]) -> None:
    store, labels = inputs.get("store"), inputs.get("labels")
    if store is not None:
        for index, hook in enumerate(settings.hooks or []):
            store.hook_width(f"hooks[{index}]", hook)
    check_labels_fit_store("inputs.labels", labels if isinstance(labels, LabelsShape) else None, store)


@stage("linear_probe", outputs=("probes",), config=ProbeConfig, preflight=check_heldout_fraction,
       check_shapes=_check_shapes, metrics=METRICS, summary=("best_heldout_acc", "best_selectivity"))
def linear_probe(store: Mapping[str, Any], labels: Mapping[str, Tensor], settings: ProbeConfig,
                 tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Logistic-regression probes of a label from each hook of an activation store, with a control task.

    ``store`` is cache_activations' output (or ``{"store_uri": ...}``); ``labels`` a label stage's,
    laid over the tokens the store was cached from. Whole sequences are held out
    (``heldout_fraction``). Per hook: train and held-out accuracy, the same probe trained on the
    ``control`` task's labels (``shuffle``: permuted; ``word_type``: Hewitt & Liang's random label per
    token type), ``selectivity`` = held-out accuracy minus the control's, and the majority-label
    baseline. ``backend``: ``sklearn`` (rows in memory), ``torch`` (streamed ``batch_size_rows`` rows at
    a time: memory does not grow with the store), ``auto`` (sklearn when the labelled rows fit in
    ``memory_limit_mb``). Returns the probes as tensors (``HOOK/weight``, ``/bias``, ``/mean``, ``/std``,
    ``/classes``: the label values), stored as safetensors.
    """
    from interp_pipeline.probes.run import probe_store

    return probe_store(store, labels, settings, tracker)


# ---------------------------------------------------------------- label stages


def _tokens_labels_shape(settings: RepeatedHalfLabelsConfig, inputs: Mapping[str, Any]) -> LabelsShape | None:
    tokens = inputs.get("tokens")
    return None if tokens is None else LabelsShape(tokens.n_sequences, tokens.seq_len)


@stage("repeated_half_labels", outputs=("labels",), config=RepeatedHalfLabelsConfig, shape=_tokens_labels_shape,
       metrics=("n_labelled",))
def repeated_half_labels(tokens: Tensor, settings: RepeatedHalfLabelsConfig,
                         tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Per token of an induction probe ([BOS] r r): 1 in the repeated (second) half, 0 in the first, BOS unlabelled."""
    from interp_pipeline.probes.labels import repeated_half

    return repeated_half(tokens, settings.prepend_bos, tracker)


@stage("answer_labels", outputs=("labels", "tokens"), metrics=("n_labelled", "n_classes"))
def answer_labels(pairs: Mapping[str, Tensor], tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Prompt pairs' answers as labels at END of the clean prompts (the IO name for IOI), and those prompts as
    ``tokens`` for cache_activations, so the store's rows and the labels come from the same sequences."""
    from interp_pipeline.probes.labels import answers_at_end

    return answers_at_end(pairs, tracker)


def _check_fact_task(settings: FactLabelsConfig) -> None:
    from interp_pipeline.facts.task import facts_task

    facts_task(settings.task)


def _fact_shape(settings: FactLabelsConfig, inputs: Mapping[str, Any]) -> dict[str, Any]:
    from interp_pipeline.probes.labels import fact_grid
    from interp_pipeline.pipeline.shapes import TokensShape

    n, width = fact_grid(settings.task)
    return {"labels": LabelsShape(n, width), "tokens": TokensShape(n, width)}


@stage("fact_labels", outputs=("labels", "tokens"), config=FactLabelsConfig, preflight=_check_fact_task,
       shape=_fact_shape, metrics=("n_labelled", "n_classes"))
def fact_labels(model: Any, settings: FactLabelsConfig, tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Every prompt of the toy facts world as ``tokens`` ([BOS] prompt, right-padded), labelled at the
    subject's last token (or the prompt's ``last``) with an object: the prompt's own (``relation: own``)
    or the subject's object in a named relation (``lives_in``: is the subject's city readable there,
    whatever the prompt asks?)."""
    from interp_pipeline.probes.labels import fact_labels as label_facts

    return label_facts(model, settings, tracker)
