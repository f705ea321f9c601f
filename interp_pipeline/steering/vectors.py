"""Steering vectors: ActAdd, CAA, and an SAE feature's decoder direction (the steering_vector stage's work).

A vector is a dict of tensors (stored by the stage cache's safetensors codec, so no codec of its own):

=================  ============  ==========================================================================
``vector``         float [R, D]  R rows: one (caa, sae) or one per position of the prompt pair (actadd)
``layer``          int64 [1]     the layer it was read at
``hook``           int64 [1]     the hook kind's index in :data:`HOOK_KINDS` (blocks.L.hook_<kind>)
``positive``       int64 [1]     caa: the answer token steered towards; -1 otherwise
``negative``       int64 [1]     caa: the answer token steered away from; -1 otherwise
``fit_subjects``   int64 [S]     caa: the facts input's subject ids whose prompts made the vector
``fit_prompts``    int64 [1]     how many prompts (caa) or prompt pairs (actadd: 1) it was made from
=================  ============  ==========================================================================

ActAdd: Turner et al. 2023, "Steering Language Models With Activation Engineering" (ActAdd: the
difference of the two prompts' residual streams at one layer, the shorter padded with spaces, added
at the front of the user's prompt). CAA: Rimsky et al. 2024, "Steering Llama 2 via Contrastive
Activation Addition" (the mean difference over contrastive pairs at one layer, read at the
answer's position). The vectors are computed here with TransformerLens hooks (``run_with_cache``), on a
HookedTransformer and a TransformerBridge alike; the reference repositories (nrimsky/CAA and ActAdd's
notebooks) were read for the recipe, not copied.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.steering.config import HOOK_KINDS

if TYPE_CHECKING:
    from torch import Tensor

    from interp_pipeline.steering.config import SteeringVectorConfig
    from interp_pipeline.tracking.base import Tracker

VECTOR_METRICS = ("layer", "rows", "norm", "fit_prompts", "positive_prompts", "negative_prompts", "fit_subjects",
                  "cosine_with_unembed_diff")


def hook_name(layer: int, kind: str) -> str:
    return f"blocks.{layer}.hook_{kind}"


def check_settings(settings: SteeringVectorConfig) -> None:
    """What each method needs, before any work (ConfigError naming the key)."""
    if settings.method in ("actadd", "caa"):
        if settings.layer is None:
            raise ConfigError("layer", f"expected the layer to read the {settings.method} vector at, found none")
        for key in ("positive", "negative"):
            if not getattr(settings, key):
                what = "prompt" if settings.method == "actadd" else "answer (a facts prompt's object)"
                raise ConfigError(key, f"expected the {what} of the {key} side, found none")
    else:
        if settings.feature is None:
            raise ConfigError("feature", "expected the SAE latent whose decoder row is the vector, found none")


def check_shapes(settings: SteeringVectorConfig, model: Any, sae: Any) -> None:
    """Against the model's shape (ModelShape) and an SAE input's (SAEShape), before the model loads."""
    if settings.layer is not None and settings.method != "sae":
        model.check_layer("layer", settings.layer)
        check_hook_kind("hook", settings.hook, model)
    if settings.method == "sae":
        if sae is None:
            raise ConfigError("inputs.sae", "expected an SAE input (method: sae), found none")
        if getattr(sae, "d_in", None) is not None and sae.d_in != model.d_model:
            raise ConfigError("inputs.sae", f"expected an SAE of d_in {model.d_model} (the model's d_model), "
                                            f"found d_in {sae.d_in}")
        if settings.feature is not None and getattr(sae, "d_sae", None) is not None and settings.feature >= sae.d_sae:
            raise ConfigError("feature", f"expected a latent in 0..{sae.d_sae - 1}, found {settings.feature}")
        if getattr(sae, "hook", None) is not None:
            _parse_hook(sae.hook, "inputs.sae")


def check_hook_kind(key: str, kind: str, cfg: Any) -> None:
    """``resid_mid`` exists only where attention and MLP run one after the other: an attention-only
    model and parallel blocks (GPT-NeoX/Pythia, GPT-J) have no stream between them, so no hook to read
    or steer at (a KeyError, or a hook that never fires, after the model loaded). ``cfg``: a model's cfg
    or a models.shape.ModelShape."""
    if kind != "resid_mid":
        return
    if getattr(cfg, "attn_only", False):
        raise ConfigError(key, "expected resid_pre or resid_post on this attention-only model, found resid_mid "
                               "(it has no MLP, so no stream between attention and MLP)")
    if getattr(cfg, "parallel_attn_mlp", False):
        raise ConfigError(key, "expected resid_pre or resid_post on this model of parallel blocks (attention and "
                               "MLP both read resid_pre), found resid_mid, which it does not have")


def _parse_hook(name: str, key: str) -> tuple[int, str]:
    parts = name.split(".")
    kind = parts[-1].removeprefix("hook_")
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit() or kind not in HOOK_KINDS:
        raise ConfigError(key, f"expected an SAE on the residual stream (blocks.L.hook_resid_pre, _mid or _post), "
                               f"found one on '{name}'")
    return int(parts[1]), kind


def read_activations(model: Any, tokens: Tensor, name: str, batch_size_prompts: int) -> Tensor:
    """``name``'s activations [B, P, D] over ``tokens``, a batch at a time, on the CPU in float32."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(tokens), batch_size_prompts):
            _, cache = model.run_with_cache(tokens[start:start + batch_size_prompts].to(model.cfg.device),
                                            names_filter=lambda n: n == name)
            out.append(cache[name].float().cpu())
    return torch.cat(out)


