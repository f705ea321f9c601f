"""The steering stages: make a steering vector, and steer a model with it (interp_pipeline.steering).

``steering_vector`` makes ActAdd (Turner et al. 2023), CAA (Rimsky et al. 2024) or SAE-feature vectors;
``steer`` adds one to the residual stream with a coefficient while scoring held-out prompts and
generating, and measures the side effects (KL on unrelated prompts, loss on ordinary sequences).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.steering.config import SteerConfig, SteeringVectorConfig
from interp_pipeline.steering.run import METRICS
from interp_pipeline.steering.vectors import VECTOR_METRICS, check_settings
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor


def _check_vector_shapes(settings: SteeringVectorConfig, inputs: Mapping[str, Any]) -> None:
    from interp_pipeline.steering.vectors import check_shapes

    if inputs.get("model") is not None:
        check_shapes(settings, inputs["model"], inputs.get("sae"))


def _vector_shape(settings: SteeringVectorConfig, inputs: Mapping[str, Any]) -> Any:
    from interp_pipeline.steering.vectors import vector_shape

    return vector_shape(settings, inputs.get("model"), inputs.get("sae"))


@stage("steering_vector", outputs=("vector",), config=SteeringVectorConfig, preflight=check_settings,
       check_shapes=_check_vector_shapes, shape=_vector_shape, metrics=VECTOR_METRICS,
       summary=("layer", "norm", "fit_prompts"))
def steering_vector(model: Any, settings: SteeringVectorConfig, facts: Mapping[str, Tensor] | None = None,
                    sae: Any = None, tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """A steering vector of ``model`` at ``layer`` (``hook``: resid_pre, _mid or _post).

    ``method``: ``actadd``, prompt ``positive`` minus prompt ``negative``, position by position;
    ``caa``, the mean activation at ``read_at`` over ``facts`` prompts answering ``positive`` minus the
    mean over those answering ``negative``, from a ``fit_fraction`` of each answer's subjects (the
    others are held out for ``steer``); ``sae``, the decoder row of latent ``feature`` of ``sae``, at its
    hook. Returns the vector dict of interp_pipeline/steering/vectors.py.
    """
    from interp_pipeline.steering.vectors import make_vector

    return make_vector(model, settings, tracker, facts=facts, sae=sae)


def _check_steer_shapes(settings: SteerConfig, inputs: Mapping[str, Any]) -> None:
    from interp_pipeline.steering.run import check_shapes

    if inputs.get("model") is not None:
        check_shapes(settings, inputs["model"], inputs.get("vector"))


@stage("steer", outputs=("scores",), config=SteerConfig, check_shapes=_check_steer_shapes, metrics=METRICS,
       summary=("flip_rate", "logit_diff_delta", "kl_unrelated", "loss_delta"))
def steer(model: Any, vector: Mapping[str, Tensor], settings: SteerConfig, facts: Mapping[str, Tensor] | None = None,
          unrelated: Mapping[str, Tensor] | None = None, tokens: Tensor | None = None,
          tracker: Tracker = NULL_TRACKER) -> dict[str, Tensor]:
    """``coefficient`` x ``vector`` added at ``layer`` (None: the vector's) to ``positions`` (all, last, or
    front from ``start``), through a TransformerLens hook.

    Scores ``facts`` prompts (answering ``source``, of subjects the vector was not made from): the
    ``target``'s probability and the logit difference target - source, before and after, and the flip
    rate; side effects: KL from the unsteered model on ``unrelated`` prompts of other relations, the
    loss on ordinary ``tokens``; completes each ``generate`` prompt with and without the vector
    (``completions.md``). Returns the scored prompts' per-prompt values.
    """
    from interp_pipeline.steering.run import steer as run_steer

    return run_steer(model, vector, settings, tracker, facts=facts, unrelated=unrelated, tokens=tokens)
