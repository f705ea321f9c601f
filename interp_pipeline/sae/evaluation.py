"""Evaluating a trained SAE on held-out token sequences, with SAELens's own ``run_evals``.

SAELens's evals read token batches from its ``ActivationsStore`` (``get_batch_tokens``),
run the model themselves, and splice the SAE in at its hook for the downstream
metrics. Our held-out data is a fixed tensor of token sequences, so
:class:`TokenBatches` plays the part of that store (the three members
``run_evals`` touches), and every number comes from SAELens's code under
SAELens's names (``reconstruction_quality/explained_variance``,
``model_performance_preservation/ce_loss_score``, ``sparsity/l0``, ...).

What we add on top, from SAELens's per-latent ``feature_density``: the fractions
of dead and dense latents (SAELens's evals return the densities, not these
summaries) and a histogram of the densities (its trainer draws one only for W&B).

``evaluate_saes`` is the evaluate_sae stage's work (settings: SAEEvalConfig): one SAE,
or several by name (train_sae with ``sae.variants``), each in its own child run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError, did_you_mean
from interp_pipeline.sae.config import SAEEvalConfig
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    import torch

DENSITY_FLOOR = 1e-10  # log10 of a dead latent's density, as SAELens's trainer plots it


def check_eval_settings(settings: SAEEvalConfig) -> None:
    """What SAEEvalConfig's types cannot say: ``exclude_special_tokens`` is a flag or a list of token ids."""
    special = settings.exclude_special_tokens
    if not isinstance(special, bool) and not (isinstance(special, (list, tuple))
                                              and all(isinstance(t, int) and not isinstance(t, bool) for t in special)):
        raise ConfigError("exclude_special_tokens", f"expected true, false or a list of token ids, found {special!r}")


def check_eval_shapes(settings: SAEEvalConfig, inputs: Mapping[str, Any]) -> None:
    """Each SAE's hook (or ``hook``) is one the model calls, with the SAE's d_in as its width."""
    import numpy as np

    model, saes = inputs.get("model"), inputs.get("sae")
    if model is None or saes is None:
        return
    for name, sae in (saes.items() if isinstance(saes, Mapping) else [("", saes)]):
        hook = settings.hook or sae.hook
        if hook is None:
            continue
        width = int(np.prod(model.token_width("hook", hook)))
        if width != sae.d_in:
            sae_key = f"the SAE{f' {name!r}' if name else ''}"
            raise ConfigError("hook", f"expected a hook as wide as {sae_key}'s d_in ({sae.d_in}), found '{hook}' "
                                      f"of width {width}")


def evaluate_saes(model: Any, sae: Any, tokens: torch.Tensor, settings: SAEEvalConfig,
                  tracker: Tracker = NULL_TRACKER) -> dict[str, float]:
    """:func:`evaluate` on the first ``max_sequences`` of ``tokens``, logged: the scalar metrics, the densities'
    histogram and the densities themselves. Several SAEs by name: each in its own child run of ``tracker``, the
    metrics back as ``<name>/<metric>``."""
    check_eval_settings(settings)  # called from a notebook, the runner's pre-flight has not run
    if settings.max_sequences is not None:
        tokens = tokens[:settings.max_sequences]
    if not isinstance(sae, Mapping):
        return _evaluate_one(model, sae, tokens, settings, tracker)
    metrics: dict[str, float] = {}
    for name, one in sae.items():
        with tracker.child(name) as child:
            found = _evaluate_one(model, one, tokens, settings, child)
        metrics.update({f"{name}/{metric}": value for metric, value in found.items()})
    tracker.log_metrics(metrics)
    return metrics


def _evaluate_one(model: Any, sae: Any, tokens: torch.Tensor, settings: SAEEvalConfig,
                  tracker: Tracker) -> dict[str, float]:
    trained_on = sae.cfg.metadata.hook_name
    hook = settings.hook or trained_on
    if hook is None:
        raise ConfigError("hook", "expected the hook to splice the SAE in at: the SAE names none "
                                  "(trained on a tensor?), so set it")
    hook_dict = getattr(model, "hook_dict", {})
    if hook not in hook_dict:
        raise ConfigError("hook", f"expected a hook name of this model, found '{hook}'",
                          suggestion=did_you_mean(hook, hook_dict))
    tracker.set_tags({"sae.hook": hook, "sae.architecture": sae.cfg.architecture()})
    special = settings.exclude_special_tokens
    metadata = sae.cfg.metadata
    metadata.hook_name = hook  # run_evals reads the hook from here; put back below
    try:
        result = evaluate(sae, model, tokens, batch_size_prompts=settings.batch_size_prompts,
                          exclude_special_tokens=list(special) if isinstance(special, (list, tuple)) else special,
                          dense_threshold=settings.dense_threshold, compute_kl=settings.compute_kl,
                          compute_ce_loss=settings.compute_ce_loss)
    finally:
        metadata.hook_name = trained_on
    tracker.log_metrics(result.metrics)
    tracker.log_figure(density_histogram(result.feature_density, dense_threshold=settings.dense_threshold,
                                         n_tokens=int(tokens.numel())), "feature_density")
    tracker.log_dict({"feature_density": result.feature_density.tolist()}, "feature_density")
    return result.metrics


