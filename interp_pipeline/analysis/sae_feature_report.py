"""The sae_features stage's work: an SAE's features on prompts, a dashboard of the strongest, all logged.

SAELens's first tutorial as one call: the SAE's d_in, d_sae and expansion; each prompt
token's L0 and top-k features; the reconstruction's MSE and explained variance on the
prompts; then, over a token dataset, each top feature's max-activating contexts and
activation histogram as one HTML page. The numbers are interp_pipeline.analysis.sae_features's
and the dashboard's cards .feature_dashboard's; this module puts them together, checks the
settings (SAEFeaturesConfig) against the model and the SAE, and logs figures, tables and the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.analysis import feature_dashboard as board
from interp_pipeline.analysis import sae_features as sf
from interp_pipeline.analysis.config import SAEFeaturesConfig
from interp_pipeline.common.errors import ConfigError, did_you_mean
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor

METRICS = ("d_in", "d_sae", "expansion", "prompt_tokens", "l0_mean", "l0_max", "mse", "mse_per_token",
           "explained_variance", "cossim", "dashboard/features", "dashboard/tokens", "dashboard/min_contexts",
           "dashboard/min_max_activation")


def check_shapes(settings: SAEFeaturesConfig, inputs: Mapping[str, Any]) -> None:
    """Before any work: the prompts and the dataset fit the context; the SAE's hook (or ``hook``) is one
    the model calls, as wide as the SAE's d_in."""
    import numpy as np

    model, sae = inputs.get("model"), inputs.get("sae")
    if model is None:
        return
    for name in ("prompts", "tokens"):
        tokens = inputs.get(name)
        if tokens is not None and tokens.seq_len is not None:
            model.check_fits_context(f"inputs.{name}", tokens.seq_len)
    if isinstance(sae, Mapping):
        raise ConfigError("inputs.sae", f"expected one SAE, found {len(sae)} ({', '.join(sae)}); train one "
                                        "(sae.variants=[]) to look inside it")
    hook = settings.hook or (sae.hook if sae is not None else None)
    if sae is None or hook is None:
        return
    try:
        width = int(np.prod(model.token_width("hook", hook)))
    except ConfigError as error:
        if settings.hook:
            raise
        raise ConfigError("hook", f"{error.message} (the hook the SAE was trained on; set this key to read "
                                  "another)", suggestion=error.suggestion) from None
    if width != sae.d_in:
        raise ConfigError("hook", f"expected a hook as wide as the SAE's d_in ({sae.d_in}), found '{hook}' "
                                  f"of width {width}")


def look_at_features(model: Any, sae: Any, prompts: Int[Tensor, "batch pos"], tokens: Int[Tensor, "batch pos"] | None,
                     settings: SAEFeaturesConfig, tracker: Tracker = NULL_TRACKER) -> dict[str, Any]:
    """Per prompt token: L0 and the ``top_k`` features; reconstruction MSE and explained variance; a
    dashboard of the ``dashboard_features`` strongest features over ``tokens`` (default: the prompts).
    Returns everything shown, as JSON."""
    hook = _hook(model, sae, settings.hook)
    labels = _labels(model, sae, hook, settings.model_label, settings.sae_label)
    batch, special = settings.batch_size_prompts, settings.exclude_special_tokens
    x, features, x_hat = sf.encode(model, sae, prompts, hook, batch_size=batch)
    valid, counted = sf.position_masks(model, prompts, exclude_special=special)
    found = sf.prompt_features(model, prompts, features, valid, counted, settings.top_k)
    l0 = sf.per_token_l0(features)[counted].float()
    metrics = {"d_in": float(sae.cfg.d_in), "d_sae": float(sae.cfg.d_sae),
               "expansion": sae.cfg.d_sae / sae.cfg.d_in, "prompt_tokens": float(counted.sum()),
               "l0_mean": float(l0.mean()) if l0.numel() else 0.0, "l0_max": float(l0.max()) if l0.numel() else 0.0,
               **sf.reconstruction_metrics(x[counted], x_hat[counted])}
    _log_prompt_figures(tracker, model, found, features, labels, settings.heatmap_features)

    dataset = prompts if tokens is None else tokens[:settings.max_sequences]
    chosen = sf.strongest_features(found, settings.dashboard_features)
    d_valid, d_counted = sf.position_masks(model, dataset, exclude_special=special)
    cards = _cards(model, sae, dataset, d_valid, d_counted, hook, chosen, found, settings)
    n_tokens = int(d_counted.sum())
    metrics.update({"dashboard/features": float(len(cards)), "dashboard/tokens": float(n_tokens),
                    "dashboard/min_contexts": float(min((len(c.contexts) for c in cards), default=0)),
                    "dashboard/min_max_activation": float(min((c.max_activation for c in cards), default=0.0))})
    tracker.log_metrics(metrics)
    tracker.set_tags({"sae.hook": hook})
    page = board.dashboard_page(
        f"SAE features: {labels['sae']} on {labels['model']}",
        f"model {labels['model']}; SAE {labels['sae']} at {hook}: d_in {sae.cfg.d_in}, d_sae {sae.cfg.d_sae} "
        f"({metrics['expansion']:g}x); dashboard over {n_tokens:,} tokens of {dataset.shape[0]} sequences"
        f"{'; BOS/EOS/PAD left out' if special else ''}",
        [{"metric": name, "value": value} for name, value in metrics.items()],
        [(f"prompt {i}: {sf.text_of(model, p.token_ids)!r}", p.rows()) for i, p in enumerate(found)], cards, n_tokens)
    tracker.log_text(page, "feature_dashboard.html")
    tables = [{"prompt": i, **row} for i, p in enumerate(found) for row in p.rows()]
    tracker.log_text(_markdown(tables), "top_features.md")
    result = {"hook": hook, "metrics": metrics, "prompts": [vars(p) for p in found],
              "dashboard": [{**vars(c), "contexts": [vars(x) for x in c.contexts]} for c in cards]}
    tracker.log_dict(result, "sae_features")
    return result