def token_id(model: Any, word: str, key: str) -> int:
    """The one token ``word`` is under the model's tokenizer (as it follows a prompt: " Paris" or "Paris")."""
    ids = model.tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = model.tokenizer.convert_ids_to_tokens(ids)
        raise ConfigError(key, f"expected a single token, found {len(ids)} tokens {pieces}")
    return int(ids[0])


def actadd_vector(model: Any, settings: SteeringVectorConfig) -> tuple[Tensor, dict[str, int]]:
    """h(positive) - h(negative) at every position, the shorter prompt padded at its end with ``pad``."""
    import torch

    from interp_pipeline.models.tokens import require_tokenizer

    require_tokenizer(model, "positive")
    pair = [model.to_tokens(text)[0].cpu() for text in (settings.positive, settings.negative)]
    pad = model.to_tokens(settings.pad, prepend_bos=False)[0].cpu()
    if len(pad) != 1:
        raise ConfigError("pad", f"expected a single token, found {len(pad)}")
    width = max(len(t) for t in pair)
    if width > model.cfg.n_ctx:
        raise ConfigError("positive", f"expected prompts of at most n_ctx={model.cfg.n_ctx} tokens, found {width}")
    tokens = torch.stack([torch.cat([t, pad.repeat(width - len(t))]) for t in pair])
    acts = read_activations(model, tokens, hook_name(settings.layer, settings.hook), settings.batch_size_prompts)
    return acts[0] - acts[1], {"fit_prompts": 1}


def caa_vector(model: Any, facts: Mapping[str, Tensor], settings: SteeringVectorConfig
               ) -> tuple[Tensor, dict[str, Any]]:
    """Mean(activation | answer positive) - mean(activation | answer negative), over a seeded
    ``fit_fraction`` of each answer's subjects, read at ``read_at`` of each prompt."""
    import torch

    if facts is None:
        raise ConfigError("inputs.facts", "expected a facts input (method: caa), found none")
    positive, negative = (token_id(model, word, key) for word, key in ((settings.positive, "positive"),
                                                                        (settings.negative, "negative")))
    rng = random.Random(f"caa:{settings.seed}")
    rows, fit_subjects, counts = {}, [], {}
    for side, answer in (("positive", positive), ("negative", negative)):
        answering = facts["object"] == answer
        subjects = sorted(set(facts["subject_id"][answering].tolist()))
        if not subjects:
            raise ConfigError(side, f"expected prompts answering {getattr(settings, side)!r} in the facts input, "
                                    "found none")
        count = max(1, round(settings.fit_fraction * len(subjects)))
        if settings.fit_fraction < 1 and len(subjects) > 1:
            count = min(count, len(subjects) - 1)  # at least one subject left for steer to score
        chosen = sorted(rng.sample(subjects, count))
        fit_subjects += chosen
        rows[side] = torch.nonzero(answering & torch.isin(facts["subject_id"], torch.tensor(chosen))).flatten()
        counts[f"{side}_prompts"] = len(rows[side])
    means = {}
    for side, index in rows.items():
        acts = read_activations(model, facts["tokens"][index], hook_name(settings.layer, settings.hook),
                                settings.batch_size_prompts)
        at = facts[settings.read_at][index]
        means[side] = acts[torch.arange(len(index)), at].mean(0)
    info = {**counts, "fit_prompts": sum(counts.values()), "fit_subjects": len(fit_subjects), "_positive": positive,
            "_negative": negative, "_subjects": fit_subjects}
    return (means["positive"] - means["negative"]).unsqueeze(0), info


