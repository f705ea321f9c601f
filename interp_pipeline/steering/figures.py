"""The steer stage's figure: each scored prompt's logit difference before and after, beside a random direction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis.look_figures import _pyplot

if TYPE_CHECKING:
    from torch import Tensor


def logit_diff_figure(steered: Mapping[str, Tensor], control: Mapping[str, Tensor] | None, target: str, source: str,
                      title: str) -> Any:
    """Per prompt (sorted by the unsteered value): target - source logit difference unsteered, steered, and
    steered by the random direction of the same norm; above 0 the target beats the source."""
    plt = _pyplot()
    order = steered["logit_diff_before"].argsort()
    x = range(len(order))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.22 * len(order) + 2), 3.6))
    ax.plot(x, steered["logit_diff_before"][order], "o", color="grey", label="unsteered")
    ax.plot(x, steered["logit_diff"][order], "o", color="tab:blue", label="steered")
    if control is not None:
        ax.plot(x, control["logit_diff"][order], "x", color="tab:orange", label="random direction, same norm")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("scored prompt (by unsteered value)")
    ax.set_ylabel(f"logit({target}) - logit({source})")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
