"""Token datasets from text: local files (txt, jsonl, parquet) and Hugging Face datasets.

Reading and packing are interp_pipeline.text (files, hub_datasets, packing, token_datasets).
Both stages take the model first, for its tokenizer, and return ``tokens``: an int64 CPU
tensor of shape [batch, pos].

The stage cache keys on params, not on file or dataset contents: after editing a
file in place, rerun with ``runner.force``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.pipeline.shapes import TokensShape
from interp_pipeline.text.config import HFDatasetConfig, TextFileConfig
from interp_pipeline.text.hub_datasets import check_hf_dataset_available
from interp_pipeline.text.token_datasets import check_text_file
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

PACKED_METRICS = ("n_sequences", "seq_len", "n_documents", "n_tokens_read")


def _packed_shape(settings: TextFileConfig | HFDatasetConfig, inputs: Mapping[str, Any]) -> TokensShape:
    return TokensShape(settings.max_sequences, settings.seq_len)  # at most max_sequences rows


def _check_packed_shapes(settings: TextFileConfig | HFDatasetConfig, inputs: Mapping[str, Any]) -> None:
    if inputs.get("model") is not None:
        inputs["model"].check_fits_context("seq_len", settings.seq_len)


@stage("text_file_tokens", outputs=("tokens",), config=TextFileConfig, preflight=check_text_file,
       shape=_packed_shape, check_shapes=_check_packed_shapes, metrics=PACKED_METRICS)
def text_file_tokens(model: HookedTransformer, settings: TextFileConfig,
                     tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "batch pos"]:
    """Packed rows of ``seq_len`` tokens from a local txt (a document a line), jsonl or parquet file."""
    from interp_pipeline.text.token_datasets import text_file_tokens as pack

    return pack(model, settings, tracker)


@stage("hf_dataset_tokens", outputs=("tokens",), config=HFDatasetConfig, preflight=check_hf_dataset_available,
       shape=_packed_shape, check_shapes=_check_packed_shapes, metrics=PACKED_METRICS)
def hf_dataset_tokens(model: HookedTransformer, settings: HFDatasetConfig,
                      tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "batch pos"]:
    """Packed rows of ``seq_len`` tokens from ``datasets.load_dataset(name, config_name, split=...)``, read
    in the dataset's order until ``max_sequences`` rows are full."""
    from interp_pipeline.text.token_datasets import hf_dataset_tokens as pack

    return pack(model, settings, tracker)
