"""Patching metrics: what a patched run is scored by, computed per prompt from the few
logits the metric reads.

A metric sees logits only where it needs them (the END position for all but
``loss``), so the engine can skip the unembedding everywhere else: with GPT-2's
50k-token vocabulary that is a third of a forward pass. Every metric is a mean of
per-prompt values, so a grid can split its prompts across forward passes
(``patching.batch_size_prompts``) and still give the same number. ``normalize`` maps the
corrupted run to 0 and the clean run to 1: (patched - corrupted) / (clean - corrupted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor

METRICS = ("logit_diff", "answer_prob", "kl", "loss", "prob_diff")


@dataclass
class Metric:
    """A configured metric over a prompt-pairs batch (see patching/prompt_pairs.py).

    ``pairs`` holds the batch's tensors; ``rows`` in the methods below index it, so a
    chunk of patched runs (patch-major, ``k * len(rows)`` sequences) is scored
    against the right answers.
    """

    name: str
    pairs: Mapping[str, Tensor]
    normalize: bool = False
    clean_value: float | None = None  # set by calibrate()
    corrupted_value: float | None = None
    _clean_log_probs: Tensor | None = None  # END distribution of the clean run, for kl

    @property
    def reads_all_positions(self) -> bool:
        return self.name == "loss"

    def readout_positions(self, rows: Tensor) -> Tensor:
        """Positions whose logits the metric reads, per row: END, or every position (loss)."""
        import torch

        if self.reads_all_positions:
            width = self.pairs["clean"].shape[1]
            return torch.arange(width, device=rows.device).expand(len(rows), width)
        return self.pairs["end"][rows].unsqueeze(1)

    def per_prompt(self, logits: Float[Tensor, "n readout d_vocab"], rows: Tensor) -> Float[Tensor, "n"]:
        """Raw (unnormalized) values, one per sequence; sequences are ``k`` copies of ``rows``."""
        import torch

        copies = logits.shape[0] // len(rows)
        rows = rows.repeat(copies)
        logits = logits.float()
        if self.name == "loss":
            targets = self.pairs["targets"][rows]
            mask = self.pairs["loss_mask"][rows].float()
            log_probs = logits.log_softmax(-1)
            token_loss = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            return (token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        end_logits = logits[:, 0]
        if self.name == "logit_diff":
            answer = end_logits.gather(-1, self.pairs["answer"][rows].unsqueeze(-1)).squeeze(-1)
            wrong = end_logits.gather(-1, self.pairs["wrong"][rows].unsqueeze(-1)).squeeze(-1)
            return answer - wrong
        if self.name == "answer_prob":
            probs = end_logits.softmax(-1)
            return probs.gather(-1, self.pairs["answer"][rows].unsqueeze(-1)).squeeze(-1)
        if self.name == "prob_diff":
            # Hanna et al. 2023 (Greater-Than): the probability of the right candidates minus the wrong
            # ones' (``candidate_sign`` +1 / -1 per candidate token; circuits/greater_than.py).
            probs = end_logits.softmax(-1).gather(-1, self.pairs["candidates"][rows])
            return (probs * self.pairs["candidate_sign"][rows].to(probs.dtype)).sum(-1)
        if self.name == "kl":
            if self._clean_log_probs is None:
                raise RuntimeError("metric 'kl' needs calibrate() with the clean run first")
            clean = self._clean_log_probs[rows]
            patched = end_logits.log_softmax(-1)
            return torch.nn.functional.kl_div(patched, clean, log_target=True, reduction="none").sum(-1)
        raise AssertionError(self.name)

    def finish(self, mean_value: Tensor | float) -> Tensor | float:
        """The reported value from the mean raw value: normalized when configured."""
        if not self.normalize:
            return mean_value
        if self.clean_value is None or self.corrupted_value is None:
            raise RuntimeError("normalizing needs calibrate() first")
        return (mean_value - self.corrupted_value) / (self.clean_value - self.corrupted_value)

    def scalar(self, logits: Tensor, rows: Tensor) -> Tensor:
        """The reported value of one batch of sequences (a mean over them), differentiable."""
        return self.finish(self.per_prompt(logits, rows).mean())

    def calibrate(self, clean_readout: Tensor, corrupted_readout: Tensor) -> None:
        """Record the clean and corrupted runs' values (and the clean distribution for kl)."""
        import torch

        rows = torch.arange(clean_readout.shape[0], device=clean_readout.device)
        if self.name == "kl":
            self._clean_log_probs = clean_readout[:, 0].float().log_softmax(-1)
        self.clean_value = float(self.per_prompt(clean_readout, rows).mean())
        self.corrupted_value = float(self.per_prompt(corrupted_readout, rows).mean())
        if self.normalize and abs(self.clean_value - self.corrupted_value) < 1e-6:
            raise ConfigError(
                "normalize",
                f"the clean and corrupted runs give the same {self.name} ({self.clean_value:.4g}), "
                "so there is nothing to normalize by; check the prompts or set normalize: false",
            )

    def full_logits_metric(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        """The same metric on a full forward's logits: what TransformerLens's patching
        functions (and the generic engine path) call."""
        import torch

        rows = torch.arange(logits.shape[0], device=logits.device)
        positions = self.readout_positions(rows)
        readout = logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        return self.scalar(readout, rows)
