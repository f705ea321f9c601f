"""The logit lens (nostalgebraist 2020): each layer's residual stream read out as if it were the last.

The readout is TransformerLens's ``cache.accumulated_resid(apply_ln=True)`` followed by
the unembedding: the residual stream entering each block (``resid_pre``, labelled
``0_pre``, ``1_pre``, ...) and the final one (``resid_post`` of the last block,
``final_post``), each through ``model.ln_final`` with its normalisation statistics
recomputed from that state, then ``model.unembed``. Calling the model's own modules,
rather than a formula with ``W_U``, is what makes the same code right for a
HookedTransformer (LayerNorm folded into ``W_U``: ``ln_final`` only centres and scales)
and a TransformerBridge in compatibility mode (whose modules wrap the Hugging Face
ones); the final state then gives the model's logits exactly (tested against
``run_with_cache`` on both).

Everything per (state, position) is reduced as soon as a state's logits exist, so
GPT-2's 50,257-wide vocabulary never sits in memory for all states at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.prompt_set import NO_TARGET, PromptSet, batches, select_positions
from interp_pipeline.progress import progress

if TYPE_CHECKING:
    import numpy as np
    from jaxtyping import Float
    from torch import Tensor

RESID_HOOKS = ("hook_resid_pre", "hook_resid_post")


def state_labels(n_layers: int) -> list[str]:
    """TransformerLens's accumulated_resid labels: ``0_pre`` ... ``{n-1}_pre``, ``final_post``."""
    return [f"{layer}_pre" for layer in range(n_layers)] + ["final_post"]


def residual_states(cache: Any, n_layers: int) -> Float[Tensor, "state batch pos d_model"]:
    """The residual stream entering each block, and after the last one (accumulated_resid's stack)."""
    import torch

    return torch.stack([cache["resid_pre", layer] for layer in range(n_layers)]
                       + [cache["resid_post", n_layers - 1]])


def lens_logits(model: Any, state: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos vocab"]:
    """One residual state read out: the final LayerNorm (statistics of this state), then the unembedding."""
    return model.unembed(model.ln_final(state))


@dataclass
class SequenceLens:
    """One sequence's lens, per state and position: top-k tokens, and how the target fares."""

    top_ids: np.ndarray  # int [state, pos, k]
    top_probs: np.ndarray  # float [state, pos, k]
    target_prob: np.ndarray  # float [state, pos], nan where no target
    target_rank: np.ndarray  # float [state, pos] (0 = top), nan where no target
    kl_to_final: np.ndarray  # float [state, pos]: KL(final || state) in nats
    agrees: np.ndarray  # bool [state, pos]: the state's top-1 is the model's top-1


@dataclass
class LensResult:
    labels: list[str]
    sequences: list[SequenceLens] = field(default_factory=list)


def _reduce_state(logits: Tensor, final_logprobs: Tensor, targets: Tensor, top_k: int) -> dict[str, Tensor]:
    """Per (batch, pos): top-k, the target's probability and rank, KL to the final distribution, agreement."""
    import torch

    logprobs = logits.float().log_softmax(dim=-1)
    top_logprobs, top_ids = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1)
    safe = targets.clamp(min=0).unsqueeze(-1)
    target_logprob = logprobs.gather(-1, safe)
    rank = (logprobs > target_logprob).sum(dim=-1).float()
    has_target = targets != NO_TARGET
    nan = torch.tensor(float("nan"))
    final_probs = final_logprobs.exp()
    return {
        "top_ids": top_ids, "top_probs": top_logprobs.exp(),
        "target_prob": torch.where(has_target, target_logprob.squeeze(-1).exp(), nan),
        "target_rank": torch.where(has_target, rank, nan),
        "kl_to_final": (final_probs * (final_logprobs - logprobs)).sum(dim=-1).clamp(min=0),
        "agrees": top_ids[..., 0] == final_logprobs.argmax(dim=-1),
    }


def run_logit_lens(model: Any, prompts: PromptSet, *, top_k: int = 5, batch_size: int = 16) -> LensResult:
    """The lens of every sequence in ``prompts`` at every position (reduced: see :class:`SequenceLens`)."""
    import numpy as np
    import torch

    n_layers = model.cfg.n_layers
    result = LensResult(state_labels(n_layers), [None] * len(prompts))  # type: ignore[list-item]
    device = next(model.parameters()).device
    groups = batches(prompts, batch_size)
    with torch.inference_mode():
        for group in progress(groups, desc="logit lens", unit="batch"):
            tokens = torch.stack([prompts.tokens[i] for i in group]).to(device)
            targets = torch.stack([prompts.targets[i] for i in group]).to(device)
            logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(RESID_HOOKS))
            final_logprobs = logits.float().log_softmax(dim=-1)
            per_state = [_reduce_state(lens_logits(model, state), final_logprobs, targets, top_k)
                         for state in residual_states(cache, n_layers)]
            del cache
            for row, index in enumerate(group):
                arrays = {name: np.stack([s[name][row].cpu().numpy() for s in per_state]) for name in per_state[0]}
                result.sequences[index] = SequenceLens(**arrays)
    return result


def lens_metrics(result: LensResult, prompts: PromptSet, positions: Any) -> dict[str, list[float]]:
    """Per state (in ``result.labels``' order), averaged over every sequence's chosen positions:
    ``answer_prob``, ``answer_rank``, ``answer_top1`` (over positions with a target),
    ``kl_to_final`` and ``agreement`` (over all chosen positions)."""
    import numpy as np

    picked = [select_positions(positions, len(seq)) for seq in prompts.tokens]

    def gather(name: str) -> np.ndarray:  # [state, chosen positions of all sequences]
        return np.concatenate([getattr(s, name)[:, p] for s, p in zip(result.sequences, picked)], axis=1)

    prob, rank, top1 = gather("target_prob"), gather("target_rank"), gather("top_ids")[..., 0]
    targets = np.concatenate([prompts.targets[i].numpy()[p] for i, p in enumerate(picked)])
    has_target = targets != NO_TARGET
    metrics = {"kl_to_final": gather("kl_to_final").mean(axis=1), "agreement": gather("agrees").mean(axis=1)}
    if has_target.any():
        metrics["answer_prob"] = prob[:, has_target].mean(axis=1)
        metrics["answer_rank"] = rank[:, has_target].mean(axis=1)
        metrics["answer_top1"] = (top1[:, has_target] == targets[has_target]).mean(axis=1)
    return {name: [float(v) for v in values] for name, values in metrics.items()}


def lens_table_markdown(labels: Sequence[str], metrics: dict[str, list[float]]) -> str:
    """One row per state: each metric's value there."""
    names = list(metrics)
    lines = ["| state | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, label in enumerate(labels):
        lines.append(f"| {label} | " + " | ".join(f"{metrics[n][i]:.4g}" for n in names) + " |")
    return "\n".join(lines) + "\n"
