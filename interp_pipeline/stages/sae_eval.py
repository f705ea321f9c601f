"""SAE evaluation stages: pick the held-out sequences of a store, and evaluate an SAE on them.

``store_heldout_tokens`` takes the token dataset that fed ``cache_activations`` and
the store it made, and returns the sequences none of whose rows ``train_sae``
trained on (it holds out the store's last ``sae.eval_tokens`` rows). Whole
sequences, because the downstream metrics (CE loss and KL with the SAE spliced
in) need every token's context, not only the rows a store kept.

``evaluate_sae`` takes any model, SAE and token sequences (those held-out ones,
or another dataset stage's output) and reports SAELens's ``run_evals`` metrics
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


def _check_heldout_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    store, tokens = inputs.get("store"), inputs.get("tokens")
    n_rows = store.max_rows if store is not None else (tokens.n_tokens if tokens is not None else None)
    eval_tokens = params["eval_tokens"]
    if n_rows is not None and isinstance(eval_tokens, int) and eval_tokens > n_rows:
        what = "the store's" if store is not None else "every token's"
        raise ConfigError("eval_tokens", f"expected an integer in [1, {n_rows}] (at most {what} rows), "
                                         f"found {eval_tokens}")


@stage("store_heldout_tokens", outputs=("tokens",), version=1, check_shapes=_check_heldout_shapes,
       metrics=("heldout_sequences", "heldout_tokens"), summary=("heldout_sequences", "heldout_tokens"))
def store_heldout_tokens(
    tokens: Int[Tensor, "batch pos"],
    eval_tokens: int,
    store: Any = None,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "heldout pos"]:
    """The sequences of ``tokens`` that have rows among the store's last ``eval_tokens`` rows and none before.

    The sequence at the boundary (some rows trained on, some held out) is left out.
    ``tokens`` must be the dataset the store was cached from (its fingerprint is checked).
    Without a store (train_sae streamed from the model), the rows are every position of
    every sequence, in order.
    """
    import numpy as np
    import torch

    from interp_pipeline.activations.layout import fingerprint
    from interp_pipeline.sae.data import open_store

    tokens_np = tokens.cpu().numpy()
    if store is None:
        sequences = np.repeat(np.arange(tokens_np.shape[0]), tokens_np.shape[1])
        what = "every token's"
    else:
        opened = open_store(store)
        sequences, what = opened.sequences(), "the store's"
        expected, found = opened.attrs.get("dataset_fingerprint"), fingerprint(tokens_np)
        if expected != found:
            raise ConfigError("inputs.tokens", f"expected the token dataset activation store {opened.url} was "
                                               f"cached from (fingerprint {expected}), found one with fingerprint "
                                               f"{found} and shape {list(tokens_np.shape)}; wire the cache stage's "
                                               "tokens here")
    n_rows = len(sequences)
    if isinstance(eval_tokens, bool) or not isinstance(eval_tokens, int) or not 0 < eval_tokens <= n_rows:
        raise ConfigError("eval_tokens", f"expected an integer in [1, {n_rows}] ({what} rows), found {eval_tokens!r}")
    first_heldout = n_rows - eval_tokens
    heldout = np.unique(sequences[first_heldout:])
    heldout = heldout[~np.isin(heldout, sequences[:first_heldout])]
    if heldout.size == 0:
        raise ConfigError("eval_tokens", f"expected the held-out rows to cover at least one whole sequence "
                                         f"({tokens_np.shape[1]} tokens), found {eval_tokens} rows that do not; "
                                         "raise sae.eval_tokens")
    selected = tokens[torch.as_tensor(heldout, dtype=torch.long)]
    tracker.log_metrics({"heldout_sequences": float(selected.shape[0]), "heldout_tokens": float(selected.numel())})
    return selected


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
