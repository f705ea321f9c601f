"""Linear probes (the linear_probe stage) and the label stages that say what a probe predicts.

A label stage lays labels over a token dataset (interp_pipeline.probes.labels: ``labels`` and
``tokens`` grids, -1 where there is none); linear_probe lines them up with the rows of an activation
store cached from the same tokens and fits one logistic-regression probe per hook, with a control
task and the selectivity of Hewitt & Liang (2019) (interp_pipeline.probes.run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.probes.labels import CONTROLS, LabelsShape, check_labels_fit_store, label_grid
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor

BACKENDS = ("auto", "sklearn", "torch")
PER_HOOK = ("train_acc", "heldout_acc", "control_train_acc", "control_heldout_acc", "selectivity", "majority_acc")
# Each per-hook metric twice: with the hook's index as step (one chart), and by hook name for expect:.
METRICS = (*PER_HOOK, *(f"{name}/*" for name in PER_HOOK), "n_rows", "n_heldout_rows", "n_classes",
           "best_heldout_acc", "best_selectivity")


def _check_params(params: dict[str, Any]) -> None:
    if params.get("backend", "auto") not in BACKENDS:
        raise ConfigError("backend", f"expected one of {one_of(BACKENDS)}, found '{params.get('backend')}'",
                          suggestion=did_you_mean(str(params.get("backend")), BACKENDS))
    if params.get("control", "shuffle") not in CONTROLS:
        raise ConfigError("control", f"expected one of {one_of(CONTROLS)}, found '{params.get('control')}'",
                          suggestion=did_you_mean(str(params.get("control")), CONTROLS))
    fraction = params.get("heldout_fraction", 0.25)
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ConfigError("heldout_fraction", f"expected a fraction strictly between 0 and 1, found {fraction!r}")
    if not (isinstance(params.get("C", 1.0), (int, float)) and params.get("C", 1.0) > 0):
        raise ConfigError("C", f"expected a positive inverse regularisation strength, found {params.get('C')!r}")
    for key in ("max_iter", "batch_size"):
        value = params.get(key, 1)
        if not (isinstance(value, int) and value >= 1):
            raise ConfigError(key, f"expected an integer >= 1, found {value!r}")


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    store, labels = inputs.get("store"), inputs.get("labels")
    if store is not None:
        for index, hook in enumerate(params.get("hooks") or []):
            store.hook_width(f"hooks[{index}]", hook)
    check_labels_fit_store("inputs.labels", labels if isinstance(labels, LabelsShape) else None, store)


@stage("linear_probe", outputs=("probes",), preflight=_check_params, check_shapes=_check_shapes, metrics=METRICS,
       summary=("best_heldout_acc", "best_selectivity"))
def linear_probe(
    store: Mapping[str, Any],
    labels: Mapping[str, Tensor],
    hooks: list[str] | None = None,
    heldout_fraction: float = 0.25,
    control: str = "shuffle",
    C: float = 1.0,
    max_iter: int = 500,
    tol: float = 1e-6,
    backend: str = "auto",
    memory_limit_mb: float = 1024.0,
    batch_size: int = 4096,
    seed: int = 0,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Tensor]:
    """Logistic-regression probes of a label from each hook of an activation store, with a control task.

    ``store`` is cache_activations' output (or ``{"store_uri": ...}``); ``labels`` a label stage's,
    laid over the tokens the store was cached from. Whole sequences are held out
    (``heldout_fraction``). Per hook: train and held-out accuracy, the same probe trained on the
    ``control`` task's labels (``shuffle``: permuted; ``word_type``: Hewitt & Liang's random label per
    token type), ``selectivity`` = held-out accuracy minus the control's, and the majority-label
    baseline. ``backend``: ``sklearn`` (rows in memory), ``torch`` (streamed ``batch_size`` rows at a
    time: memory does not grow with the store), ``auto`` (sklearn when the labelled rows fit in
    ``memory_limit_mb``). Returns the probes as tensors (``HOOK/weight``, ``/bias``, ``/mean``, ``/std``,
    ``/classes``: the label values), stored as safetensors.
    """
    import torch

    from interp_pipeline.activations.reader import ActivationStore
    from interp_pipeline.probes.plots import accuracy_by_layer_figure
    from interp_pipeline.probes.labels import heldout_mask, probe_rows
    from interp_pipeline.probes.run import ProbeSettings, probe_hook
    from interp_pipeline.progress import progress

    params = {"backend": backend, "control": control, "heldout_fraction": heldout_fraction, "C": C,
              "max_iter": max_iter, "batch_size": batch_size}
    _check_params(params)
    opened = ActivationStore.open(store["store_uri"])
    for index, hook in enumerate(hooks or []):
        if hook not in opened.hooks:
            raise ConfigError(f"hooks[{index}]", f"expected a hook the store caches ({one_of(opened.hooks)}), "
                                                 f"found '{hook}'", suggestion=did_you_mean(hook, opened.hooks))
    rows = probe_rows(opened, labels)
    settings = ProbeSettings(heldout_fraction=heldout_fraction, control=control, C=C, max_iter=max_iter, tol=tol,
                             backend=backend, memory_limit_mb=memory_limit_mb, batch_size=batch_size, seed=seed)
    chosen = list(hooks or opened.hooks)
    by_metric: dict[str, list[float]] = {name: [] for name in PER_HOOK}
    probes: dict[str, Tensor] = {}
    for step, hook in enumerate(progress(chosen, desc="probes", unit="hook")):
        result = probe_hook(opened, hook, rows, settings)
        tracker.log_metrics(result.metrics, step=step)
        tracker.log_metrics({f"{name}/{hook}": value for name, value in result.metrics.items()})
        for name, value in result.metrics.items():
            by_metric[name].append(value)
        for part in ("weight", "bias", "mean", "std"):
            probes[f"{hook}/{part}"] = torch.from_numpy(getattr(result.probe, part).astype("float32"))
        probes[f"{hook}/classes"] = torch.tensor(rows.classes)  # one tensor per hook: safetensors refuses shared memory
        tracker.set_tags({f"backend/{hook}": result.backend})
    heldout = int(heldout_mask(rows.sequence, heldout_fraction, seed).sum())
    tracker.log_metrics({"n_rows": rows.rows.size, "n_heldout_rows": heldout, "n_classes": rows.n_classes,
                         "best_heldout_acc": max(by_metric["heldout_acc"]),
                         "best_selectivity": max(by_metric["selectivity"])})
    tracker.log_figure(accuracy_by_layer_figure(chosen, by_metric, f"linear probes ({rows.n_classes} classes, "
                                                                    f"{rows.rows.size} rows, control: {control})"),
                       "probe_accuracy_by_layer")
    tracker.log_text(_table(chosen, by_metric), "probes.md")
    return probes


def _table(hooks: list[str], metrics: dict[str, list[float]]) -> str:
    lines = ["| hook | " + " | ".join(PER_HOOK) + " |", "| --- |" + " ---: |" * len(PER_HOOK)]
    for i, hook in enumerate(hooks):
        lines.append(f"| {hook} | " + " | ".join(f"{metrics[m][i]:.3f}" for m in PER_HOOK) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- label stages


def _tokens_labels_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> LabelsShape | None:
    tokens = inputs.get("tokens")
    return None if tokens is None else LabelsShape(tokens.n_sequences, tokens.seq_len)


@stage("repeated_half_labels", outputs=("labels",), shape=_tokens_labels_shape, metrics=("n_labelled",))
def repeated_half_labels(tokens: Tensor, prepend_bos: bool = True, tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """Per token of an induction probe ([BOS] r r): 1 in the repeated (second) half, 0 in the first, BOS unlabelled."""
    import torch

    n, width = tokens.shape
    half = (width - int(prepend_bos)) // 2
    if width - int(prepend_bos) != 2 * half:
        raise ConfigError("tokens", f"expected a repeated_tokens probe ([BOS] r r), found length {width}")
    labels = torch.full((n, width), -1, dtype=torch.int64)
    start = int(prepend_bos)
    labels[:, start:start + half] = 0
    labels[:, start + half:] = 1
    tracker.log_metrics({"n_labelled": int((labels >= 0).sum())})
    return label_grid(labels, tokens)


@stage("answer_labels", outputs=("labels", "tokens"), metrics=("n_labelled", "n_classes"))
def answer_labels(pairs: Mapping[str, Tensor], tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Prompt pairs' answers as labels at END of the clean prompts (the IO name for IOI), and those prompts as
    ``tokens`` for cache_activations, so the store's rows and the labels come from the same sequences."""
    import torch

    clean = pairs["clean"]
    labels = torch.full(clean.shape, -1, dtype=torch.int64)
    labels[torch.arange(clean.shape[0]), pairs["end"].long()] = pairs["answer"].long()
    tracker.log_metrics({"n_labelled": clean.shape[0], "n_classes": int(pairs["answer"].unique().numel())})
    return {"labels": label_grid(labels, clean), "tokens": clean.clone()}


