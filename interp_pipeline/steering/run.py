"""The steer stage's work: a vector applied to held-out prompts, unrelated prompts and ordinary sequences.

Metrics (Turner et al. 2023 and Rimsky et al. 2024 report the behaviour's change and the cost in
fluency; here both are measured on what the toy has):

- on the scored prompts (the facts input's rows answering ``source``, of subjects the vector was not
  made from): the target's probability and the logit difference target - source at the prompt's last
  token, before and after (``target_prob_before``, ``target_prob``, ``logit_diff_before``, ``logit_diff``,
  ``*_delta``), ``flip_rate`` (the target is the top-1 after) and ``source_top1_before``;
- side effects: ``kl_unrelated``, the mean KL(unsteered || steered) of the next-token distribution at
  the last token of the unrelated input's prompts of other relations (prompts written in YAML: those
  answering neither source nor target), ``unrelated_top1_kept``; ``kl_other_answers`` for the same
  relation's prompts answering neither; ``loss_before``, ``loss``, ``loss_delta``: the next-token loss on
  the ordinary ``tokens`` (padding left out), steered at every position (``front``: at the front), as a
  generation is steered after its prompt;
- ``control_*``: the same for a random direction of the vector's norm (``control``), so that a change
  can be told from what any push of that size does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.steering.apply import generate, steered_logits
from interp_pipeline.steering.config import HOOK_KINDS
from interp_pipeline.steering.vectors import check_hook_kind

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.steering.config import SteerConfig
    from interp_pipeline.tracking.base import Tracker

SCORE_METRICS = ("prompts", "target_prob_before", "target_prob", "target_prob_delta", "logit_diff_before",
                 "logit_diff", "logit_diff_delta", "flip_rate", "source_top1_before")
SIDE_METRICS = ("unrelated_prompts", "kl_unrelated", "unrelated_top1_kept", "kl_other_answers", "loss_before",
                "loss", "loss_delta")
CONTROL_METRICS = ("flip_rate", "target_prob_delta", "logit_diff_delta", "kl_unrelated", "loss_delta")
METRICS = ("layer", "coefficient", *SCORE_METRICS, *SIDE_METRICS, *(f"control_{m}" for m in CONTROL_METRICS))


def check_shapes(settings: SteerConfig, model: Any, vector: Any) -> None:
    """Layer and positions against the model's shape (ModelShape), and the vector's width when known."""
    if settings.layer is not None:
        model.check_layer("layer", settings.layer)
    if settings.start >= model.n_ctx:
        raise ConfigError("start", f"expected a position in 0..{model.n_ctx - 1}, found {settings.start}")
    d_model = getattr(vector, "d_model", None)
    if d_model is not None and d_model != model.d_model:
        raise ConfigError("inputs.vector", f"expected a vector of d_model {model.d_model} (the model's), "
                                           f"found {d_model}")


def check_vector(model: Any, vector: Mapping[str, Tensor], settings: SteerConfig) -> tuple[int, str]:
    """The layer and hook kind to steer at; a vector of another width, a layer or a position outside the model:
    ConfigError naming the key, before any forward pass."""
    rows, width = vector["vector"].shape
    if width != model.cfg.d_model:
        raise ConfigError("inputs.vector", f"expected a vector of d_model {model.cfg.d_model} (the model's), found "
                                           f"{width}")
    layer = int(vector["layer"][0]) if settings.layer is None else settings.layer
    if not 0 <= layer < model.cfg.n_layers:
        raise ConfigError("layer", f"expected a layer in 0..{model.cfg.n_layers - 1}, found {layer}")
    if settings.positions == "front" and settings.start + rows > model.cfg.n_ctx:
        raise ConfigError("start", f"expected the vector's {rows} rows from position {settings.start} to fit "
                                   f"n_ctx={model.cfg.n_ctx}")
    if settings.positions != "front" and rows != 1:
        raise ConfigError("positions", f"expected 'front' for a vector of {rows} rows (one per position), "
                                       f"found {settings.positions!r}")
    kind = HOOK_KINDS[int(vector["hook"][0])]
    check_hook_kind("inputs.vector", kind, model.cfg)
    return layer, kind


def _answer(model: Any, word: str | None, fallback: Tensor, key: str) -> int | None:
    from interp_pipeline.steering.vectors import token_id

    if word is not None:
        return token_id(model, word, key)
    value = int(fallback[0])
    return value if value >= 0 else None


def steer(model: Any, vector: Mapping[str, Tensor], settings: SteerConfig, tracker: Tracker,
          facts: Mapping[str, Tensor] | None = None, unrelated: Mapping[str, Tensor] | None = None,
          tokens: Tensor | None = None) -> dict[str, Tensor]:
    """Every metric the inputs allow (module docstring), completions of ``generate``; returns the scored
    prompts' per-prompt values (``target_prob``, ``logit_diff``, before and after, and their ``rows``)."""
    import torch

    layer, kind = check_vector(model, vector, settings)
    target = _answer(model, settings.target, vector["positive"], "target")
    source = _answer(model, settings.source, vector["negative"], "source")

    unsteered: dict[str, Tensor] = {}  # the model's own values, computed once for the vector and the control

    def runner(steering: Tensor) -> Any:
        def run(tokens: Tensor, steered: bool, last: Tensor | None = None, positions: str | None = None) -> Tensor:
            return steered_logits(model, tokens, steering if steered else None, layer, kind, settings.coefficient,
                                  positions or settings.positions, start=settings.start, last=last,
                                  batch_size_prompts=settings.batch_size_prompts)
        return run

    def before(label: str, compute: Any) -> Tensor:
        if label not in unsteered:
            unsteered[label] = compute()
        return unsteered[label]

    metrics: dict[str, float] = {"layer": layer, "coefficient": settings.coefficient}
    out: dict[str, Tensor] = {}
    control_scores = None
    # The control: a random direction of the vector's norm (row by row), seeded, through the same metrics.
    generator = torch.Generator().manual_seed(settings.seed)
    noise = torch.randn(vector["vector"].shape, generator=generator)
    control = noise * vector["vector"].norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)
    if facts is not None and target is None:
        raise ConfigError("target", "expected the answer to steer towards (the vector names none), found none")
    for prefix, steering in (("", vector["vector"]), ("control_", control)):
        if prefix and not settings.control:
            continue
        found, scores = _measure(model, runner(steering), before, settings, vector, target, source, facts, unrelated,
                                 tokens)
        if prefix:
            found = {name: value for name, value in found.items() if name in CONTROL_METRICS}
            control_scores = scores
        else:
            out = scores
        metrics.update({prefix + name: value for name, value in found.items()})
    tracker.log_metrics(metrics)
    if "logit_diff" in out:
        from interp_pipeline.steering.figures import logit_diff_figure

        words = [repr(model.tokenizer.decode([answer])) for answer in (target, source)]
        tracker.log_figure(logit_diff_figure(out, control_scores, *words, f"coefficient {settings.coefficient:g} at blocks.{layer}.hook_{kind} "
            f"({settings.positions})"), "logit_diff.png")
    if settings.generate:
        tracker.log_text(_completions(model, vector["vector"], layer, kind, settings), "completions.md")
    return out


