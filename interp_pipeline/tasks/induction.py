"""Induction: random tokens with one repeated segment of random length at a random place.

The copy's offset from the original varies from sequence to sequence: with a fixed
offset a layer-0 head could predict the copy from position alone, which is not
induction (Olsson et al. 2022). Loss is next-token prediction everywhere; only the
copied tokens after the first are predictable, and those are what the eval reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from interp_pipeline.tasks.base import Task, register_task
from interp_pipeline.tasks.tokenizers import BOS, PAD, SPECIALS

if TYPE_CHECKING:
    from torch import Generator, Tensor



@register_task
@dataclass
class InductionTask(Task):
    name: ClassVar[str] = "induction"

    d_vocab: int = 64  # ordinary tokens; specials come on top
    seq_len: int = 48  # tokens after BOS
    min_repeat: int = 4
    max_repeat: int = 24
    eval_sequences: int = 256
    seed: int = 0  # the held-out set's seed (training batches use the trainer's)

    def __post_init__(self) -> None:
        if not 2 <= self.min_repeat <= self.max_repeat <= self.seq_len // 2:
            raise ValueError(
                f"need 2 <= min_repeat <= max_repeat <= seq_len // 2, found "
                f"min_repeat={self.min_repeat}, max_repeat={self.max_repeat}, seq_len={self.seq_len}"
            )

    def vocabulary(self) -> list[str]:
        return [*SPECIALS, *(f"t{i}" for i in range(self.d_vocab))]

    def tokenizer(self) -> Any:
        from interp_pipeline.tasks.tokenizers import word_level_tokenizer

        return word_level_tokenizer(self.vocabulary(), bos=BOS, pad=PAD, unk=PAD)

    def model_config(self) -> dict[str, Any]:
        size = len(SPECIALS) + self.d_vocab
        return {"d_vocab": size, "d_vocab_out": size, "n_ctx": self.seq_len + 1}

    def sample(self, generator: Generator, n: int) -> tuple[Tensor, Tensor]:
        """Sequences ``[BOS] + seq_len tokens`` and a mask of the positions whose next token
        is a predictable copy (the second and later tokens of the repeated segment)."""
        import torch

        first = len(SPECIALS)
        tokens = torch.randint(first, first + self.d_vocab, (n, self.seq_len), generator=generator)
        predictable = torch.zeros(n, self.seq_len, dtype=torch.bool)
        lengths = torch.randint(self.min_repeat, self.max_repeat + 1, (n,), generator=generator)
        for row in range(n):
            length = int(lengths[row])
            # source start s, copy start c with s + length <= c and c + length <= seq_len
            s = int(torch.randint(0, self.seq_len - 2 * length + 1, (1,), generator=generator))
            c = int(torch.randint(s + length, self.seq_len - length + 1, (1,), generator=generator))
            tokens[row, c:c + length] = tokens[row, s:s + length]
            predictable[row, c + 1:c + length] = True
        bos = torch.zeros(n, 1, dtype=tokens.dtype)  # BOS is id 0
        # With BOS in front, the prediction made at position i is of token i of `tokens`.
        mask = torch.cat([predictable, torch.zeros(n, 1, dtype=torch.bool)], dim=1)
        return torch.cat([bos, tokens], dim=1), mask

    def train_batch(self, generator: Generator, batch_size: int) -> Tensor:
        return self.sample(generator, batch_size)[0]

    def loss(self, logits: Tensor, tokens: Tensor) -> Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())

    def evaluate(self, model: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        generator = torch.Generator().manual_seed(10_000 + self.seed)
        tokens, mask = self.sample(generator, self.eval_sequences)
        with torch.inference_mode():
            logits = model(tokens.to(model.cfg.device), return_type="logits").float().cpu()
        per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
        copy_mask = mask[:, :-1]
        correct = logits[:, :-1].argmax(-1) == tokens[:, 1:]
        # The standard probe: [BOS] r r, the second half predictable from the first.
        half = self.seq_len // 2
        first = len(SPECIALS)
        r = torch.randint(first, first + self.d_vocab, (self.eval_sequences, half), generator=generator)
        probe = torch.cat([torch.zeros(self.eval_sequences, 1, dtype=r.dtype), r, r], dim=1)
        with torch.inference_mode():
            probe_logits = model(probe.to(model.cfg.device), return_type="logits").float().cpu()
        probe_loss = F.cross_entropy(probe_logits[:, :-1].transpose(1, 2), probe[:, 1:], reduction="none")
        return {
            # predictions of tokens 2..half of the second copy (its first token is not predictable)
            "repeated_half_loss": probe_loss[:, half + 1:].mean().item(),
            "loss": per_token.mean().item(),
            "repeat_loss": per_token[copy_mask].mean().item(),
            "non_repeat_loss": per_token[~copy_mask].mean().item(),
            "repeat_accuracy": correct[copy_mask].float().mean().item(),
        }
