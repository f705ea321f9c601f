"""Greater-Than prompt pairs (Hanna, Liu and Variengien 2023, "How does GPT-2 compute greater-than?").

Clean: "The war lasted from the year 1732 to the year 17"; the model should put its probability on
the two-digit years above 32. Corrupted: the same sentence with the start year's last two digits
"01", where every year is "above". The metric (patching/metrics.py ``prob_diff``) is the
probability of the years above YY minus that of the years at or below it, at the last position.

The sentence only means this when GPT-2's tokenizer splits it as the paper's did: the start year
as a century token (" 17") and a two-digit token ("32"), and each of "00" .. "99" one token. We
build the prompts from the model's own tokenizer and refuse (before any work) a tokenizer that
does not split them so. The nouns are event nouns of our own choosing that GPT-2 encodes as one
token with a leading space (checked too); the paper used its own list of 120.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.circuits.config import GreaterThanConfig

TEMPLATE = "The {noun} lasted from the year {century}{yy} to the year {century}"
NOUNS = ["war", "expedition", "project", "campaign", "siege", "strike", "reign", "journey", "trial", "crisis",
         "voyage", "occupation", "conflict", "rebellion", "drought", "famine", "plague", "revolution", "dispute",
         "construction", "tour", "program", "mission", "festival", "exhibition", "contract", "lease", "marriage"]
KEYS = ("clean", "corrupted", "end", "length", "candidates", "candidate_sign", "threshold")


@dataclass(frozen=True)
class PairsShape:
    """What a pairs stage's output holds, for a metric's pre-flight (circuits/run.py)."""

    keys: tuple[str, ...]


def pairs_shape(settings: GreaterThanConfig, inputs: Any) -> PairsShape:
    return PairsShape(KEYS)


def check_settings(settings: GreaterThanConfig) -> None:
    for index, century in enumerate(settings.centuries):
        if not 10 <= int(century) <= 19:
            raise ConfigError(f"centuries[{index}]", f"expected a century from 10 to 19, found {century}")
    if not settings.centuries:
        raise ConfigError("centuries", "expected at least one century, found none")


def check_inputs(settings: GreaterThanConfig, inputs: Any) -> None:
    """Tokenize with the model's tokenizer before the model loads (``inputs``: the inputs' shapes)."""
    model = inputs.get("model")
    if model is not None and getattr(model, "tokenizer", None) is not None:
        _records(settings, model.tokenizer)


def _year_tokens(tokenizer: Any) -> list[int]:
    ids = []
    for yy in range(100):
        piece = tokenizer.encode(f"{yy:02d}", add_special_tokens=False)
        if len(piece) != 1:
            raise ConfigError("data.params", f"expected the model's tokenizer to encode every two-digit year as one "
                                             f"token (Hanna et al. 2023), found {yy:02d} -> {len(piece)} tokens")
        ids.append(piece[0])
    return ids


def _valid_years(settings: GreaterThanConfig, tokenizer: Any, years: list[int]) -> dict[int, list[int]]:
    """Per century, the YY (02 .. 98) whose year GPT-2 splits as a century and a two-digit token; as in the
    paper, years the tokenizer keeps whole (" 1440") are not used, and a century whose " XX01" is not split
    is not used at all."""
    valid = {}
    for century in settings.centuries:
        century_id = tokenizer.encode(f" {century}", add_special_tokens=False)
        if len(century_id) != 1 or tokenizer.encode(f" {century}01", add_special_tokens=False) != [century_id[0], years[1]]:
            continue
        kept = [yy for yy in range(2, 99)
                if tokenizer.encode(f" {century}{yy:02d}", add_special_tokens=False) == [century_id[0], years[yy]]]
        if kept:
            valid[int(century)] = kept
    return valid


def _records(settings: GreaterThanConfig, tokenizer: Any) -> list[tuple[list[int], list[int], int]]:
    """(clean ids, corrupted ids, YY) per prompt; a tokenizer that splits no year as the paper's is a ConfigError."""
    rng = random.Random(settings.seed)
    nouns = [n for n in NOUNS if len(tokenizer.encode(f" {n}", add_special_tokens=False)) == 1]
    if not nouns:
        raise ConfigError("data.params", "expected event nouns that the model's tokenizer encodes as one token each, found none")
    years = _year_tokens(tokenizer)
    valid = _valid_years(settings, tokenizer, years)
    if not valid:
        raise ConfigError("data.params.centuries", f"expected years of {list(settings.centuries)} that the model's "
                                                   "tokenizer splits as a century and a two-digit token, as GPT-2's "
                                                   "does (Hanna et al. 2023), found none")
    bos = [tokenizer.bos_token_id] if settings.prepend_bos and tokenizer.bos_token_id is not None else []
    records = []
    for _ in range(settings.n_prompts):
        century = rng.choice(sorted(valid))
        noun, yy = rng.choice(nouns), rng.choice(valid[century])
        clean = bos + tokenizer.encode(TEMPLATE.format(noun=noun, century=century, yy=f"{yy:02d}"), add_special_tokens=False)
        corrupted = bos + tokenizer.encode(TEMPLATE.format(noun=noun, century=century, yy="01"), add_special_tokens=False)
        if len(clean) != len(corrupted):  # the years are checked above; only a context-dependent split is left
            raise ConfigError("data.params", f"expected clean and corrupted prompts of one length, found "
                                             f"{tokenizer.convert_ids_to_tokens(clean)}")
        records.append((clean, corrupted, yy))
    return records


def greater_than_pairs(model: Any, settings: GreaterThanConfig) -> dict[str, Tensor]:
    """The pairs dict (patching/prompt_pairs.py's keys that apply, and ``candidates``/``candidate_sign``
    for ``prob_diff``): every prompt of one template, so they share a length."""
    import torch

    records = _records(settings, model.tokenizer)
    years = torch.tensor(_year_tokens(model.tokenizer))
    threshold = torch.tensor([yy for _, _, yy in records])
    n, width = len(records), len(records[0][0])
    sign = torch.where(torch.arange(100)[None, :] > threshold[:, None], 1.0, -1.0)
    return {
        "clean": torch.tensor([r[0] for r in records]), "corrupted": torch.tensor([r[1] for r in records]),
        "end": torch.full((n,), width - 1), "length": torch.full((n,), width),
        "candidates": years.expand(n, 100).clone(), "candidate_sign": sign, "threshold": threshold,
    }
