"""A batch of edit requests as prompt sets: what MEMIT (and ROME, one after another) write and are scored on.

Requests on the toy facts world ({subject, relation, new_object}, interp_pipeline.editing.requests),
counterfact-style text ({prompt, subject, new_object, true_object, paraphrases, neighbourhood}: Meng et
al.'s CounterFact records, for real models), and random facts of the world drawn so that a batch can be scored as a whole: the facts are distinct, ``n_neighbours``
subjects are never edited (their prompts of each request's relation are its neighbourhood: specificity),
and every edited subject keeps one relation no request of the batch touches (its prompts are the
subject's other facts, "essence", and the KL term's prompts). Batch sizes read the first N requests, so
a larger batch contains the smaller ones.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.editing.requests import Request, _prompts, check_requests, make_requests
from interp_pipeline.editing.rome import Prompts
from interp_pipeline.facts.task import facts_task
from interp_pipeline.facts.world import RELATION_NAMES, RELATIONS, objects_of, subjects

if TYPE_CHECKING:
    from interp_pipeline.editing.config import MemitConfig


@dataclass(frozen=True)
class EditCase:
    subject: str  # edits of one subject share MEMIT's target (interp_pipeline.editing.scale)
    label: str  # "subject / relation: true -> new"
    new: int  # the new object's token id
    true: int  # the current object's
    rewrite: Prompts  # one prompt: the value is optimised on it
    key_prompts: Prompts  # prefixes the subject's key is averaged over
    paraphrase: Prompts
    neighbourhood: Prompts
    essence: Prompts


def _pool(task: Mapping[str, Any], requests: Sequence[Mapping[str, Any]], n_neighbours: int,
          seed: int) -> tuple[list[int], dict[int, int]]:
    """The never-edited subjects, and the relation each other subject keeps unedited."""
    made = facts_task(task)
    names = subjects(made.n_subjects, made.seed)
    asked = {names.index(r["subject"]) for r in requests}
    rng = random.Random(f"memit_pool:{seed}")
    free = [s for s in range(len(names)) if s not in asked]
    neighbours = sorted(rng.sample(free, min(n_neighbours, len(free))))
    asked_relations = {(names.index(r["subject"]), RELATION_NAMES.index(r["relation"])) for r in requests}
    kept: dict[int, int] = {}
    for s in range(len(names)):
        if s in neighbours:
            continue
        open_relations = [r for r in range(len(RELATION_NAMES)) if (s, r) not in asked_relations]
        kept[s] = rng.choice(open_relations) if open_relations else -1
    return neighbours, kept


def _is_text(request: Mapping[str, Any]) -> bool:
    return "prompt" in request


def text_of(prompt: str, subject: str) -> str:
    """A prompt with its subject in place: CounterFact writes "{} is located in", or the text itself."""
    return prompt.format(subject) if "{}" in prompt else prompt


def check_text_request(i: int, request: Mapping[str, Any]) -> None:
    """Pre-flight of one counterfact-style request: its subject is in its prompt and paraphrases, and the new
    object is not the one it has."""
    subject = request.get("subject")
    if not isinstance(subject, str) or not subject:
        raise ConfigError(f"requests[{i}].subject", f"expected the subject's text, found {subject!r}")
    for key, prompt in [("prompt", request["prompt"]),
                        *((f"paraphrases[{j}]", p) for j, p in enumerate(request.get("paraphrases") or []))]:
        if not isinstance(prompt, str) or subject not in text_of(prompt, subject):
            raise ConfigError(f"requests[{i}].subject", f"expected {subject!r} in the request's {key}, found "
                                                        f"{prompt!r}", suggestion="write it there, or '{}' for it")
    new, true = request.get("new_object"), request.get("true_object")
    if not isinstance(new, str) or not new.strip():
        raise ConfigError(f"requests[{i}].new_object", f"expected the new object's text, found {new!r}")
    if true is not None and new.strip() == str(true).strip():
        raise ConfigError(f"requests[{i}].new_object", f"expected an object other than {subject}'s current one, "
                                                       f"found {new!r}, which is its true_object")
    for j, item in enumerate(request.get("neighbourhood") or []):
        if not isinstance(item, str):
            raise ConfigError(f"requests[{i}].neighbourhood[{j}]", f"expected a prompt, found {item!r}")


def check_batch(settings: MemitConfig) -> None:
    """Pre-flight: text requests name their subject in their prompts and a new object; the facts world is given
    when its facts are asked for, those requests are its facts and distinct, and the random ones fit
    beside the never-edited neighbours and each subject's kept relation."""
    text = [r for r in settings.requests if _is_text(r)]
    for i, r in enumerate(settings.requests):
        if _is_text(r):
            check_text_request(i, r)
    world = [r for r in settings.requests if not _is_text(r)]
    if not world and not settings.n_random_requests:
        if not text:
            raise ConfigError("n_random_requests", "expected at least one edit: requests or n_random_requests >= 1")
        _check_sizes(settings, len(text))
        return
    if not settings.task:
        raise ConfigError("task", "expected the facts task's config (name: facts, ...), found none")
    if text:
        raise ConfigError("requests", "expected requests of one kind: the facts world's {subject, relation, "
                                      "new_object} or text {prompt, subject, new_object}, found both")
    check_requests(settings.task, settings.requests)
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(settings.requests):
        if (r["subject"], r["relation"]) in seen:
            raise ConfigError(f"requests[{i}]", f"expected each fact once in a batch, found {r['subject']} / "
                                                f"{r['relation']} twice")
        seen.add((r["subject"], r["relation"]))
    n = facts_task(settings.task).n_subjects
    kept_out = min(settings.n_neighbours, n - len({r["subject"] for r in settings.requests}))
    room = (n - kept_out) * (len(RELATION_NAMES) - 1) - len(settings.requests)
    if settings.n_random_requests > room:
        raise ConfigError("n_random_requests", f"expected at most {room} random edits ({n} subjects, "
                                               f"{kept_out} kept unedited as neighbours, one relation "
                                               f"kept per edited subject), found {settings.n_random_requests}")
    _check_sizes(settings, len(settings.requests) + settings.n_random_requests)


def _check_sizes(settings: MemitConfig, total: int) -> None:
    for size in settings.sizes:
        if not 1 <= size <= total:
            raise ConfigError("sizes", f"expected batch sizes in 1..{total} (the requests), found {size}")


def batch_requests(settings: MemitConfig) -> tuple[list[Request], list[int], dict[int, int]]:
    """The configured requests, then random distinct facts of subjects outside the neighbours, never a
    subject's kept relation; with the neighbours and kept relations."""
    neighbours, kept = _pool(settings.task, settings.requests, settings.n_neighbours, settings.seed)
    chosen = make_requests(settings.task, list(settings.requests), 0, settings.seed)
    taken = {(r.subject_id, r.relation) for r in chosen}
    candidates = [(s, r) for s, keep in kept.items() for r in range(len(RELATION_NAMES))
                  if r != keep and (s, r) not in taken]
    rng = random.Random(f"memit_requests:{settings.seed}")
    made = facts_task(settings.task)
    names, objects = subjects(made.n_subjects, made.seed), objects_of(made.n_subjects, made.seed)
    for s, r in rng.sample(candidates, settings.n_random_requests):
        values = RELATIONS[RELATION_NAMES[r]][1]
        true = objects[s][r]
        new = rng.choice([v for v in range(len(values)) if v != true])
        chosen.append(Request(s, names[s], r, RELATION_NAMES[r], values[true], values[new]))
    return chosen, neighbours, kept


def _empty() -> Prompts:
    import torch

    return Prompts(torch.zeros((0, 1), dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                   torch.zeros(0, dtype=torch.int64))


def edit_cases(model: Any, settings: MemitConfig) -> list[EditCase]:
    """The batch's cases: text requests as written, else the facts world's."""
    if any(_is_text(r) for r in settings.requests):
        return [text_case(model, r) for r in settings.requests]
    return toy_cases(model, settings)


def _first_token(model: Any, text: str) -> int:
    # A multi-token object is scored and optimised on its first token (CounterFact's objects mostly are one).
    return int(model.tokenizer(text, add_special_tokens=False)["input_ids"][0])


def text_case(model: Any, request: Mapping[str, Any]) -> EditCase:
    """A counterfact-style request's prompt sets: the prompt, its paraphrases (generalisation), neighbourhood
    prompts about other subjects (specificity) and "<subject> is a" (the paper's KL prompt, kept: essence)."""
    from interp_pipeline.facts.prompts import subject_last_token
    from interp_pipeline.models.tokens import bos_id

    subject = request["subject"]
    pad = int(model.tokenizer.pad_token_id or 0)

    def with_subject(prompts: Sequence[str]) -> Prompts:
        if not prompts:
            return _empty()
        texts = [text_of(p, subject) for p in prompts]
        rows, last = zip(*(subject_last_token(model, t, (t.index(subject), t.index(subject) + len(subject)))
                           for t in texts))
        return Prompts.of(rows, last, pad=pad)

    def plain(prompts: Sequence[str]) -> Prompts:
        if not prompts:
            return _empty()
        rows = [[bos_id(model), *model.tokenizer(p, add_special_tokens=False)["input_ids"]] for p in prompts]
        return Prompts.of(rows, [len(r) - 1 for r in rows], pad=pad)

    paraphrases = list(request.get("paraphrases") or [])
    true = request.get("true_object")
    return EditCase(subject, f"{subject}: {true} -> {request['new_object']}", _first_token(model, request["new_object"]),
                    _first_token(model, true) if true else -1, with_subject([request["prompt"]]),
                    with_subject([request["prompt"], *paraphrases]), with_subject(paraphrases),
                    plain(list(request.get("neighbourhood") or [])), with_subject([f"{subject} is a"]))


def toy_cases(model: Any, settings: MemitConfig) -> list[EditCase]:
    """Each request's prompt sets on the facts world (the rewrite prompt: its first training template)."""
    chosen, neighbours, kept = batch_requests(settings)
    prompts = facts_task(settings.task).prompts()
    by_fact: dict[tuple[int, int], list[Any]] = {}
    for p in prompts:
        by_fact.setdefault((p.subject_id, p.relation), []).append(p)
    ids = model.tokenizer.convert_tokens_to_ids
    cases = []
    for r in chosen:
        own = by_fact[(r.subject_id, r.relation)]
        rewrite = next(p for p in own if not p.heldout)
        keep = kept.get(r.subject_id, -1)
        essence = by_fact.get((r.subject_id, keep), []) if keep >= 0 else []
        neighbourhood = [p for s in neighbours for p in by_fact[(s, r.relation)]]
        subject_prompts = [p for (s, _), ps in by_fact.items() if s == r.subject_id for p in ps]
        cases.append(EditCase(
            r.subject, f"{r.subject} / {r.relation_name}: {r.true_object} -> {r.new_object}", int(ids(r.new_object)),
            int(ids(r.true_object)), _prompts(model, [rewrite]), _prompts(model, subject_prompts),
            _prompts(model, [p for p in own if p is not rewrite]), _prompts(model, neighbourhood),
            _prompts(model, essence) if essence else _empty()))
    return cases
