"""Average indirect effects over prompts, aligned on the paper's positions (Meng et al. 2022, Fig. 2).

Prompts differ in length and in where the subject sits, so the average is over position
*classes*: the subject's first token, its middle tokens, its last token, the first token after
it, the further tokens, and the prompt's last token (the classes of the ROME repository's
``notebooks/average_causal_effects.ipynb``). Tokens before the subject are not averaged. Two ways
(``tracing.average``):

- ``pooled`` (the default): the notebook's arithmetic, ``read_knowlege``. Each class pools score
  rows (the object's probability per layer) across prompts: one row per prompt for the first and
  last subject token, the first subsequent token and the last token, one row *per token* for the
  middle subject tokens and the further tokens (``add_all``), so a prompt with a long subject
  weighs more there. The first subsequent token is counted even when it is the prompt's last token
  (then that row is in both classes). The AIE is the class's mean score minus the mean corrupted
  score over all prompts averaged (``avg_ls``). (The notebook also clips the AIE at 0 for its
  heatmaps, not for its line plots; the AIE kept here is not clipped.)
- ``per_prompt`` (this project's first average): each prompt's effect (its scores minus its own
  corrupted score) is averaged over a class's positions within the prompt first, then over the
  prompts having the class; a first subsequent token that is the last token is left out of the
  first-subsequent class. Every prompt weighs the same in every class, and each is compared with
  its own corrupted run. Where every prompt has one token in a class, the two agree (the first
  and last subject token, the last token).

``counts``: the score rows each class averaged (pooled: tokens; per_prompt: prompts). Only sums
are kept, so memory does not grow with the number of prompts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.tracing.engine import PromptTrace

POSITION_CLASSES = ("first_subject", "middle_subject", "last_subject", "first_subsequent", "further", "last")
POSITION_LABELS = ("First subject token", "Middle subject tokens", "Last subject token", "First subsequent token",
                   "Further tokens", "Last token")


AVERAGES = ("pooled", "per_prompt")


def class_columns(subject_first: int, subject_last: int, last: int, average: str = "pooled") -> dict[str, list[int]]:
    """The positions each class averages over for one prompt (empty: the prompt lacks the class).
    ``pooled`` follows the notebook's slices (``first_a = subject_last + 1``, always counted)."""
    if average not in AVERAGES:
        raise ValueError(f"average: expected one of {AVERAGES}, found {average!r}")
    subsequent = [subject_last + 1] if average == "pooled" or subject_last + 1 < last else []
    return {
        "first_subject": [subject_first],
        "middle_subject": list(range(subject_first + 1, subject_last)),
        "last_subject": [subject_last],
        "first_subsequent": subsequent,
        "further": list(range(subject_last + 2, last)),
        "last": [last],
    }


class AverageEffects:
    """Running sums of scores (pooled) or of indirect effects (per_prompt) by kind, position class and layer."""

    def __init__(self, kinds: tuple[str, ...], n_layers: int, average: str = "pooled"):
        import torch

        if average not in AVERAGES:
            raise ValueError(f"average: expected one of {AVERAGES}, found {average!r}")
        self.kinds = kinds
        self.average = average
        self.sums = {kind: torch.zeros(len(POSITION_CLASSES), n_layers, dtype=torch.float64) for kind in kinds}
        self.counts = torch.zeros(len(POSITION_CLASSES), dtype=torch.float64)
        self.prompts = 0
        self.clean = 0.0
        self.corrupted = 0.0

    def add(self, trace: PromptTrace, facts: Mapping[str, Tensor], keep: Tensor | None = None) -> None:
        """Add the prompts of ``trace`` (those where ``keep`` [G] is true)."""
        pooled = self.average == "pooled"
        for g, prompt in enumerate(trace.rows.tolist()):
            if keep is not None and not bool(keep[g]):
                continue
            columns = class_columns(int(facts["subject_first"][prompt]), int(facts["subject_last"][prompt]),
                                    int(facts["last"][prompt]), self.average)
            baseline = float(trace.corrupted[g])
            for c, name in enumerate(POSITION_CLASSES):
                if not columns[name]:
                    continue
                self.counts[c] += len(columns[name]) if pooled else 1
                for kind in self.kinds:
                    rows = trace.scores[kind][g][:, columns[name]].double()  # [layer, positions]
                    self.sums[kind][c] += rows.sum(dim=1) if pooled else (rows - baseline).mean(dim=1)
            self.prompts += 1
            self.clean += float(trace.clean[g])
            self.corrupted += baseline

    def averages(self) -> dict[str, Tensor]:
        """``{kind: AIE [class, layer]}`` (NaN for a class no prompt had) and ``counts`` [class]."""
        shift = self.corrupted / self.prompts if self.average == "pooled" and self.prompts else 0.0
        out = {kind: (total / self.counts[:, None] - shift).float() for kind, total in self.sums.items()}
        out["counts"] = self.counts.float()
        return out