FACT_POSITIONS = ("subject_last", "last")


def _check_fact_params(params: dict[str, Any]) -> None:
    from interp_pipeline.editing.requests import world
    from interp_pipeline.tasks.facts_prompts import RELATION_NAMES

    world(params.get("task") or {})
    if params.get("position", "subject_last") not in FACT_POSITIONS:
        raise ConfigError("position", f"expected one of {one_of(FACT_POSITIONS)}, found '{params.get('position')}'",
                          suggestion=did_you_mean(str(params.get("position")), FACT_POSITIONS))
    relation = params.get("relation", "own")
    if relation != "own" and relation not in RELATION_NAMES:
        choices = ("own", *RELATION_NAMES)
        raise ConfigError("relation", f"expected one of {one_of(choices)}, found '{relation}'",
                          suggestion=did_you_mean(str(relation), choices))


def _fact_grid(task: Mapping[str, Any]) -> tuple[int, int]:
    """Every prompt of the world, [BOS] + its longest prompt's words."""
    from interp_pipeline.editing.requests import world
    from interp_pipeline.tasks.facts_prompts import longest_prompt_words

    return len(world(task).prompts()), longest_prompt_words() + 1


def _fact_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    from interp_pipeline.shapes import TokensShape

    n, width = _fact_grid(params["task"])
    return {"labels": LabelsShape(n, width), "tokens": TokensShape(n, width)}