def _hook(model: Any, sae: Any, hook: str | None) -> str:
    """``hook``, or the SAE's own; checked against the model (called from a notebook, no pre-flight ran)."""
    hook = hook or sae.cfg.metadata.hook_name
    if hook is None:
        raise ConfigError("hook", "expected the hook to read: the SAE names none (trained on a tensor?), so set it")
    if hook not in model.hook_dict:
        raise ConfigError("hook", f"expected a hook name of this model, found '{hook}'",
                          suggestion=did_you_mean(hook, model.hook_dict))
    return hook


def _labels(model: Any, sae: Any, hook: str, model_label: str | None, sae_label: str | None) -> dict[str, str]:
    name = getattr(model.cfg, "model_name", None)
    return {"model": model_label or (name if name and name != "custom" else "model"),
            "sae": sae_label or f"{sae.cfg.architecture()} SAE ({sae.cfg.d_sae} latents)", "hook": hook}


def _log_prompt_figures(tracker: Tracker, model: Any, found: list[Any], features: Any, labels: Mapping[str, str],
                        n_columns: int) -> None:
    """Per prompt: a tokens x features heatmap of activations and a per-token L0 bar chart."""
    for index, prompt in enumerate(found):
        rows = [pos for pos, counted in enumerate(prompt.counted) if counted]
        if not rows:
            continue
        text = sf.text_of(model, [prompt.token_ids[pos] for pos in rows])
        where = f"{labels['model']} · {labels['sae']} at {labels['hook']}\nprompt: {text[:90]!r}"
        token_labels = [f"{pos}: {sf.shown(prompt.tokens[pos])}" for pos in rows]
        columns = sf.heatmap_columns(prompt, n_columns)
        values = features[index][rows][:, columns].numpy() if columns else features[index][rows][:, :0].numpy()
        suffix = "" if len(found) == 1 else f"_{index}"
        tracker.log_figure(sf.heatmap_figure(values, token_labels, columns,
                                             f"SAE feature activations: each token's top features\n{where}"),
                           f"top_features_heatmap{suffix}")
        tracker.log_figure(sf.l0_figure([prompt.l0[pos] for pos in rows], token_labels,
                                        f"active SAE features per token (L0)\n{where}"), f"l0_per_token{suffix}")


def _cards(model: Any, sae: Any, dataset: Any, valid: Any, counted: Any, hook: str, chosen: list[int],
           found: list[Any], settings: SAEFeaturesConfig) -> list[Any]:
    """A dashboard card per chosen feature, over ``dataset`` (its ``counted`` positions searched)."""
    if not chosen:
        return []
    activations = board.feature_activations(model, sae, dataset, hook, chosen, batch_size=settings.batch_size_prompts)
    cards = board.feature_cards(model, dataset, activations, valid, counted, chosen, contexts=settings.contexts,
                                before=settings.context_before, after=settings.context_after,
                                bins=settings.histogram_bins)
    for card in cards:
        card.on_prompts = board.prompt_peak(card.feature, found)
    return cards


def _markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no tokens\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]).replace("|", "\\|") for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