class TokenBatches:
    """The part of SAELens's ``ActivationsStore`` that ``run_evals`` uses, over a fixed token tensor.

    Batches come in order; ``reset_input_dataset`` starts again from the first
    sequence. (SAELens's own store only resets its raw-dataset iterator there, not
    the sequence iterator it batches from; on a dataset that the reconstruction
    pass reads exactly once, as here, the two agree: both passes see every
    sequence once, in order.) The last batch may be short; SAELens's evals
    average per token, so a short batch weighs by its tokens.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, device: Any):
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            raise ValueError(f"expected token ids of shape [sequences, positions], found {tuple(tokens.shape)}")
        self.tokens = tokens
        self.store_batch_size_prompts = int(batch_size)
        self.context_size = int(tokens.shape[1])
        self.device = device
        self._next = 0

    @property
    def n_batches(self) -> int:
        return -(-self.tokens.shape[0] // self.store_batch_size_prompts)

    def reset_input_dataset(self) -> None:
        self._next = 0

    def get_batch_tokens(self, batch_size: int | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        n = int(batch_size or self.store_batch_size_prompts)
        if self._next >= self.tokens.shape[0]:
            self._next = 0  # as SAELens's store does at the end of an epoch
        batch = self.tokens[self._next:self._next + n]
        self._next += n
        return batch.to(self.device)


@dataclass
class SAEEvaluation:
    """Scalar metrics under SAELens's names, and the per-latent densities they summarise."""

    metrics: dict[str, float]
    feature_density: torch.Tensor  # [d_sae]: fraction of evaluated tokens each latent fired on


def flatten_metrics(nested: dict[str, dict[str, Any]]) -> dict[str, float]:
    """run_evals's ``{"sparsity": {"l0": ...}}`` as ``{"sparsity/l0": ...}``."""
    return {f"{group}/{name}": float(value) for group, values in nested.items() for name, value in values.items()}


def evaluate(
    sae: Any,
    model: Any,
    tokens: torch.Tensor,
    *,
    batch_size_prompts: int = 16,
    exclude_special_tokens: bool | list[int] = True,
    dense_threshold: float = 0.1,
    compute_kl: bool = True,
    compute_ce_loss: bool = True,
) -> SAEEvaluation:
    """SAELens's ``run_evals`` on every sequence of ``tokens``, once each, plus dead/dense fractions.

    ``exclude_special_tokens``: True leaves out the tokenizer's BOS/EOS/PAD positions
    (SAELens's default; a model without a tokenizer has none), or a list of token ids.
    """
    import torch
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    device = getattr(getattr(model, "cfg", None), "device", None) or tokens.device
    batches = TokenBatches(tokens.long(), batch_size_prompts, device)
    config = EvalConfig(
        batch_size_prompts=batches.store_batch_size_prompts,
        n_eval_reconstruction_batches=batches.n_batches,
        n_eval_sparsity_variance_batches=batches.n_batches,
        compute_kl=compute_kl,
        compute_ce_loss=compute_ce_loss,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
        git_hash="n/a",  # its default runs git in site-packages' parent, for a field we do not log
    )
    was_training = sae.training
    sae.eval()
    try:
        # ActivationScaler(): no scaling. A trained SAE has any activation normalisation
        # folded into its weights (SAELens's trainer does that at the end; layer_norm
        # normalisation is applied inside the SAE itself).
        nested, per_feature = run_evals(sae, batches, model, ActivationScaler(), config,
                                        exclude_special_tokens=exclude_special_tokens)
    finally:
        sae.train(was_training)
    metrics = flatten_metrics(nested)
    # run_evals counts batches x batch size x context; the last batch may be short here.
    for name in ("token_stats/total_tokens_eval_reconstruction", "token_stats/total_tokens_eval_sparsity_variance"):
        if name in metrics:
            metrics[name] = float(tokens.numel())
    density = torch.as_tensor(per_feature["feature_density"], dtype=torch.float64)
    metrics.update(density_summary(density, dense_threshold))
    return SAEEvaluation(metrics, density.float())


def density_summary(density: torch.Tensor, dense_threshold: float) -> dict[str, float]:
    """Dead (never fired on the evaluated tokens) and dense (fired on more than ``dense_threshold``) latents."""
    live = density[density > 0]
    return {
        "sparsity/dead_features_fraction": float((density == 0).double().mean()),
        "sparsity/dense_features_fraction": float((density > dense_threshold).double().mean()),
        "sparsity/mean_log10_feature_density": float(live.log10().mean()) if live.numel() else -math.inf,
    }


def density_histogram(density: torch.Tensor, *, dense_threshold: float, n_tokens: int, title: str = "") -> Any:
    """A histogram of log10 feature density, dead latents at the left edge (as SAELens's W&B plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = density.double().clamp_min(DENSITY_FLOOR).log10().numpy()
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist(values, bins=50, color="tab:blue")
    axes.axvline(math.log10(dense_threshold), color="tab:red", linestyle="--", label=f"dense > {dense_threshold:g}")
    if n_tokens > 0:
        axes.axvline(math.log10(1 / n_tokens), color="tab:gray", linestyle=":", label="fires once")
    dead = int((density == 0).sum())
    axes.set_xlabel(f"log10 feature density (dead at {math.log10(DENSITY_FLOOR):g})")
    axes.set_ylabel("latents")
    axes.set_title(title or f"feature density over {n_tokens} tokens ({dead} of {density.numel()} dead)")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure
