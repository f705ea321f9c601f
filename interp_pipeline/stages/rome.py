"""The rome_edit stage: ROME rank-one edits of the toy facts model (interp_pipeline.editing).

It checks its settings against the model's shape before any work, estimates the key covariance on a
token dataset, makes each requested edit on a copy of the model (the input model, perhaps served
from the stage cache, is never changed), reports ROME's metrics averaged over the edits, and outputs
the first edit's model for later stages (``rome.model``: logit_lens, causal_tracing, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.editing.config import RomeConfig
from interp_pipeline.editing.run import METRICS, check_model_shape
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor


def _check_edits(settings: RomeConfig) -> None:
    from interp_pipeline.editing.requests import check_edits

    check_edits(settings)


def _check_shapes(settings: RomeConfig, inputs: Mapping[str, Any]) -> None:
    model = inputs.get("model")
    if model is not None:
        check_model_shape(settings, model, traced=inputs.get("tracing", None) is not None or "tracing" in inputs)


@stage("rome_edit", outputs=("model", "edit"), config=RomeConfig, preflight=_check_edits, check_shapes=_check_shapes,
       metrics=METRICS, summary=("efficacy", "generalization", "specificity"))
def rome_edit(model: Any, tokens: Tensor, settings: RomeConfig, tracing: Mapping[str, Any] | None = None,
              covariance: Mapping[str, Tensor] | None = None, tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """ROME (Meng et al. 2022) edits of (subject, relation, new object) facts at one MLP layer.

    ``layer``: the MLP to edit; None takes the layer a causal_tracing input points at. The key
    covariance is estimated over ``tokens`` (padding left out), plus ``covariance_ridge`` x its mean
    eigenvalue on the diagonal (a toy's keys may not span every direction); a ``covariance`` input (the
    key_covariance stage's, shared with memit_edit) is read instead of estimating it here. Edits: ``requests``
    ({subject, relation, new_object}) and ``n_random_requests`` drawn with ``seed``; each is made alone
    on the original model. Metrics (means over edits; per edit as ``editN/...``): efficacy,
    generalization, specificity, essence (interp_pipeline.editing.evaluate). Outputs the first edit's
    model and its ``edit`` (k*, v*, C^-1 k*, the new W_out).
    """
    from interp_pipeline.editing.run import edit_facts

    return edit_facts(model, tokens, tracing, settings, tracker, covariance)