def _measure(model: Any, run: Any, before: Any, settings: SteerConfig, vector: Mapping[str, Tensor], target: int | None,
             source: int | None, facts: Mapping[str, Tensor] | None, unrelated: Mapping[str, Tensor] | None,
             tokens: Tensor | None) -> tuple[dict[str, float], dict[str, Tensor]]:
    """One vector's metrics (means) and the scored prompts' per-prompt values; ``before(label, compute)``
    keeps the unsteered values, which the vector and its control share."""
    found: dict[str, float] = {}
    scores: dict[str, Tensor] = {}
    scored_relations = None
    if facts is not None:
        rows = _scored_rows(facts, source, vector["fit_subjects"] if settings.heldout_only else None)
        scored_relations = set(facts["relation"][rows].tolist())
        at = facts["last"][rows]
        plain = before("scored", lambda: _at(run(facts["tokens"][rows], False), at))
        scores = {**_scores(plain, _at(run(facts["tokens"][rows], True, at), at), target, source), "rows": rows}
        found = {name: float(value.float().mean()) for name, value in scores.items() if name != "rows"}
        found["prompts"] = len(rows)
        found["target_prob_delta"] = found["target_prob"] - found["target_prob_before"]
        if "logit_diff" in found:
            found["logit_diff_delta"] = found["logit_diff"] - found["logit_diff_before"]
    if unrelated is not None:
        found.update(_side_effects(unrelated, run, before, {a for a in (target, source) if a is not None},
                                   scored_relations))
    if tokens is not None:
        found.update(_loss(model, tokens, run, before, settings))
    return found, scores


