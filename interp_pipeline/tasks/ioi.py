"""Indirect object identification for toy models: Wang et al.'s sentences over a word vocabulary.

Sequences are ``[BOS] prompt answer [PAD]...``, the prompt from tasks/ioi_prompts.py
(the generator the patching stages use too) with "," and "." as words of their own.
Templates differ in length, so rows are right-padded to the longest template and
the loss skips padding. The loss is next-token cross-entropy, the answer's (the IO
name after END) weighted ``answer_weight`` times an ordinary token's: most tokens
are template words that teach nothing about IOI.

Held out: a seeded fraction of the unordered name pairs never appears in training, so
``evaluate`` scores IO-vs-S on pairs the model has not seen together, not memorised
pairs. (Held-out *names* would not work: a name never seen as a target keeps its
random unembedding.)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tasks.base import Task, register_task
from interp_pipeline.tasks.tokenizers import BOS, PAD, SPECIALS
from interp_pipeline.tasks.ioi_prompts import (
    BABA_TEMPLATES,
    ORDERS,
    IOIPrompt,
    check_options,
    generate_ioi,
    toy_vocabulary,
)

if TYPE_CHECKING:
    from torch import Generator, Tensor



@register_task
@dataclass
class IOITask(Task):
    name: ClassVar[str] = "ioi"

    templates: list[int] | None = None  # indices into BABA_TEMPLATES; None: all 15
    orders: list[str] = field(default_factory=lambda: list(ORDERS))
    answer_weight: float = 4.0  # the answer's loss weight, relative to each other token's
    held_out_pairs: float = 0.2  # fraction of unordered name pairs kept out of training
    eval_prompts: int = 512
    seed: int = 0  # the held-out split's and held-out prompts' seed (training batches use the trainer's)
    _ids: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _n_ctx: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            check_options(templates=self.templates, orders=self.orders)
        except ConfigError as error:  # make_task reports ValueErrors under its own key
            raise ValueError(f"{error.key}: {error.message}") from error
        if not 0 < self.held_out_pairs < 1:
            raise ValueError(f"held_out_pairs must be in (0, 1), found {self.held_out_pairs}")
        if self.answer_weight < 0:
            raise ValueError(f"answer_weight must be >= 0, found {self.answer_weight}")
        self._ids = {word: i for i, word in enumerate(self.vocabulary())}
        self._n_ctx = self.model_config()["n_ctx"]

    def vocabulary(self) -> list[str]:
        return [*SPECIALS, *toy_vocabulary()]

    def tokenizer(self) -> Any:
        from tokenizers.pre_tokenizers import Whitespace

        from interp_pipeline.tasks.tokenizers import word_level_tokenizer

        # No unk token: a word outside the vocabulary is an error, not a silent id.
        tokenizer = word_level_tokenizer(self.vocabulary(), bos=BOS, pad=PAD)
        # Split "shops." into "shops" "." too, so GPT-2-style text ("Then, John ...") gives the
        # same tokens as the spaced text the model is trained on, and character offsets
        # still point into the text as written.
        tokenizer.backend_tokenizer.pre_tokenizer = Whitespace()
        return tokenizer

    def model_config(self) -> dict[str, Any]:
        size = len(SPECIALS) + len(toy_vocabulary())
        # The longest template over all of them (not just `templates`), so the model's shape
        # does not depend on which ones it was trained on.
        longest = max(len(p.clean.split()) for p in (
            generate_ioi(1, 0, templates=[t], orders=[o], spaced_punctuation=True)[0]
            for t in range(len(BABA_TEMPLATES)) for o in ORDERS))
        return {"d_vocab": size, "d_vocab_out": size, "n_ctx": longest + 2}  # + BOS + answer

    # ---------------------------------------------------------------- data

    def is_held_out(self, a: str, b: str) -> bool:
        """Whether the unordered pair {a, b} is kept for evaluation (stable across runs: crc32, not hash())."""
        first, second = sorted((a, b))
        return zlib.crc32(f"{self.seed}:{first}:{second}".encode()) % 10_000 < self.held_out_pairs * 10_000

    def prompts(self, n: int, seed: int, *, held_out: bool) -> list[IOIPrompt]:
        def allow(io: str, s: str) -> bool:
            return self.is_held_out(io, s) == held_out

        return generate_ioi(n, seed, templates=self.templates, orders=self.orders, spaced_punctuation=True,
                            allow_pair=allow)

    def encode(self, prompts: list[IOIPrompt]) -> Tensor:
        """``[BOS] prompt answer`` as ids, right-padded with PAD to n_ctx."""
        import torch

        rows = torch.full((len(prompts), self._n_ctx), self._ids[PAD], dtype=torch.int64)
        for row, prompt in enumerate(prompts):
            ids = [self._ids[BOS], *(self._ids[w] for w in prompt.clean.split()), self._ids[prompt.answer.strip()]]
            rows[row, :len(ids)] = torch.tensor(ids)
        return rows

    def train_batch(self, generator: Generator, batch_size: int) -> Tensor:
        import torch

        # The prompts come from Python's random, seeded from the trainer's generator, so
        # batches follow the trainer's seed and resume with its checkpointed state.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return self.encode(self.prompts(batch_size, seed, held_out=False))

    # ---------------------------------------------------------------- loss and eval

    def _answer_index(self, tokens: Tensor) -> Tensor:
        """Per row, the index into ``tokens[:, 1:]`` (the targets) of the answer."""
        return (tokens != self._ids[PAD]).sum(dim=1) - 2

    def loss(self, logits: Tensor, tokens: Tensor) -> Tensor:
        import torch
        import torch.nn.functional as F

        targets = tokens[:, 1:]
        per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets, reduction="none")
        weights = (targets != self._ids[PAD]).float()
        rows = torch.arange(len(tokens), device=tokens.device)
        weights[rows, self._answer_index(tokens)] = self.answer_weight
        return (per_token * weights).sum() / weights.sum()

    def evaluate(self, model: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        prompts = self.prompts(self.eval_prompts, 10_000 + self.seed, held_out=True)
        tokens = self.encode(prompts)
        with torch.inference_mode():
            logits = model(tokens.to(model.cfg.device), return_type="logits").float().cpu()
        rows = torch.arange(len(tokens))
        end = self._answer_index(tokens)  # the END token's position predicts the answer
        end_logits = logits[rows, end]
        io = tokens[rows, end + 1]
        s = torch.tensor([self._ids[p.s] for p in prompts])
        diff = end_logits[rows, io] - end_logits[rows, s]
        return {
            "accuracy": (diff > 0).float().mean().item(),
            "logit_diff": diff.mean().item(),
            "loss": F.cross_entropy(end_logits, io).item(),
            "top1_accuracy": (end_logits.argmax(-1) == io).float().mean().item(),
        }
