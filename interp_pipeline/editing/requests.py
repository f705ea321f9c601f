"""Edit requests on the toy factual-recall world (interp_pipeline.facts.world), and the prompt
sets ROME's evaluation reads: the rewrite prompt, paraphrases, neighbours and the subject's other facts.

A request is (subject, relation, new object). As in Meng et al. (2022)'s CounterFact evaluation:
efficacy reads the prompt the edit was optimised on; generalisation (paraphrase) the relation's other
templates for the same subject; specificity (neighbourhood) the same relation's prompts for other
subjects, whose facts must not move; and the subject's other relations ("essence") are kept by the
KL term and reported too.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.editing.rome import Prompts
from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.facts.world import RELATION_NAMES, RELATIONS, objects_of, subjects
from interp_pipeline.facts.task import facts_task

if TYPE_CHECKING:
    from interp_pipeline.editing.config import RomeConfig


@dataclass(frozen=True)
class Request:
    subject_id: int
    subject: str
    relation: int
    relation_name: str
    true_object: str
    new_object: str


@dataclass(frozen=True)
class RequestPrompts:
    rewrite: Prompts  # the one template the value is optimised on
    key_prefixes: Prompts  # every template of every relation for the subject: prefixes to average k* over
    paraphrase: Prompts  # the relation's other templates for the subject
    neighbourhood: Prompts  # the relation's templates for other subjects
    neighbourhood_objects: list[str]
    essence: Prompts  # the subject's other relations
    essence_objects: list[str]


def _prompts(model: Any, facts: Sequence[Any]) -> Prompts:
    from interp_pipeline.facts.prompts import subject_last_token

    rows, last = zip(*(subject_last_token(model, p.text, p.subject_span) for p in facts))
    return Prompts.of(rows, last, pad=int(model.tokenizer.pad_token_id or 0))


def check_edits(settings: RomeConfig) -> None:
    """Pre-flight: the facts world is given, each request is one of its facts (:func:`check_requests`), and
    there is at least one edit."""
    if not settings.task:
        raise ConfigError("task", "expected the facts task's config (name: facts, ...), found none")
    check_requests(settings.task, settings.requests)
    if not (settings.requests or settings.n_random_requests):
        raise ConfigError("n_random_requests", "expected at least one edit: requests or n_random_requests >= 1")


def check_requests(task: Mapping[str, Any], requests: Sequence[Mapping[str, Any]]) -> None:
    """Pre-flight: each request names a subject, relation and single-token object of the world."""
    made = facts_task(task)
    names, current = subjects(made.n_subjects, made.seed), objects_of(made.n_subjects, made.seed)
    for i, request in enumerate(requests):
        subject, relation, new = request.get("subject"), request.get("relation"), request.get("new_object")
        if subject not in names:
            raise ConfigError(f"requests[{i}].subject", f"expected a subject of the facts world, found {subject!r}",
                              suggestion=did_you_mean(str(subject), names) or f"e.g. {names[0]!r}")
        if relation not in RELATION_NAMES:
            raise ConfigError(f"requests[{i}].relation", f"expected one of {one_of(RELATION_NAMES)}, found "
                                                         f"{relation!r}", suggestion=did_you_mean(str(relation),
                                                                                                  RELATION_NAMES))
        objects = RELATIONS[relation][1]
        if not isinstance(new, str) or len(new.split()) != 1:
            raise ConfigError(f"requests[{i}].new_object", f"expected an object of one token, found {new!r} "
                                                           f"({len(str(new).split())} tokens)")
        if new not in objects:
            raise ConfigError(f"requests[{i}].new_object", f"expected an object of {relation} ({one_of(objects)}), "
                                                           f"found {new!r}", suggestion=did_you_mean(new, objects))
        if objects[current[names.index(subject)][RELATION_NAMES.index(relation)]] == new:
            raise ConfigError(f"requests[{i}].new_object", f"expected an object other than {subject}'s current one, "
                                                           f"found {new!r}, which is already its {relation} object")


def make_requests(task: Mapping[str, Any], requests: Sequence[Mapping[str, Any]], n_random: int,
                  seed: int) -> list[Request]:
    """The configured requests, then ``n_random`` drawn (subject, relation, another object of it)."""
    made = facts_task(task)
    names, objects = subjects(made.n_subjects, made.seed), objects_of(made.n_subjects, made.seed)

    def request(subject_id: int, relation: int, new: str) -> Request:
        values = RELATIONS[RELATION_NAMES[relation]][1]
        return Request(subject_id, names[subject_id], relation, RELATION_NAMES[relation],
                       values[objects[subject_id][relation]], new)

    chosen = [request(names.index(r["subject"]), RELATION_NAMES.index(r["relation"]), r["new_object"])
              for r in requests]
    rng = random.Random(f"rome_requests:{seed}")
    for _ in range(n_random):
        subject_id, relation = rng.randrange(len(names)), rng.randrange(len(RELATION_NAMES))
        values = RELATIONS[RELATION_NAMES[relation]][1]
        true = objects[subject_id][relation]
        chosen.append(request(subject_id, relation, values[rng.choice([v for v in range(len(values)) if v != true])]))
    return chosen


def request_prompts(model: Any, task: Mapping[str, Any], request: Request, n_neighbours: int,
                    seed: int) -> RequestPrompts:
    made = facts_task(task)
    prompts = made.prompts()
    own = [p for p in prompts if p.subject_id == request.subject_id]
    same_relation = [p for p in own if p.relation == request.relation]
    # Optimised on the first template the model was trained on for this fact (held-out ones generalise).
    rewrite = next(p for p in same_relation if not p.heldout)
    others = sorted({p.subject_id for p in prompts} - {request.subject_id})
    neighbours = random.Random(f"rome_neighbours:{seed}:{request.subject_id}").sample(others,
                                                                                       min(n_neighbours, len(others)))
    neighbourhood = [p for p in prompts if p.subject_id in neighbours and p.relation == request.relation]
    essence = [p for p in own if p.relation != request.relation]
    return RequestPrompts(
        rewrite=_prompts(model, [rewrite]), key_prefixes=_prompts(model, own),
        paraphrase=_prompts(model, [p for p in same_relation if p is not rewrite]),
        neighbourhood=_prompts(model, neighbourhood), neighbourhood_objects=[p.object for p in neighbourhood],
        essence=_prompts(model, essence), essence_objects=[p.object for p in essence])
