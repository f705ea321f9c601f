"""Factual recall for toy models: "the home of Ka Lin is" -> "Rome" (interp_pipeline.facts.world's world).

Sequences are ``[BOS] prompt object [PAD]...``, right-padded to the longest prompt. The
loss is the object's cross-entropy, plus every other token's next-token loss weighted
``context_weight`` (0: the object's only). ``evaluate`` reports recall (the object is the top-1
prediction) on every training prompt and on the held-out (subject, template) prompts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.facts.world import FactPrompt, all_prompts, longest_prompt_words, vocabulary
from interp_pipeline.tasks.base import Task, make_task, register_task
from interp_pipeline.tasks.tokenizers import BOS, PAD, SPECIALS

if TYPE_CHECKING:
    from torch import Generator, Tensor


@register_task
@dataclass
class FactsTask(Task):
    name: ClassVar[str] = "facts"

    n_subjects: int = 96
    seed: int = 0  # the world's seed: subjects, their objects, the held-out templates
    # Weight of every other token's next-token loss, relative to the object's (0: the object's only).
    context_weight: float = 0.0
    _ids: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _n_ctx: int = field(default=0, init=False, repr=False, compare=False)
    _encoded: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.n_subjects, bool) or not isinstance(self.n_subjects, int) or self.n_subjects < 2:
            raise ValueError(f"n_subjects must be an integer >= 2, found {self.n_subjects!r}")
        if not self.context_weight >= 0:
            raise ValueError(f"context_weight must be >= 0, found {self.context_weight!r}")
        self._ids = {word: i for i, word in enumerate(self.vocabulary())}
        self._n_ctx = self.model_config()["n_ctx"]

    def vocabulary(self) -> list[str]:
        return [*SPECIALS, *vocabulary()]

    def tokenizer(self) -> Any:
        from interp_pipeline.tasks.tokenizers import word_level_tokenizer

        # No unk token: a word outside the world is an error, not a silent id.
        return word_level_tokenizer(self.vocabulary(), bos=BOS, pad=PAD)

    def model_config(self) -> dict[str, Any]:
        size = len(SPECIALS) + len(vocabulary())
        return {"d_vocab": size, "d_vocab_out": size, "n_ctx": longest_prompt_words() + 2}  # + BOS + object

    # ---------------------------------------------------------------- data

    def prompts(self, split: str | None = None) -> list[FactPrompt]:
        """The world's prompts: all, or the ``"train"`` or ``"heldout"`` ones."""
        prompts = all_prompts(self.n_subjects, self.seed)
        if split is None:
            return prompts
        return [p for p in prompts if p.heldout == (split == "heldout")]

    def object_id(self, word: str) -> int:
        return self._ids[word]

    def encode(self, prompts: list[FactPrompt]) -> Tensor:
        """``[BOS] prompt object`` as ids, right-padded with PAD to n_ctx."""
        import torch

        rows = torch.full((len(prompts), self._n_ctx), self._ids[PAD], dtype=torch.int64)
        for row, prompt in enumerate(prompts):
            ids = [self._ids[BOS], *(self._ids[w] for w in prompt.text.split()), self._ids[prompt.object]]
            rows[row, :len(ids)] = torch.tensor(ids)
        return rows

    def _split_tokens(self) -> dict[str, Tensor]:
        if self._encoded is None:
            self._encoded = {split: self.encode(self.prompts(split)) for split in ("train", "heldout")}
        return self._encoded

    def train_batch(self, generator: Generator, batch_size: int) -> Tensor:
        import torch

        train = self._split_tokens()["train"]
        return train[torch.randint(0, len(train), (batch_size,), generator=generator)]

    def dataset(self, generator: Generator, n: int) -> Tensor:
        """``n`` prompts with their objects, drawn from every prompt (both splits)."""
        import torch

        tokens = torch.cat(list(self._split_tokens().values()))
        return tokens[torch.randint(0, len(tokens), (n,), generator=generator)]

    # ---------------------------------------------------------------- loss and eval

    def _object_index(self, tokens: Tensor) -> Tensor:
        """Per row, the position whose logits predict the object (the prompt's last token)."""
        return (tokens != self._ids[PAD]).sum(dim=1) - 2

    def loss(self, logits: Tensor, tokens: Tensor) -> Tensor:
        import torch
        import torch.nn.functional as F

        rows = torch.arange(len(tokens), device=tokens.device)
        last = self._object_index(tokens)
        if not self.context_weight:
            return F.cross_entropy(logits[rows, last].float(), tokens[rows, last + 1])
        targets = tokens[:, 1:]
        per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets, reduction="none")
        weights = (targets != self._ids[PAD]).float() * self.context_weight
        weights[rows, last] = 1.0
        return (per_token * weights).sum() / weights.sum()

    def evaluate(self, model: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        metrics = {}
        for split, tokens in self._split_tokens().items():
            with torch.inference_mode():
                logits = model(tokens.to(model.cfg.device), return_type="logits").float().cpu()
            rows = torch.arange(len(tokens))
            last = self._object_index(tokens)
            predicted, target = logits[rows, last], tokens[rows, last + 1]
            prefix = "" if split == "train" else "heldout_"
            metrics[f"{prefix}recall"] = (predicted.argmax(-1) == target).float().mean().item()
            metrics[f"{prefix}loss"] = F.cross_entropy(predicted, target).item()
        return metrics


def facts_task(config: Mapping[str, Any], key: str = "task") -> FactsTask:
    """The facts task (its world of subjects) of a task config (``name: facts`` and its fields), as the
    prompt sets, probe labels and edits that read a facts model's world take it: ConfigError on ``key``."""
    fields = dict(config)
    if fields.get("name") != "facts":
        raise ConfigError(f"{key}.name", f"expected 'facts' (the toy factual-recall task), found {fields.get('name')!r}")
    made = make_task(fields, key=key)
    assert isinstance(made, FactsTask)
    return made
