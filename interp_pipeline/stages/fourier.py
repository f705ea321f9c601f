"""Fourier analysis of a modular-addition model's token embedding (Nanda et al. 2023).

A model that has grokked a + b mod p embeds the residues 0..p-1 on a few circles:
projected onto the real Fourier basis of Z_p, W_E's energy sits in a handful of
"key" frequencies. This stage measures how much, and which (interp_pipeline.analysis.fourier).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


def _check_params(params: Mapping[str, Any]) -> None:
    p = params.get("p")
    # Odd p: every frequency 1..(p-1)/2 has a cos and a sin, and there is no Nyquist
    # term (a cos alone) to treat separately. Z_p is prime in practice; odd suffices here.
    if isinstance(p, bool) or not isinstance(p, int) or p < 3 or p % 2 == 0:
        raise ConfigError("p", f"expected an odd integer >= 3 (the modulus), found {p!r}")
    top_k = params.get("top_k", 5)
    n_freqs = (p - 1) // 2
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= n_freqs:
        raise ConfigError("top_k", f"expected an integer in 1..{n_freqs} ((p-1)/2 frequencies), found {top_k!r}")


def _check_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    model = inputs.get("model")
    if model is not None and model.d_vocab < params["p"]:
        raise ConfigError("p", f"expected at most the model's d_vocab ({model.d_vocab}), found {params['p']}")


def _metrics(params: dict[str, Any]) -> list[str]:
    return ["top_k_energy_fraction", *(f"key_frequency_{i}" for i in range(int(params.get("top_k", 5))))]


@stage("fourier_analysis", outputs=("fourier",), preflight=_check_params, check_shapes=_check_shapes,
       metrics=_metrics, summary=("top_k_energy_fraction", "key_frequency_*"))
def fourier_analysis(
    model: HookedTransformer,
    p: int,
    top_k: int = 5,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Any]:
    """Energy of W_E[:p] per Fourier frequency over Z_p, and the top_k key frequencies.

    Rows p.. of W_E (an '=' token, say) are not residues and are ignored. Returns
    ``energy_by_frequency`` (entry i is frequency i + 1, for 1..(p-1)/2),
    ``key_frequencies`` (highest energy first) and ``top_k_energy_fraction`` (their
    share of the non-constant energy).
    """
    _check_params({"p": p, "top_k": top_k})
    d_vocab = model.cfg.d_vocab
    if d_vocab < p:
        raise ConfigError("p", f"expected at most the model's d_vocab ({d_vocab}), found {p}")

    from interp_pipeline.analysis.fourier import energy_figure, frequency_energy, key_frequencies

    embedding = model.W_E[:p].detach().double().cpu().numpy()  # [p, d_model]: the residues' rows
    energy = frequency_energy(embedding, p)
    keys, fraction = key_frequencies(energy, top_k)

    tracker.log_metrics({"top_k_energy_fraction": fraction, **{f"key_frequency_{i}": k for i, k in enumerate(keys)}})
    tracker.log_figure(energy_figure(energy, keys, fraction), "embedding_fourier_energy")
    return {
        "energy_by_frequency": energy.tolist(),
        "key_frequencies": keys,
        "top_k_energy_fraction": fraction,
    }
