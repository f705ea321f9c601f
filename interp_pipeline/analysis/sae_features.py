"""Which SAE features fire on a prompt, token by token: SAELens's first tutorial as functions.

The tutorial (``SAE.from_pretrained``, ``run_with_cache``, ``sae.encode``) reports, for
each token of a prompt, how many features are active (L0) and the top five with their
activations, then the reconstruction's MSE. Here the same numbers come batch-wise for
any number of prompts, with padding left out, and the reconstruction is summarised under
SAELens's own definitions too (explained variance by its ``ExplainedVarianceCalculator``,
the one ``run_evals`` uses), so the numbers on a prompt compare with evaluate_sae's.

Summary metrics leave out special positions (BOS, padding) by default, as SAELens's evals
do: GPT-2's BOS residual is many times the norm of any other and would dominate them.
The per-token tables still show BOS, marked, as the tutorial prints it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.models.shape import block_index

if TYPE_CHECKING:
    from jaxtyping import Bool, Float, Int
    from torch import Tensor

# The heatmap annotates each cell with its value up to this many cells (beyond, unreadable).
MAX_ANNOTATED_CELLS = 400


def token_strings(model: Any, ids: Sequence[int]) -> list[str]:
    """Each id as the text it stands for (``model.to_str_tokens``, one decode per distinct id);
    ``#id`` for a model without a tokenizer."""
    import torch

    ids = [int(i) for i in ids]
    if getattr(model, "tokenizer", None) is None:
        return [f"#{i}" for i in ids]
    distinct = sorted(set(ids))
    decoded = dict(zip(distinct, model.to_str_tokens(torch.tensor(distinct, dtype=torch.long))))
    return [decoded[i] for i in ids]


