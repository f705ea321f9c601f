"""The MLP layer causal tracing points at: where the MLP's average indirect effect at the last subject
token peaks (Meng et al. 2022 edit the layer their tracing singles out, section 3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from interp_pipeline.common.errors import ConfigError


def layer_from_tracing(aie: Mapping[str, Any]) -> int:
    """``aie``: causal_tracing's output of that name ({kind: AIE [position class, layer]})."""
    import torch

    from interp_pipeline.tracing.average import POSITION_CLASSES

    if "mlp" not in aie:
        raise ConfigError("inputs.tracing", f"expected causal tracing of MLP outputs (kinds with 'mlp'), found "
                                            f"{sorted(aie)}")
    effects = torch.nan_to_num(torch.as_tensor(aie["mlp"])[POSITION_CLASSES.index("last_subject")], nan=float("-inf"))
    return int(effects.argmax())


def layer_range_from_tracing(aie: Mapping[str, Any], window: int) -> list[int]:
    """MEMIT's range: the ``window`` consecutive MLP layers whose AIE at the last subject token sums highest
    (Meng et al. 2023, section 4: the critical MLPs the causal traces point at), clipped to the model."""
    import torch

    from interp_pipeline.tracing.average import POSITION_CLASSES

    layer_from_tracing(aie)  # the same check of the input
    effects = torch.nan_to_num(torch.as_tensor(aie["mlp"])[POSITION_CLASSES.index("last_subject")], nan=0.0)
    width = min(window, effects.shape[0])
    sums = effects.unfold(0, width, 1).sum(-1)
    start = int(sums.argmax())
    return list(range(start, start + width))
