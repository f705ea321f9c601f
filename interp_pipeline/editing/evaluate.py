"""ROME's metrics for one edit on the toy facts world: efficacy, generalisation, specificity."""

from __future__ import annotations

from typing import Any

import torch

from interp_pipeline.editing.requests import Request, RequestPrompts
from interp_pipeline.editing.rome import Prompts, top1


def _ids(model: Any, words: list[str]) -> torch.Tensor:
    return torch.as_tensor([model.tokenizer.convert_tokens_to_ids(w) for w in words])


def _probs(model: Any, prompts: Prompts) -> torch.Tensor:
    with torch.no_grad():
        logits = model(prompts.tokens.to(model.cfg.device), return_type="logits")
    return logits[torch.arange(len(prompts)), prompts.last.to(logits.device)].float().softmax(-1).cpu()


def _prob(model: Any, prompts: Prompts, token: int) -> float:
    return float(_probs(model, prompts)[:, token].mean())


def _new_beats_true(model: Any, prompts: Prompts, new: torch.Tensor | int, true: torch.Tensor | int) -> float:
    """Meng et al.'s scores: the fraction of prompts where P(new object) > P(true object)."""
    probs = _probs(model, prompts)
    rows = torch.arange(len(prompts))
    new_p = probs[rows, torch.as_tensor(new).expand(len(prompts))]
    true_p = probs[rows, torch.as_tensor(true).expand(len(prompts))]
    return float((new_p > true_p).float().mean())


def edit_metrics(original: Any, edited: Any, request: Request, prompts: RequestPrompts) -> dict[str, float]:
    """Top-1 fractions (0..1) before and after one edit.

    ``efficacy``: the rewrite prompt now says the new object; ``generalization``: the relation's other
    templates for the subject do too (Meng et al.'s paraphrase score, top-1); ``specificity``: other
    subjects' prompts of the relation keep their top-1 (neighbourhood); ``essence``: the subject's other
    relations keep theirs. ``*_before`` read the original model, for comparison."""
    new = int(original.tokenizer.convert_tokens_to_ids(request.new_object))
    true = int(original.tokenizer.convert_tokens_to_ids(request.true_object))
    result: dict[str, float] = {}
    for name, model in (("before", original), ("after", edited)):
        suffix = "_before" if name == "before" else ""
        result[f"efficacy{suffix}"] = float((top1(model, prompts.rewrite) == new).float().mean())
        result[f"generalization{suffix}"] = float((top1(model, prompts.paraphrase) == new).float().mean())
        result[f"true_object_recall{suffix}"] = float((top1(model, prompts.rewrite) == true).float().mean())
        result[f"neighbourhood_recall{suffix}"] = float(
            (top1(model, prompts.neighbourhood) == _ids(original, prompts.neighbourhood_objects)).float().mean())
        result[f"new_object_prob{suffix}"] = _prob(model, prompts.rewrite, new)
    # The paper's efficacy, paraphrase and neighbourhood scores (P(new) > P(true), and for neighbours
    # P(their own object) > P(new)), after the edit.
    result["efficacy_score"] = _new_beats_true(edited, prompts.rewrite, new, true)
    result["generalization_score"] = _new_beats_true(edited, prompts.paraphrase, new, true)
    neighbours = _ids(original, prompts.neighbourhood_objects)
    result["specificity_score"] = 1.0 - _new_beats_true(edited, prompts.neighbourhood, new, neighbours)
    result["specificity"] = float((top1(edited, prompts.neighbourhood) == top1(original, prompts.neighbourhood))
                                  .float().mean())
    result["essence"] = float((top1(edited, prompts.essence) == top1(original, prompts.essence)).float().mean())
    return result
