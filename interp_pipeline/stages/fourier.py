"""Fourier analysis of a modular-addition model's token embedding (Nanda et al. 2023).

A model that has grokked a + b mod p embeds the residues 0..p-1 on a few circles:
projected onto the real Fourier basis of Z_p, W_E's energy sits in a handful of
"key" frequencies. This stage measures how much, and which (interp_pipeline.analysis.fourier).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.config import FourierConfig
from interp_pipeline.analysis.fourier import check_fourier_settings, check_vocabulary
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


def _check_shapes(settings: FourierConfig, inputs: Mapping[str, Any]) -> None:
    if inputs.get("model") is not None:
        check_vocabulary(settings, inputs["model"].d_vocab)


def _metrics(settings: FourierConfig) -> list[str]:
    return ["top_k_energy_fraction", *(f"key_frequency_{i}" for i in range(settings.top_k))]


@stage("fourier_analysis", outputs=("fourier",), config=FourierConfig, preflight=check_fourier_settings,
       check_shapes=_check_shapes, metrics=_metrics, summary=("top_k_energy_fraction", "key_frequency_*"))
def fourier_analysis(model: HookedTransformer, settings: FourierConfig,
                     tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Energy of W_E[:p] per Fourier frequency over Z_p, the top_k key frequencies, and their share of the
    non-constant energy (``energy_by_frequency``, ``key_frequencies``, ``top_k_energy_fraction``)."""
    from interp_pipeline.analysis.fourier import analyse_embedding

    return analyse_embedding(model, settings, tracker)