def sae_vector(sae: Any, settings: SteeringVectorConfig) -> tuple[Tensor, int, str]:
    """Row ``feature`` of the SAE's decoder (W_dec [d_sae, d_in]), and the layer and kind of its hook."""
    if sae is None:
        raise ConfigError("inputs.sae", "expected an SAE input (method: sae), found none")
    layer, kind = _parse_hook(sae.cfg.metadata.hook_name, "inputs.sae")
    if settings.feature >= sae.W_dec.shape[0]:
        raise ConfigError("feature", f"expected a latent in 0..{sae.W_dec.shape[0] - 1}, found {settings.feature}")
    return sae.W_dec[settings.feature].detach().float().cpu().unsqueeze(0), layer, kind


def make_vector(model: Any, settings: SteeringVectorConfig, tracker: Tracker, facts: Mapping[str, Tensor] | None = None,
                sae: Any = None) -> dict[str, Tensor]:
    """The vector ``settings.method`` makes (module docstring's dict), its size and provenance logged."""
    import torch

    check_settings(settings)
    layer, kind, info = settings.layer, settings.hook, {}
    if settings.method == "actadd":
        _check_layer(model, layer)
        vector, info = actadd_vector(model, settings)
    elif settings.method == "caa":
        _check_layer(model, layer)
        vector, info = caa_vector(model, facts, settings)
    else:
        vector, layer, kind = sae_vector(sae, settings)
    if vector.shape[-1] != model.cfg.d_model:
        raise ConfigError("inputs.sae", f"expected vectors of d_model {model.cfg.d_model}, found {vector.shape[-1]}")
    positive, negative = info.pop("_positive", -1), info.pop("_negative", -1)
    subjects = info.pop("_subjects", [])
    metrics = {"layer": layer, "rows": vector.shape[0], "norm": float(vector.norm(dim=-1).max()), **info}
    if positive >= 0:
        # How much of the vector is the unembedding's own answer direction (a CAA vector at the last layer
        # of a toy can be little more than W_U[:, positive] - W_U[:, negative]).
        direction = (model.W_U[:, positive] - model.W_U[:, negative]).detach().float().cpu()
        metrics["cosine_with_unembed_diff"] = float(torch.nn.functional.cosine_similarity(vector[0], direction, dim=0))
    tracker.log_metrics(metrics)

    def one(value: int) -> Tensor:
        return torch.tensor([value], dtype=torch.int64)

    return {"vector": vector.contiguous(), "layer": one(layer), "hook": one(HOOK_KINDS.index(kind)),
            "positive": one(positive), "negative": one(negative),
            "fit_subjects": torch.tensor(subjects, dtype=torch.int64), "fit_prompts": one(info.get("fit_prompts", 0))}


def _check_layer(model: Any, layer: int) -> None:
    if not 0 <= layer < model.cfg.n_layers:
        raise ConfigError("layer", f"expected a layer in 0..{model.cfg.n_layers - 1}, found {layer}")


@dataclass(frozen=True)
class VectorShape:
    """What pre-flight knows of a vector before it is made: its width, and its layer when the settings give it."""

    d_model: int
    layer: int | None


def vector_shape(settings: SteeringVectorConfig, model: Any, sae: Any) -> VectorShape | None:
    """The steering_vector stage's output shape: the SAE's width (method sae), else the model's."""
    if settings.method == "sae":
        d_in = getattr(sae, "d_in", None)
        return None if d_in is None else VectorShape(d_in, None)
    return None if model is None else VectorShape(model.d_model, settings.layer)