def _scored_rows(facts: Mapping[str, Tensor], source: int | None, fit_subjects: Tensor | None) -> Tensor:
    import torch

    keep = torch.ones(len(facts["tokens"]), dtype=torch.bool) if source is None else facts["object"] == source
    if fit_subjects is not None and len(fit_subjects):
        keep &= ~torch.isin(facts["subject_id"], fit_subjects)
    rows = torch.nonzero(keep).flatten()
    if not len(rows):
        raise ConfigError("inputs.facts", "expected prompts answering the source, of subjects the vector was not "
                                          "made from; found none")
    return rows


def _at(logits: Tensor, positions: Tensor) -> Tensor:
    import torch

    return logits[torch.arange(len(positions)), positions]


def _scores(before: Tensor, after: Tensor, target: int, source: int | None) -> dict[str, Tensor]:
    scores = {"target_prob_before": before.softmax(-1)[:, target], "target_prob": after.softmax(-1)[:, target],
              "flip_rate": (after.argmax(-1) == target).float()}
    if source is not None:
        scores["logit_diff_before"] = before[:, target] - before[:, source]
        scores["logit_diff"] = after[:, target] - after[:, source]
        scores["source_top1_before"] = (before.argmax(-1) == source).float()
    return scores


def _kl(before: Tensor, after: Tensor) -> Tensor:
    """KL(before || after) per row, in nats."""
    logp, logq = before.log_softmax(-1), after.log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def _side_effects(facts: Mapping[str, Tensor], run: Any, unsteered: Any, answers: set[int],
                  scored_relations: set[int] | None) -> dict[str, float]:
    import torch

    objects = facts["object"]
    neither = ~torch.isin(objects, torch.tensor(sorted(answers), dtype=objects.dtype))
    relation = facts["relation"]
    same = torch.zeros_like(neither)
    if scored_relations and min(scored_relations) >= 0:
        same = torch.isin(relation, torch.tensor(sorted(scored_relations)))
    metrics = {}
    for name, keep in (("unrelated", neither & ~same), ("other_answers", neither & same)):
        rows = torch.nonzero(keep).flatten()
        if not len(rows):
            continue
        at = facts["last"][rows]
        before = unsteered(name, lambda: _at(run(facts["tokens"][rows], False), at))
        after = _at(run(facts["tokens"][rows], True, at), at)
        metrics[f"kl_{name}"] = float(_kl(before, after).mean())
        if name == "unrelated":
            metrics["unrelated_prompts"] = len(rows)
            metrics["unrelated_top1_kept"] = float((before.argmax(-1) == after.argmax(-1)).float().mean())
    return metrics


def _loss(model: Any, tokens: Tensor, run: Any, unsteered: Any, settings: SteerConfig) -> dict[str, float]:
    """Next-token loss over ``tokens`` (padding left out), a batch at a time: a batch's logits over a large
    vocabulary are the biggest thing here (64 x 128 x 50,257 floats would be 1.6 GB)."""
    import torch

    pad = model.tokenizer.pad_token_id if model.tokenizer is not None else None
    every = "front" if settings.positions == "front" else "all"

    def per_token(steered: bool) -> Tensor:
        losses = []
        for start in range(0, len(tokens), settings.batch_size_prompts):
            batch = tokens[start:start + settings.batch_size_prompts]
            logits = run(batch, steered, positions=every)[:, :-1]
            losses.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none"))
        return torch.cat(losses)

    mask = tokens[:, 1:] != pad if pad is not None else torch.ones_like(tokens[:, 1:], dtype=torch.bool)
    found = {"loss_before": float(unsteered("loss", lambda: per_token(False))[mask].mean()),
             "loss": float(per_token(True)[mask].mean())}
    found["loss_delta"] = found["loss"] - found["loss_before"]
    return found


def _completions(model: Any, vector: Tensor, layer: int, kind: str, settings: SteerConfig) -> str:
    import torch

    lines = [f"# Completions, coefficient {settings.coefficient:g} at blocks.{layer}.hook_{kind} "
             f"({settings.positions})", ""]
    for index, prompt in enumerate(settings.generate):
        texts = {}
        for name, steered in (("unsteered", None), ("steered", vector)):
            generator = torch.Generator().manual_seed(settings.seed + index)
            texts[name] = generate(model, prompt, steered, layer, kind, settings.coefficient, settings.positions,
                                   start=settings.start, max_new_tokens=settings.max_new_tokens,
                                   temperature=settings.temperature, top_p=settings.top_p, generator=generator)
        lines += [f"## {prompt!r}", "", f"- unsteered: {texts['unsteered']}", f"- steered: {texts['steered']}", ""]
    return "\n".join(lines)