@stage("fact_labels", outputs=("labels", "tokens"), preflight=_check_fact_params, shape=_fact_shape,
       metrics=("n_labelled", "n_classes"))
def fact_labels(model: Any, task: Mapping[str, Any], position: str = "subject_last", relation: str = "own",
                tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Every prompt of the toy facts world as ``tokens`` ([BOS] prompt, right-padded), labelled at the
    subject's last token (or the prompt's ``last``) with an object: the prompt's own (``relation: own``)
    or the subject's object in a named relation (``lives_in``: is the subject's city readable there,
    whatever the prompt asks?)."""
    import torch

    from interp_pipeline.editing.requests import subject_last_token, world
    from interp_pipeline.tasks.facts_prompts import RELATION_NAMES, RELATIONS, objects_of

    _check_fact_params({"task": task, "position": position, "relation": relation})
    made = world(task)
    prompts = made.prompts()
    objects = objects_of(made.n_subjects, made.seed)
    pad = int(model.tokenizer.pad_token_id)
    tokens = torch.full(_fact_grid(task), pad, dtype=torch.int64)
    labels = torch.full_like(tokens, -1)
    for row, prompt in enumerate(prompts):
        ids, subject_last = subject_last_token(model, prompt.text, prompt.subject_span)
        tokens[row, :len(ids)] = torch.as_tensor(ids)
        if relation == "own":
            word = prompt.object
        else:
            index = RELATION_NAMES.index(relation)
            word = RELATIONS[relation][1][objects[prompt.subject_id][index]]
        labels[row, subject_last if position == "subject_last" else len(ids) - 1] = \
            int(model.tokenizer.convert_tokens_to_ids(word))
    tracker.log_metrics({"n_labelled": int((labels >= 0).sum()), "n_classes": int(labels[labels >= 0].unique().numel())})
    return {"labels": label_grid(labels, tokens), "tokens": tokens}