def text_of(model: Any, ids: Sequence[int]) -> str:
    """``ids`` decoded as one text (a word-level toy tokenizer puts spaces between words, which
    joining ``to_str_tokens`` would not)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return " ".join(f"#{int(i)}" for i in ids)
    return str(tokenizer.decode([int(i) for i in ids]))


def shown(token: str) -> str:
    """A token string for a label: quoted (so a leading space shows), newlines and tabs visible."""
    return "'" + token.replace("\n", "\u21b5").replace("\t", "\u21e5").replace("$", r"\$") + "'"


def position_masks(model: Any, tokens: Int[Tensor, "batch pos"], *, exclude_special: bool,
                   ) -> tuple[Bool[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """(``valid``: not right padding; ``counted``: valid and, with ``exclude_special``, not BOS/EOS/PAD).

    prompt_tokens pads with the pad token (EOS where there is none, as for GPT-2), unmarked:
    a row's padding is its trailing run of that id after position 0.
    """
    import torch

    tokenizer = getattr(model, "tokenizer", None)
    pad = None if tokenizer is None else next(
        (t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), None)
    valid = torch.ones_like(tokens, dtype=torch.bool)
    if pad is not None:
        # A position is padding when it and every one after it hold the pad id.
        is_pad = tokens == pad
        trailing = is_pad.flip(1).cumprod(1).flip(1).bool()
        trailing[:, 0] = False
        valid = ~trailing
    counted = valid.clone()
    if exclude_special:
        special = {0} if tokenizer is None else set(tokenizer.all_special_ids)
        for token_id in special:
            counted &= tokens != token_id
    return valid, counted


def hook_activations(model: Any, tokens: Int[Tensor, "batch pos"], hook: str) -> Float[Tensor, "batch pos ..."]:
    """``hook``'s activations on ``tokens`` (float32, on the CPU); stops after the hook's block."""
    import torch

    layer = block_index(hook)
    kwargs = {"stop_at_layer": layer + 1} if layer is not None and layer + 1 < model.cfg.n_layers else {}
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=hook, **kwargs)
    return cache[hook].float().cpu()


def sae_input(sae: Any, activations: Tensor) -> Tensor:
    """Activations as the SAE reads them: per-token vectors of d_in (heads flattened), unless the
    SAE reshapes hook_z itself."""
    if getattr(sae, "hook_z_reshaping_mode", False) or activations.ndim <= 3:
        return activations
    return activations.flatten(2)


def encode(model: Any, sae: Any, tokens: Int[Tensor, "batch pos"], hook: str, *, batch_size: int,
           ) -> tuple[Float[Tensor, "batch pos d_in"], Float[Tensor, "batch pos d_sae"],
                      Float[Tensor, "batch pos d_in"]]:
    """The hook's activations, the SAE's feature activations and its reconstruction, batch-wise."""
    import torch

    inputs, features, outputs = [], [], []
    for batch in torch.split(tokens, batch_size):
        x = sae_input(sae, hook_activations(model, batch, hook)).to(sae.device, sae.dtype)
        with torch.inference_mode():
            f = sae.encode(x)
            x_hat = sae.decode(f)
        inputs.append(x.float().cpu().flatten(2))
        features.append(f.float().cpu())
        outputs.append(x_hat.float().cpu().flatten(2))
    return torch.cat(inputs), torch.cat(features), torch.cat(outputs)


def per_token_l0(features: Float[Tensor, "... d_sae"]) -> Int[Tensor, "..."]:
    """Active features per token (``!= 0``, as SAELens counts, so signed architectures count too)."""
    return (features != 0).sum(-1)


def top_k_features(features: Float[Tensor, "... d_sae"], k: int) -> tuple[Tensor, Tensor]:
    """(ids, values) of each token's ``k`` strongest features, strongest first; a token with
    fewer than ``k`` active features has id -1 and value 0 in the rest."""
    import torch

    values, ids = features.topk(min(k, features.shape[-1]), dim=-1)
    inactive = values <= 0
    return ids.masked_fill(inactive, -1), values.masked_fill(inactive, 0.0).to(torch.float32)


def reconstruction_metrics(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> dict[str, float]:
    """MSE as the tutorial computes it (mean over tokens and dimensions), MSE per token as SAELens's
    evals do (summed over dimensions), explained variance (SAELens's calculator) and cosine similarity."""
    import torch
    from sae_lens.evals import ExplainedVarianceCalculator

    calculator = ExplainedVarianceCalculator()
    calculator.add_batch(sae_output=x_hat, hidden_acts=x)
    squared = (x - x_hat).pow(2)
    cossim = torch.nn.functional.cosine_similarity(x, x_hat, dim=-1)
    return {"mse": float(squared.mean()), "mse_per_token": float(squared.sum(-1).mean()),
            "explained_variance": float(calculator.compute()), "cossim": float(cossim.mean())}


@dataclass
class PromptFeatures:
    """One prompt's tokens (padding left out) and what the SAE says about each."""

    token_ids: list[int]
    tokens: list[str]
    counted: list[bool]        # False: left out of the summary metrics and the heatmap (BOS)
    l0: list[int]
    top_ids: list[list[int]]   # [pos][rank], -1 where fewer features are active
    top_values: list[list[float]]

    def rows(self) -> list[dict[str, Any]]:
        """One table row per token: position, token, L0 and the top features as ``f123 4.56``."""
        return [{"pos": pos, "token": shown(token) + ("" if counted else " (special)"), "L0": l0,
                 "top features (id activation)": ", ".join(f"f{i} {v:.3g}" for i, v in zip(ids, values) if i >= 0)}
                for pos, (token, counted, l0, ids, values)
                in enumerate(zip(self.tokens, self.counted, self.l0, self.top_ids, self.top_values))]


def prompt_features(model: Any, tokens: Tensor, features: Tensor, valid: Tensor, counted: Tensor,
                    top_k: int) -> list[PromptFeatures]:
    """Per prompt: its tokens, each token's L0 and top ``top_k`` features."""
    l0 = per_token_l0(features)
    ids, values = top_k_features(features, top_k)
    found = []
    for row in range(tokens.shape[0]):
        keep = valid[row]
        token_ids = tokens[row][keep].tolist()
        found.append(PromptFeatures(token_ids, token_strings(model, token_ids), counted[row][keep].tolist(),
                                    l0[row][keep].tolist(), ids[row][keep].tolist(),
                                    [[round(v, 6) for v in r] for r in values[row][keep].tolist()]))
    return found


def strongest_features(prompts: Sequence[PromptFeatures], n: int) -> list[int]:
    """Up to ``n`` features among the counted tokens' top-k, by their largest activation there."""
    best: dict[int, float] = {}
    for prompt in prompts:
        for counted, ids, values in zip(prompt.counted, prompt.top_ids, prompt.top_values):
            for i, v in zip(ids, values):
                if counted and i >= 0 and v > best.get(i, 0.0):
                    best[i] = v
    return [i for i, _ in sorted(best.items(), key=lambda item: (-item[1], item[0]))[:n]]


def heatmap_columns(prompt: PromptFeatures, n: int) -> list[int]:
    """Up to ``n`` features for a tokens x features heatmap of one prompt: every counted token's
    strongest feature first, then its second, and so on (so no token's row is left blank while
    another token fills the columns), ordered by the first token that lists them (a diagonal)."""
    rows = [(pos, ids) for pos, (counted, ids) in enumerate(zip(prompt.counted, prompt.top_ids)) if counted]
    chosen: dict[int, tuple[int, int]] = {}
    for rank in range(max((len(ids) for _, ids in rows), default=0)):
        for pos, ids in rows:
            if len(chosen) < n and rank < len(ids) and ids[rank] >= 0 and ids[rank] not in chosen:
                chosen[ids[rank]] = (pos, rank)
    first = {}
    for pos, ids in rows:
        for rank, i in enumerate(ids):
            if i in chosen and i not in first:
                first[i] = (pos, rank)
    return sorted(chosen, key=lambda i: first[i])


# ---------------------------------------------------------------- figures


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap_figure(values: Any, token_labels: Sequence[str], feature_ids: Sequence[int], title: str) -> Any:
    """Tokens down, feature ids across, each cell the feature's activation at that token
    (zero shown blank-white), on a colour scale from 0 to the largest value shown."""
    import numpy as np

    plt = _pyplot()
    values = np.asarray(values, dtype=float)
    n_tokens, n_features = values.shape
    fig, ax = plt.subplots(figsize=(min(20.0, 2.6 + 0.62 * n_features), min(16.0, 1.8 + 0.36 * n_tokens)))
    top = float(values.max()) if values.size and values.max() > 0 else 1.0
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=top, aspect="auto")
    ax.set_xticks(range(n_features), [f"f{i}" for i in feature_ids], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n_tokens), list(token_labels), fontsize=8)
    ax.set_xlabel("SAE feature id")
    ax.set_ylabel("position: token")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="feature activation")
    if values.size <= MAX_ANNOTATED_CELLS:
        for row in range(n_tokens):
            for column in range(n_features):
                value = values[row, column]
                if value > 0:
                    ax.text(column, row, f"{value:.2g}", ha="center", va="center", fontsize=6,
                            color="white" if value > 0.6 * top else "black")
    fig.tight_layout()
    return fig


def l0_figure(l0: Sequence[int], token_labels: Sequence[str], title: str) -> Any:
    """Active features (L0) per token, one bar per token, the mean as a dashed line."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(20.0, 2.5 + 0.42 * len(l0)), 3.8))
    ax.bar(range(len(l0)), l0, color="tab:blue")
    mean = float(np.mean(l0)) if len(l0) else 0.0
    ax.axhline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.1f}")
    ax.set_xticks(range(len(l0)), list(token_labels), rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("position: token")
    ax.set_ylabel("active SAE features (L0)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig
