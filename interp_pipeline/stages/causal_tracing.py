"""The causal_tracing stage (Meng et al. 2022, "Locating and Editing Factual Associations in GPT", §2.1).

The tracing, its average over prompts, metrics and figures are interp_pipeline.tracing (run.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracing.config import CausalTracingConfig
from interp_pipeline.tracing.run import check_fits_model, check_kinds, metric_names
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from torch import Tensor


def _check_kinds(settings: CausalTracingConfig) -> None:
    check_kinds(settings.kinds)


def _check_shapes(settings: CausalTracingConfig, inputs: Mapping[str, Any]) -> None:
    """The window and the restored kinds against the model's shape, before the model loads or trains."""
    shape = inputs.get("model")
    if shape is not None and hasattr(shape, "n_layers"):
        check_fits_model(settings, shape.n_layers, shape.attn_only)


@stage("causal_tracing", outputs=("aie", "examples"), config=CausalTracingConfig, preflight=_check_kinds,
       check_shapes=_check_shapes, metrics=metric_names,
       summary=("prompts_traced", "mlp/peak_class", "attn/peak_class", "hidden/peak_aie"))
def causal_tracing(model: Any, facts: dict[str, Tensor], settings: CausalTracingConfig,
                   tracker: Tracker = NULL_TRACKER) -> dict[str, dict[str, Tensor]]:
    """Causal tracing of the object's probability over a facts dict (stages/fact_prompts.py).

    Noise: Gaussian on the subject tokens' embeddings, std ``noise`` x the subject embeddings'
    empirical std (ROME's ``collect_embedding_std``, on the checkpoint's unprocessed embeddings;
    or ``noise_std`` itself), ``samples`` draws per prompt seeded by ``seed``. ``average``: pooled
    (ROME's average_causal_effects notebook) or per_prompt (interp_pipeline.tracing.average).
    ``window``: layers restored together for mlp/attn (null: the paper's 10 of 48, scaled).
    ``only_known``: average only prompts whose clean top-1 prediction is the object (the paper
    traces known facts). ``max_prompts``: a sample of that many prompts (seeded by ``seed``).
    Outputs ``aie`` ({kind: AIE [position class, layer]}, ``counts``) and ``examples`` (per-prompt scores of the first ``figures`` traced prompts). Logs per kind
    the position class (0..5: first/middle/last subject token, first subsequent, further,
    last token) and layer where the AIE peaks (``peak_class``, ``peak_layer``), the same over the
    classes before the last token (``early_site_class``, ``early_site_layer``: the paper's early
    site), the peak per class (``aie/<class>``, ``peak_layer/<class>``), and the figures.
    """
    from interp_pipeline.tracing.run import trace_facts

    return trace_facts(model, facts, settings, tracker)
