"""Indirect-object-identification prompts (Wang et al. 2022), clean and corrupted, with role spans.

"When John and Mary went to the store, John gave a drink to" -> " Mary". The names'
roles: IO (the indirect object, the answer), S1 and S2 (the subject's first and
second mention); END is the prompt's last token, whose logits predict the answer.
The templates, places and objects are those of the paper's code (Redwood Research's
``ioi_dataset.py``): 15 BABA templates ("[B] and [A] ... [B] gave ... to [A]") and
their ABBA versions, the first two names swapped.

Pure Python (no torch), seeded with ``random.Random(seed)``, so the same generator
feeds the toy IOI task's training batches and the patching stages' prompt pairs.
The role spans are character spans, so any tokenizer with offsets can place them
(interp_pipeline/patching/prompt_pairs.py).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of

# Wang et al.'s BABA_TEMPLATES, in their order (a template is picked by its index).
BABA_TEMPLATES = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
)


def _abba(template: str) -> str:
    """The first clause's two names swapped, as the paper's ABBA_TEMPLATES are built."""
    return template.replace("[B]", "[X]", 1).replace("[A]", "[B]", 1).replace("[X]", "[A]", 1)


ABBA_TEMPLATES = tuple(_abba(t) for t in BABA_TEMPLATES)
TEMPLATES = {"ABBA": ABBA_TEMPLATES, "BABA": BABA_TEMPLATES}
ORDERS = tuple(TEMPLATES)

# Common first names, each one GPT-2 token with its leading space (" John"): most from
# the paper's list, plus the TransformerLens demo's (Tom, Dan, Sid, Martin). A name
# that is several tokens in some other tokenizer makes its prompts misaligned, and
# prompt_pairs.tokenize_pairs drops (and counts) them.
NAMES = (
    "John", "Mary", "Michael", "Sarah", "David", "Amy", "James", "Lisa", "Robert", "Laura",
    "Daniel", "Rachel", "Thomas", "Emily", "William", "Jessica", "Richard", "Jennifer", "Joseph", "Michelle",
    "Paul", "Kelly", "Mark", "Rebecca", "Andrew", "Elizabeth", "Ryan", "Megan", "Kevin", "Nicole",
    "Eric", "Heather", "Brian", "Amanda", "Jason", "Adam", "Steven", "Charles", "Patrick", "Scott",
    "Tom", "Dan", "Sid", "Martin",
)
PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
OBJECTS = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")
CORRUPTIONS = ("abc", "s2_swap")
ROLES = ("io", "s1", "s2", "end")

_SLOT = re.compile(r"\[(A|B|PLACE|OBJECT)\]")


@dataclass(frozen=True)
class IOIPrompt:
    """One clean/corrupted pair. Spans are ``(start, end)`` character offsets of each role's
    word (without its leading space) in ``clean`` and in ``corrupted``; ``end`` is the
    prompt's last word. ``answer``/``wrong`` are the clean IO and S with a leading space,
    for both texts: patching asks how far the corrupted run moves the clean answer."""

    clean: str
    corrupted: str
    answer: str
    wrong: str
    clean_spans: dict[str, tuple[int, int]]
    corrupted_spans: dict[str, tuple[int, int]]
    template: int
    order: str
    io: str
    s: str
    corrupted_s2: str  # the name at S2 in the corrupted text (C for "abc", IO for "s2_swap")
    place: str
    object: str


# ---------------------------------------------------------------- options


def check_options(
    *,
    n: int | None = None,
    seed: int | None = None,
    templates: Sequence[int] | None = None,
    orders: Sequence[str] = ORDERS,
    corruption: str = "abc",
    names: Sequence[str] | None = None,
) -> None:
    """ConfigError naming the option (``templates``, ``orders[1]``, ``corruption``...) for a bad value."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ConfigError("n", f"expected an integer >= 0, found {n!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError("seed", f"expected an integer, found {seed!r}")
    if templates is not None:
        if isinstance(templates, (str, bytes)) or not isinstance(templates, Sequence) or not templates:
            raise ConfigError("templates", f"expected null (all) or a non-empty list of template indices, "
                                           f"found {templates!r}")
        for i, index in enumerate(templates):
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(BABA_TEMPLATES):
                raise ConfigError(f"templates[{i}]", f"expected a template index 0..{len(BABA_TEMPLATES) - 1}, "
                                                     f"found {index!r}")
    if isinstance(orders, str) or not isinstance(orders, Sequence) or not orders:
        raise ConfigError("orders", f"expected a non-empty list of {one_of(ORDERS)}, found {orders!r}")
    for i, order in enumerate(orders):
        if order not in TEMPLATES:
            raise ConfigError(f"orders[{i}]", f"expected one of {one_of(ORDERS)}, found {order!r}",
                              suggestion=did_you_mean(str(order).upper(), ORDERS))
    if corruption not in CORRUPTIONS:
        raise ConfigError("corruption", f"expected one of {one_of(CORRUPTIONS)}, found {corruption!r}",
                          suggestion=did_you_mean(str(corruption), CORRUPTIONS))
    if names is not None:
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ConfigError("names", f"expected null (the built-in list) or a list of names, found {names!r}")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name or name != name.strip() or len(name.split()) != 1:
                raise ConfigError(f"names[{i}]", f"expected one word without spaces (' John' is 'John'), "
                                                 f"found {name!r}")
        if len(set(names)) != len(names):
            raise ConfigError("names", "expected distinct names, found duplicates")
        # ABC needs a third name; even s2_swap draws one, so that the clean prompts do not
        # depend on the corruption.
        if len(names) < 3:
            raise ConfigError("names", f"expected at least 3 names (IO, S and a third), found {len(names)}")


# ---------------------------------------------------------------- generation


@lru_cache(maxsize=None)
def _pieces(order: str, index: int, spaced: bool) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """A template as literal text and slots: ``texts[k]`` precedes ``slots[k]``, the last text ends it.

    Slots are a role ("io", "s1", "s2") or "PLACE"/"OBJECT". The final " [A]" (the answer)
    is cut off; ``spaced`` puts a space before "," and "." so that every token is a word.
    """
    template = TEMPLATES[order][index]
    assert template.endswith(" [A]"), template
    template = template[: -len(" [A]")]
    if spaced:
        template = re.sub(r"([,.])", r" \1", template)
    texts, slots, seen = [], [], {"A": 0, "B": 0}
    start = 0
    for match in _SLOT.finditer(template):
        texts.append(template[start:match.start()])
        kind = match.group(1)
        if kind in seen:
            seen[kind] += 1
            slots.append({("A", 1): "io", ("B", 1): "s1", ("B", 2): "s2"}[(kind, seen[kind])])
        else:
            slots.append(kind)
        start = match.end()
    texts.append(template[start:])
    assert sorted(s for s in slots if s.islower()) == ["io", "s1", "s2"], template
    return tuple(texts), tuple(slots)


def _fill(order: str, index: int, spaced: bool, values: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    texts, slots = _pieces(order, index, spaced)
    parts: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    length = 0
    for text, slot in zip(texts, slots):
        parts.append(text)
        length += len(text)
        value = values[slot]
        if slot.islower():
            spans[slot] = (length, length + len(value))
        parts.append(value)
        length += len(value)
    parts.append(texts[-1])
    filled = "".join(parts)
    last_space = filled.rfind(" ")
    spans["end"] = (last_space + 1, len(filled))
    return filled, {role: spans[role] for role in ROLES}


def generate_ioi(
    n: int,
    seed: int,
    *,
    templates: Sequence[int] | None = None,
    orders: Sequence[str] = ORDERS,
    corruption: str = "abc",
    names: Sequence[str] | None = None,
    places: Sequence[str] = PLACES,
    objects: Sequence[str] = OBJECTS,
    spaced_punctuation: bool = False,
    allow_pair: Callable[[str, str], bool] | None = None,
) -> list[IOIPrompt]:
    """``n`` IOI prompts drawn with ``random.Random(seed)``: the same arguments give the same prompts.

    Each prompt: a template (uniform over ``templates``, indices into BABA_TEMPLATES;
    default all 15), an order (ABBA: IO first, BABA: S first), IO and S distinct names, a
    third name C distinct from both, a place and an object. The corrupted text changes
    only S2: to C (``corruption="abc"``, Wang et al.'s ABC distribution at S2) or to the IO
    name (``"s2_swap"``, TransformerLens's demo: "When John and Mary went to the shops,
    Mary gave the bag to"). C is drawn for both corruptions, so the clean prompts do not
    depend on it. ``allow_pair(io, s)`` (optional) restricts the name pairs, redrawing
    the others: how the toy task keeps held-out pairs out of training.
    """
    check_options(n=n, seed=seed, templates=templates, orders=orders, corruption=corruption, names=names)
    pool = list(NAMES if names is None else names)
    indices = list(range(len(BABA_TEMPLATES)) if templates is None else templates)
    orders = list(orders)
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        index = rng.choice(indices)
        order = rng.choice(orders)
        for _attempt in range(10_000):
            io, s = rng.sample(pool, 2)
            if allow_pair is None or allow_pair(io, s):
                break
        else:
            raise ValueError("allow_pair rejected 10,000 name pairs in a row")
        c = rng.choice([name for name in pool if name not in (io, s)])
        place, obj = rng.choice(places), rng.choice(objects)
        values = {"io": io, "s1": s, "s2": s, "PLACE": place, "OBJECT": obj}
        clean, clean_spans = _fill(order, index, spaced_punctuation, values)
        s2 = c if corruption == "abc" else io
        corrupted, corrupted_spans = _fill(order, index, spaced_punctuation, {**values, "s2": s2})
        prompts.append(IOIPrompt(
            clean=clean, corrupted=corrupted, answer=" " + io, wrong=" " + s,
            clean_spans=clean_spans, corrupted_spans=corrupted_spans, template=index, order=order,
            io=io, s=s, corrupted_s2=s2, place=place, object=obj,
        ))
    return prompts


def toy_vocabulary(
    names: Sequence[str] | None = None,
    places: Sequence[str] = PLACES,
    objects: Sequence[str] = OBJECTS,
) -> list[str]:
    """Every whitespace-separated word the templates can produce with ``spaced_punctuation=True``
    (so "," and "." are words), names included: the word-level toy tokenizer's vocabulary.

    In a fixed order (template words as they first appear, then names, places, objects),
    so that token ids do not change between runs.
    """
    words: dict[str, None] = {}
    for order in ORDERS:
        for index in range(len(BABA_TEMPLATES)):
            texts, _ = _pieces(order, index, True)
            for text in texts:
                words.update(dict.fromkeys(text.split()))
    for group in (NAMES if names is None else names, places, objects):
        words.update(dict.fromkeys(group))
    return list(words)
