"""The evaluate_sae stage: an SAE evaluated on token sequences, spliced into its model.

``evaluate_sae`` takes any model, SAE and token sequences (the held-out ones that
stages/heldout_tokens.py picks from a store, or another dataset stage's output) and reports SAELens's ``run_evals`` metrics
under SAELens's names (interp_pipeline.sae.evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError, did_you_mean
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


def _check_eval_params(params: Mapping[str, Any]) -> None:
    for key in ("batch_size_prompts", "max_sequences"):
        value = params.get(key, 1)
        if key == "max_sequences" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(key, f"expected an integer >= 1, found {value!r}")
    threshold = params.get("dense_threshold", 0.1)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ConfigError("dense_threshold", f"expected a fraction of tokens in (0, 1], found {threshold!r}")
    special = params.get("exclude_special_tokens", True)
    if not isinstance(special, bool) and not (isinstance(special, (list, tuple))
                                              and all(isinstance(t, int) and not isinstance(t, bool) for t in special)):
        raise ConfigError("exclude_special_tokens", f"expected true, false or a list of token ids, found {special!r}")


def _check_eval_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    """Each SAE's hook (or ``hook``) is one the model calls, with the SAE's d_in as its width."""
    import numpy as np

    model, saes = inputs.get("model"), inputs.get("sae")
    if model is None or saes is None:
        return
    for name, sae in (saes.items() if isinstance(saes, Mapping) else [("", saes)]):
        hook = params.get("hook") or sae.hook
        if hook is None:
            continue
        width = int(np.prod(model.token_width("hook", hook)))
        if width != sae.d_in:
            sae_key = f"the SAE{f' {name!r}' if name else ''}"
            raise ConfigError("hook", f"expected a hook as wide as {sae_key}'s d_in ({sae.d_in}), found '{hook}' "
                                      f"of width {width}")


# SAELens's run_evals names (reconstruction_quality/..., sparsity/...), ours beside them, and the
# same under <name>/ when several SAEs are evaluated.
_EVAL_GROUPS = ("reconstruction_quality", "sparsity", "shrinkage", "model_performance_preservation",
                "model_behavior_preservation", "token_stats")


def _eval_metrics(params: dict[str, Any]) -> list[str]:
    return [*(f"{group}/*" for group in _EVAL_GROUPS), *(f"*/{group}/*" for group in _EVAL_GROUPS)]


@stage("evaluate_sae", outputs=("metrics",), preflight=_check_eval_params, check_shapes=_check_eval_shapes,
       metrics=_eval_metrics, version=1,
       summary=("reconstruction_quality/explained_variance", "sparsity/l0", "model_performance_preservation/ce_loss_score",
                "sparsity/dead_features_fraction", "*/reconstruction_quality/explained_variance",
                "*/model_performance_preservation/ce_loss_score"))
def evaluate_sae(
    model: Any,
    sae: Any,
    tokens: Int[Tensor, "batch pos"],
    hook: str | None = None,
    batch_size_prompts: int = 16,
    max_sequences: int | None = None,
    exclude_special_tokens: bool | list[int] = True,
    dense_threshold: float = 0.1,
    compute_kl: bool = True,
    compute_ce_loss: bool = True,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, float]:
    """Reconstruction, sparsity and (with the SAE spliced in at its hook) CE loss and KL on ``tokens``.

    ``hook``: where to splice the SAE; by default the hook it was trained on
    (``sae.cfg.metadata.hook_name``). ``max_sequences``: evaluate on the first so
    many sequences only. Returns the scalar metrics; the per-latent densities and
    their histogram go to the tracker. ``sae`` may be several SAEs by name (train_sae
    with ``sae.variants``): each is evaluated in its own child run, and the metrics
    come back as ``<name>/<metric>``.
    """
    _check_eval_params(dict(batch_size_prompts=batch_size_prompts, max_sequences=max_sequences,
                            exclude_special_tokens=exclude_special_tokens, dense_threshold=dense_threshold))
    if max_sequences is not None:
        tokens = tokens[:max_sequences]
    settings = dict(hook=hook, batch_size_prompts=batch_size_prompts, exclude_special_tokens=exclude_special_tokens,
                    dense_threshold=dense_threshold, compute_kl=compute_kl, compute_ce_loss=compute_ce_loss)
    if not isinstance(sae, Mapping):
        return _evaluate_one(model, sae, tokens, tracker=tracker, **settings)
    metrics: dict[str, float] = {}
    for name, one in sae.items():
        with tracker.child(name) as child:
            found = _evaluate_one(model, one, tokens, tracker=child, **settings)
        metrics.update({f"{name}/{metric}": value for metric, value in found.items()})
    tracker.log_metrics(metrics)
    return metrics


def _evaluate_one(model: Any, sae: Any, tokens: Int[Tensor, "batch pos"], *, hook: str | None, batch_size_prompts: int,
                  exclude_special_tokens: bool | list[int], dense_threshold: float, compute_kl: bool,
                  compute_ce_loss: bool, tracker: Tracker) -> dict[str, float]:
    from interp_pipeline.sae.evaluation import density_histogram, evaluate

    trained_on = sae.cfg.metadata.hook_name
    hook = hook or trained_on
    if hook is None:
        raise ConfigError("hook", "expected the hook to splice the SAE in at: the SAE names none "
                                  "(trained on a tensor?), so set it")
    hook_dict = getattr(model, "hook_dict", {})
    if hook not in hook_dict:
        raise ConfigError("hook", f"expected a hook name of this model, found '{hook}'",
                          suggestion=did_you_mean(hook, hook_dict))
    tracker.set_tags({"sae.hook": hook, "sae.architecture": sae.cfg.architecture()})
    metadata = sae.cfg.metadata
    metadata.hook_name = hook  # run_evals reads the hook from here; put back below
    try:
        result = evaluate(sae, model, tokens, batch_size_prompts=batch_size_prompts,
                          exclude_special_tokens=list(exclude_special_tokens)
                          if isinstance(exclude_special_tokens, (list, tuple)) else exclude_special_tokens,
                          dense_threshold=dense_threshold, compute_kl=compute_kl, compute_ce_loss=compute_ce_loss)
    finally:
        metadata.hook_name = trained_on
    tracker.log_metrics(result.metrics)
    tracker.log_figure(density_histogram(result.feature_density, dense_threshold=dense_threshold,
                                         n_tokens=int(tokens.numel())), "feature_density")
    tracker.log_dict({"feature_density": result.feature_density.tolist()}, "feature_density")
    return result.metrics
