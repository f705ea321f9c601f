"""The real Fourier basis of Z_p and how much of an embedding's energy each frequency holds.

Nanda et al. 2023: a model that has grokked a + b mod p embeds the residues on a few
circles, so W_E's energy, projected on this basis, sits in a handful of key frequencies.
``analyse_embedding`` is the fourier_analysis stage's work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import FourierConfig
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    import numpy as np
    from transformer_lens import HookedTransformer


def check_fourier_settings(settings: FourierConfig) -> None:
    """What FourierConfig's ranges cannot say: p is odd, and top_k at most its (p-1)/2 frequencies."""
    if settings.p % 2 == 0:
        raise ConfigError("p", f"expected an odd integer >= 3 (the modulus), found {settings.p!r}")
    n_freqs = (settings.p - 1) // 2
    if settings.top_k > n_freqs:
        raise ConfigError("top_k", f"expected an integer in 1..{n_freqs} ((p-1)/2 frequencies), "
                                   f"found {settings.top_k!r}")


def check_vocabulary(settings: FourierConfig, d_vocab: int) -> None:
    if d_vocab < settings.p:
        raise ConfigError("p", f"expected at most the model's d_vocab ({d_vocab}), found {settings.p}")


def analyse_embedding(model: HookedTransformer, settings: FourierConfig,
                      tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Energy of W_E[:p] per Fourier frequency over Z_p, and the top_k key frequencies.

    Rows p.. of W_E (an '=' token, say) are not residues and are ignored. Returns
    ``energy_by_frequency`` (entry i is frequency i + 1, for 1..(p-1)/2),
    ``key_frequencies`` (highest energy first) and ``top_k_energy_fraction`` (their
    share of the non-constant energy); logs the last two and a figure.
    """
    check_fourier_settings(settings)
    check_vocabulary(settings, model.cfg.d_vocab)
    p = settings.p
    embedding = model.W_E[:p].detach().double().cpu().numpy()  # [p, d_model]: the residues' rows
    energy = frequency_energy(embedding, p)
    keys, fraction = key_frequencies(energy, settings.top_k)
    tracker.log_metrics({"top_k_energy_fraction": fraction, **{f"key_frequency_{i}": k for i, k in enumerate(keys)}})
    tracker.log_figure(energy_figure(energy, keys, fraction), "embedding_fourier_energy")
    return {"energy_by_frequency": energy.tolist(), "key_frequencies": keys, "top_k_energy_fraction": fraction}


def fourier_basis(p: int) -> np.ndarray:
    """The orthonormal real Fourier basis of Z_p as rows [p, p]: constant, then cos k, sin k for k = 1..(p-1)/2."""
    import numpy as np

    x = np.arange(p)
    rows = [np.ones(p)]
    for k in range(1, (p - 1) // 2 + 1):
        rows.append(np.cos(2 * np.pi * k * x / p))
        rows.append(np.sin(2 * np.pi * k * x / p))
    basis = np.stack(rows)
    return basis / np.linalg.norm(basis, axis=1, keepdims=True)


def frequency_energy(embedding: np.ndarray, p: int) -> np.ndarray:
    """Squared norm of ``embedding`` [p, d] in each frequency k = 1..(p-1)/2 (cos and sin together).

    Entry i is frequency i + 1; the constant component is left out.
    """
    import numpy as np

    if embedding.shape[0] != p:
        raise ValueError(f"expected {p} embedding rows (residues 0..p-1), found {embedding.shape[0]}")
    coefficients = fourier_basis(p) @ np.asarray(embedding, dtype=np.float64)  # [p, d]
    power = (coefficients**2).sum(axis=1)
    # Rows 1, 2 are cos 1, sin 1; rows 3, 4 are cos 2, sin 2; ...
    return power[1::2] + power[2::2]


def key_frequencies(energy: np.ndarray, top_k: int) -> tuple[list[int], float]:
    """The top_k frequencies by energy (highest first; ties to the lower k) and their share of all of it."""
    import numpy as np

    order = np.argsort(-energy, kind="stable")[:top_k]
    total = float(energy.sum())
    fraction = float(energy[order].sum()) / total if total > 0 else float("nan")
    return [int(i) + 1 for i in order], fraction


def energy_figure(energy: np.ndarray, keys: list[int], fraction: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    freqs = list(range(1, len(energy) + 1))
    key_set = set(keys)
    colors = ["#c44e52" if k in key_set else "#8c8c8c" for k in freqs]
    fig, ax = plt.subplots(figsize=(min(2.0 + 0.16 * len(freqs), 14.0), 3.4))
    ax.bar(freqs, energy, color=colors)
    # Every tick while they fit, else every fifth, plus the key frequencies themselves.
    step = 1 if len(freqs) <= 30 else 5
    ax.set_xticks(sorted(set(freqs[::step]) | key_set))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlim(0.3, len(freqs) + 0.7)
    ax.set_xlabel("frequency k")
    ax.set_ylabel("energy (squared norm)")
    ax.set_title(f"W_E Fourier energy: key {sorted(keys)} hold {fraction:.1%}")
    fig.tight_layout()
    return fig
