"""A synthetic world of facts for the toy factual-recall task (interp_pipeline.facts.task).

Subjects are made-up names of 1-3 word pieces ("Vor", "Ka Lin", "Ta Mo Rek"): pieces are
shared between subjects, so a subject is only identified by its last piece *in context*,
which is what Meng et al. (2022) find models do at the last subject token. Each subject
has one object per relation (a single word: a city, a language, ...), and each relation
is phrased by several templates, some with the subject first ("S lives in") and some
with it in the middle ("the home of S is"), so the subject's position varies.

Held out: for each (subject, relation) one template, rotating with the subject, never
appears in training. Every template is trained on with other subjects, so a held-out
prompt asks whether a fact learned in one phrasing is recalled in another (the
generalisation ROME's evaluation measures), not whether unseen words mean anything.

Everything is a function of ``seed`` and the sizes, through ``random.Random``: the
trainer, the prompt-set stage and the tests build the same world.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

# Word pieces subjects are built from: capitalised so they read as names in figures.
PIECES = (
    "Vor", "Ka", "Lin", "Ta", "Mo", "Rek", "Sul", "Bri", "Den", "Fa", "Gor", "Hal", "Ish", "Jun",
    "Kel", "Lor", "Mab", "Nix", "Ost", "Pel", "Quin", "Ros", "Sef", "Tul", "Ulm", "Vek", "Wen", "Yar",
)

# relation -> (templates, objects). "{S}" marks the subject; the object follows the template.
RELATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lives_in": (
        ("{S} lives in", "the home of {S} is", "{S} is a resident of", "the city where {S} lives is"),
        ("Paris", "Rome", "Tokyo", "Cairo", "Lima", "Oslo", "Delhi", "Berlin", "Madrid", "Seoul"),
    ),
    "speaks": (
        ("{S} speaks", "the language of {S} is", "{S} is fluent in", "the mother tongue of {S} is"),
        ("French", "Italian", "Japanese", "Arabic", "Spanish", "Hindi", "German", "Korean", "Greek", "Dutch"),
    ),
    "works_as": (
        ("{S} works as a", "the job of {S} is", "{S} is employed as a", "by profession {S} is a"),
        ("doctor", "lawyer", "farmer", "pilot", "teacher", "baker", "nurse", "painter", "chef", "judge"),
    ),
    "plays": (
        ("{S} plays the", "the instrument of {S} is the", "{S} is a player of the", "on stage {S} plays the"),
        ("piano", "violin", "guitar", "flute", "drums", "cello", "harp", "trumpet", "organ", "banjo"),
    ),
}
RELATION_NAMES = tuple(RELATIONS)
MAX_SUBJECT_PIECES = 3
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class FactPrompt:
    """One prompt: ``text`` is the template filled with the subject (the object not included);
    ``subject_span`` the subject's (start, end) character span in ``text``."""

    text: str
    subject: str
    object: str
    subject_span: tuple[int, int]
    subject_id: int
    relation: int
    template: int
    heldout: bool


@lru_cache(maxsize=16)
def subjects(n_subjects: int, seed: int) -> tuple[str, ...]:
    """``n_subjects`` distinct subjects of 1-3 pieces (about an eighth of one piece), in a fixed order.

    Multi-piece subjects come in pairs with the same pieces in another order ("Ka Lin" and
    "Lin Ka"), with unrelated facts: a subject is then identified only by its pieces *in order*,
    which the last subject token sees from its neighbours, not by the bag of pieces a later
    token could gather by attention (a shortcut small models otherwise take, skipping the
    subject-position lookup Meng et al. find in GPT).
    """
    rng = random.Random(f"subjects:{seed}")
    singles = min(len(PIECES), max(1, n_subjects // 8))
    chosen: dict[str, None] = dict.fromkeys(rng.sample(PIECES, singles))
    limit = len(PIECES) + len(PIECES) * (len(PIECES) - 1) + len(PIECES) * (len(PIECES) - 1) * (len(PIECES) - 2)
    if n_subjects > limit:
        raise ValueError(f"at most {limit} subjects can be built from {len(PIECES)} pieces, asked for {n_subjects}")
    while len(chosen) < n_subjects:
        pieces = rng.sample(PIECES, rng.choice((2, 2, 3)))
        for order in (pieces, pieces[::-1]):
            if len(chosen) < n_subjects:
                chosen.setdefault(" ".join(order))
    return tuple(chosen)


@lru_cache(maxsize=16)
def objects_of(n_subjects: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """``objects_of(...)[subject][relation]``: the index of the subject's object in that relation's list."""
    rng = random.Random(f"objects:{seed}")
    return tuple(tuple(rng.randrange(len(RELATIONS[r][1])) for r in RELATION_NAMES) for _ in range(n_subjects))


def heldout_template(subject_id: int, relation: int, seed: int) -> int:
    """The template kept out of training for this (subject, relation): rotating, so each
    template is held out for a quarter of the subjects and trained on with the rest."""
    n_templates = len(RELATIONS[RELATION_NAMES[relation]][0])
    return (subject_id + relation + seed) % n_templates


def fill(template: str, subject: str) -> tuple[str, tuple[int, int]]:
    start = template.index("{S}")
    text = template.replace("{S}", subject)
    return text, (start, start + len(subject))


def all_prompts(n_subjects: int, seed: int) -> list[FactPrompt]:
    """Every (subject, relation, template) prompt of the world, in a fixed order."""
    names = subjects(n_subjects, seed)
    objects = objects_of(n_subjects, seed)
    prompts = []
    for subject_id, subject in enumerate(names):
        for relation, relation_name in enumerate(RELATION_NAMES):
            templates, values = RELATIONS[relation_name]
            held = heldout_template(subject_id, relation, seed)
            for template, pattern in enumerate(templates):
                text, span = fill(pattern, subject)
                prompts.append(FactPrompt(text, subject, values[objects[subject_id][relation]], span, subject_id,
                                          relation, template, template == held))
    return prompts


def vocabulary() -> list[str]:
    """Every word a prompt or an object can contain, in a fixed order (template words, pieces, objects)."""
    words: dict[str, None] = {}
    for templates, _ in RELATIONS.values():
        for template in templates:
            words.update(dict.fromkeys(w for w in template.split() if w != "{S}"))
    words.update(dict.fromkeys(PIECES))
    for _, values in RELATIONS.values():
        words.update(dict.fromkeys(values))
    return list(words)


def longest_prompt_words() -> int:
    """Words in the longest prompt: its longest template with a subject of the most pieces."""
    return max(len(t.split()) - 1 + MAX_SUBJECT_PIECES for templates, _ in RELATIONS.values() for t in templates)
