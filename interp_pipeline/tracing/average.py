"""Average indirect effects over prompts, aligned on the paper's positions (Meng et al. 2022, Fig. 2).

Prompts differ in length and in where the subject sits, so the average is over position
*classes*: the subject's first token, the mean of its middle tokens, its last token, the
first token after it, the mean of the further tokens, and the prompt's last token (the
classes of the ROME repository's ``average_causal_effects`` notebook). A one-token subject
counts as both its first and last token and has no middle; a class a prompt lacks (no
middle, no further tokens, or a first subsequent token that is already the last) is left
out of that prompt's contribution, and each class is averaged over the prompts that have
it. Tokens before the subject are not averaged (as in the paper).

Only sums are kept, so memory does not grow with the number of prompts.
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


def class_columns(subject_first: int, subject_last: int, last: int) -> dict[str, list[int]]:
    """The positions each class averages over for one prompt (empty: the prompt lacks the class)."""
    return {
        "first_subject": [subject_first],
        "middle_subject": list(range(subject_first + 1, subject_last)),
        "last_subject": [subject_last],
        "first_subsequent": [subject_last + 1] if subject_last + 1 < last else [],
        "further": list(range(subject_last + 2, last)),
        "last": [last],
    }


class AverageEffects:
    """Running sums of indirect effects by kind, position class and layer."""

    def __init__(self, kinds: tuple[str, ...], n_layers: int):
        import torch

        self.kinds = kinds
        self.sums = {kind: torch.zeros(len(POSITION_CLASSES), n_layers, dtype=torch.float64) for kind in kinds}
        self.counts = torch.zeros(len(POSITION_CLASSES), dtype=torch.float64)
        self.prompts = 0
        self.clean = 0.0
        self.corrupted = 0.0

    def add(self, trace: PromptTrace, facts: Mapping[str, Tensor], keep: Tensor | None = None) -> None:
        """Add the prompts of ``trace`` (those where ``keep`` [G] is true)."""
        for g, prompt in enumerate(trace.rows.tolist()):
            if keep is not None and not bool(keep[g]):
                continue
            columns = class_columns(int(facts["subject_first"][prompt]), int(facts["subject_last"][prompt]),
                                    int(facts["last"][prompt]))
            baseline = float(trace.corrupted[g])
            for c, name in enumerate(POSITION_CLASSES):
                if not columns[name]:
                    continue
                self.counts[c] += 1
                for kind in self.kinds:
                    effect = trace.scores[kind][g][:, columns[name]].double() - baseline
                    self.sums[kind][c] += effect.mean(dim=1)
            self.prompts += 1
            self.clean += float(trace.clean[g])
            self.corrupted += baseline

    def averages(self) -> dict[str, Tensor]:
        """``{kind: AIE [class, layer]}`` (NaN for a class no prompt had) and ``counts`` [class]."""
        out = {kind: (total / self.counts[:, None]).float() for kind, total in self.sums.items()}
        out["counts"] = self.counts.float()
        return out
