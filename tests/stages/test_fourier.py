"""The fourier_analysis stage on W_E: hand-set embeddings with known frequencies (the basis and the
energy themselves are tested in tests/analysis/test_fourier.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.stages.fourier import fourier_analysis
from interp_pipeline.tracking.base import NullRun, RecordingTracker
from tests.support.models import tiny_hooked_transformer

D_MODEL = 32


def _model(p: int):
    # d_vocab = p + 1: residues 0..p-1 and the '=' token.
    return tiny_hooked_transformer(n_layers=1, d_model=D_MODEL, n_heads=2, d_head=16, n_ctx=3,
                                   d_vocab=p + 1, attn_only=True, seed=0, device="cpu")


def _two_frequency_embedding(p: int, k1: int, k2: int) -> torch.Tensor:
    """W_E rows 0..p-1 on circles of frequencies k1 (stronger) and k2, in random directions."""
    x = torch.arange(p, dtype=torch.float64)[:, None]
    directions = torch.randn(4, D_MODEL, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    waves = torch.cat([2 * torch.cos(2 * torch.pi * k1 * x / p), 2 * torch.sin(2 * torch.pi * k1 * x / p),
                       torch.cos(2 * torch.pi * k2 * x / p), torch.sin(2 * torch.pi * k2 * x / p)], dim=1)
    return waves @ directions


@pytest.mark.parametrize("p, k1, k2", [(13, 3, 5), (113, 3, 7)])
def test_two_frequency_embedding_is_found(p: int, k1: int, k2: int) -> None:
    model = _model(p)
    model.embed.W_E.data[:p] = _two_frequency_embedding(p, k1, k2).float() + 0.5  # a constant offset too
    model.embed.W_E.data[p] = 100.0  # the '=' row must not count
    result = fourier_analysis(model, p=p, top_k=2)
    assert result["key_frequencies"] == [k1, k2]  # highest energy first
    assert result["top_k_energy_fraction"] == pytest.approx(1.0, abs=1e-6)
    assert len(result["energy_by_frequency"]) == (p - 1) // 2
    # top_k beyond the two used frequencies adds nothing.
    assert fourier_analysis(model, p=p, top_k=5)["top_k_energy_fraction"] == pytest.approx(1.0, abs=1e-6)


def test_frequencies_above_half_p_fold_back() -> None:
    # Over Z_13, frequency 7 is frequency 13 - 7 = 6 (cos equal, sin negated).
    model = _model(13)
    model.embed.W_E.data[:13] = _two_frequency_embedding(13, 3, 7).float()
    assert fourier_analysis(model, p=13, top_k=2)["key_frequencies"] == [3, 6]


def test_random_embedding_spreads_its_energy() -> None:
    model = _model(113)  # random init: no structure
    result = fourier_analysis(model, p=113, top_k=5)
    # 5 of 56 frequencies hold roughly 5/56 of white noise's energy; allow plenty of spread.
    assert result["top_k_energy_fraction"] < 0.3
    assert len(set(result["key_frequencies"])) == 5


def test_stage_logs_metrics_and_figure(tmp_path: Path) -> None:
    p = 13
    model = _model(p)
    model.embed.W_E.data[:p] = _two_frequency_embedding(p, 3, 5).float()
    tracker = RecordingTracker(NullRun(), tmp_path)
    result = fourier_analysis(model, p=p, top_k=3, tracker=tracker)
    assert (tmp_path / "embedding_fourier_energy.png").stat().st_size > 0
    assert tracker.last["top_k_energy_fraction"] == pytest.approx(result["top_k_energy_fraction"])
    assert [tracker.last[f"key_frequency_{i}"] for i in range(3)] == result["key_frequencies"]
    assert result["key_frequencies"][:2] == [3, 5]


@pytest.mark.parametrize("params, key", [
    ({"p": 12}, "p"), ({"p": 1}, "p"), ({"p": 13, "top_k": 0}, "top_k"), ({"p": 13, "top_k": 7}, "top_k"),
    ({"p": 51}, "p"),  # more residues than the model's vocabulary
])
def test_bad_params_are_config_errors(params: dict, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        fourier_analysis(_model(13), **params)
    assert error.value.key == key
