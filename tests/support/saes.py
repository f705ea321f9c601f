"""Tiny SAEs the tests build, one with a feature planted where the test knows it fires."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.models import task_model

HOOK = "blocks.0.hook_resid_pre"  # token embedding + position embedding
PLANTED = 7                       # the planted feature's id
TOKEN_WORD = "t5"                 # the token it fires on
STRENGTH, THRESHOLD, SLOPE = 10.0, 5.0, 0.1


@dataclass
class Planted:
    model: Any
    sae: Any
    token: int    # the id of TOKEN_WORD
    tokens: Any   # [6, 16]: BOS, then words other than TOKEN_WORD, with it planted at PLACES
    places: list[tuple[int, int]]

    def activation(self, position: int) -> float:
        """The planted feature's activation at TOKEN_WORD in ``position``: STRENGTH + SLOPE * pos - THRESHOLD."""
        return STRENGTH + SLOPE * position - THRESHOLD


def random_sae(d_in: int, d_sae: int, *, hook: str = HOOK, seed: int = 0, bias: float = 0.0) -> Any:
    """A StandardSAE with Gaussian weights (``bias`` in every b_enc: negative makes it sparser)."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu"))
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.W_dec.normal_(std=0.3)
        sae.b_enc.fill_(bias)
        sae.b_dec.normal_(std=0.1)
    sae.cfg.metadata.hook_name = hook
    return sae.eval()


def planted_feature(places: tuple[tuple[int, int], ...] = ((0, 3), (2, 10), (4, 15), (5, 1))) -> Planted:
    """A 1-layer model of the induction task's vocabulary (n_ctx 16) and a 32-latent SAE on
    ``blocks.0.hook_resid_pre`` whose feature PLANTED reads a direction u that only TOKEN_WORD's
    embedding (10 u) and the position embeddings (0.1 * pos * u) write: it fires on TOKEN_WORD alone,
    at 5 + 0.1 * pos, and nowhere else. The other latents read 100 times more weakly."""
    import torch

    from interp_pipeline.tasks.induction import InductionTask

    task = InductionTask(d_vocab=20, seq_len=15, min_repeat=2, max_repeat=4)
    model = task_model(task, n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, act_fn="relu", seed=0)
    token = model.tokenizer.convert_tokens_to_ids(TOKEN_WORD)
    u = torch.zeros(16)
    u[0] = 1.0
    with torch.no_grad():
        embed, positions = model.embed.W_E, model.pos_embed.W_pos
        for weights in (embed, positions):
            weights.sub_((weights @ u)[:, None] * u)  # nothing else writes along u
        embed[token] += STRENGTH * u
        positions.add_(SLOPE * torch.arange(16, dtype=torch.float32)[:, None] * u)
    sae = random_sae(16, 32, seed=1)
    with torch.no_grad():
        sae.W_enc *= 0.01
        sae.W_enc[:, PLANTED] = u
        sae.b_enc[PLANTED] = -THRESHOLD
        sae.b_dec.zero_()
    words = [i for i in range(2, 22) if i != token]
    generator = torch.Generator().manual_seed(0)
    tokens = torch.tensor(words)[torch.randint(0, len(words), (6, 16), generator=generator)]
    tokens[:, 0] = 0  # BOS
    for sequence, position in places:
        tokens[sequence, position] = token
    return Planted(model, sae, token, tokens, list(places))
