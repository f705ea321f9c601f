"""Token datasets from text: local files (txt, jsonl, parquet) and Hugging Face datasets.

Reading and packing are interp_pipeline.text (files, hub_datasets, packing). Both stages
take the model first, for its tokenizer, and return ``tokens``: an int64 CPU tensor of
shape [batch, pos].

The stage cache keys on params, not on file or dataset contents: after editing a
file in place, rerun with ``runner.force``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.config.ranges import require_int
from interp_pipeline.models.tokens import check_fits_context, require_tokenizer
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.shapes import TokensShape
from interp_pipeline.text.files import read_documents, resolve_text_file
from interp_pipeline.text.hub_datasets import check_hf_dataset_available, dataset_texts, load_text_dataset
from interp_pipeline.text.packing import pack_documents
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

FORMATS = ("auto", "jsonl", "parquet", "txt")
SUFFIX_FORMATS = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".parquet": "parquet", ".pq": "parquet"}
_TOKENIZE_BATCH = 64  # documents per tokenizer call: fast batches, early stop stays cheap


# ---------------------------------------------------------------- packing (shared)


def _check_packing(model: HookedTransformer, seq_len: int, max_sequences: int | None, prepend_bos: bool) -> None:
    require_int({"seq_len": seq_len}, "seq_len", minimum=2 if prepend_bos else 1)
    require_int({"max_sequences": max_sequences}, "max_sequences", optional=True)
    check_fits_context(model, seq_len, "seq_len")


# ---------------------------------------------------------------- local text files


def _check_text_file_params(params: dict[str, Any]) -> None:
    resolve_text_file(params.get("path"), params.get("format", "auto"))
    require_int(params, "seq_len", minimum=2 if params.get("prepend_bos", True) else 1)
    require_int(params, "max_sequences", optional=True)


def _packed_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> TokensShape:
    return TokensShape(params.get("max_sequences"), params.get("seq_len"))  # at most max_sequences rows


PACKED_METRICS = ("n_sequences", "seq_len", "n_documents", "n_tokens_read")


def _check_packed_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    if inputs.get("model") is not None:
        inputs["model"].check_fits_context("seq_len", params.get("seq_len"))


@stage("text_file_tokens", outputs=("tokens",), preflight=_check_text_file_params, shape=_packed_shape,
       check_shapes=_check_packed_shapes, metrics=PACKED_METRICS)
def text_file_tokens(
    model: HookedTransformer,
    path: str,
    seq_len: int,
    format: str = "auto",
    text_field: str = "text",
    max_sequences: int | None = None,
    prepend_bos: bool = True,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "batch pos"]:
    """Packed rows of ``seq_len`` tokens from a local file.

    txt: one document a line, blank lines skipped; jsonl: ``text_field`` of each
    record; parquet: the ``text_field`` column. ``format: auto`` goes by the suffix
    (.txt/.text, .jsonl/.ndjson, .parquet/.pq). A relative path is from the
    directory the run was started in.
    """
    file, format = resolve_text_file(path, format)
    require_tokenizer(model, "path")
    _check_packing(model, seq_len, max_sequences, prepend_bos)
    return pack_documents(model, read_documents(file, format, text_field), seq_len, max_sequences, prepend_bos,
                          file.name, tracker)


# ---------------------------------------------------------------- Hugging Face datasets


@stage("hf_dataset_tokens", outputs=("tokens",), preflight=check_hf_dataset_available, shape=_packed_shape,
       check_shapes=_check_packed_shapes, metrics=PACKED_METRICS)
def hf_dataset_tokens(
    model: HookedTransformer,
    name: str,
    seq_len: int,
    split: str = "train",
    text_field: str = "text",
    config_name: str | None = None,
    max_sequences: int = 1000,
    streaming: bool = True,
    prepend_bos: bool = True,
    data_files: str | list[str] | dict[str, str | list[str]] | None = None,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "batch pos"]:
    """Packed rows of ``seq_len`` tokens from ``datasets.load_dataset(name, config_name, split=...)``.

    Reads records in the dataset's order (no shuffle) until ``max_sequences`` rows are
    full; with ``streaming`` nothing beyond that is downloaded. ``data_files`` is
    passed through, e.g. ``name: json`` with ``data_files: corpus.jsonl``.
    """
    require_tokenizer(model, "name")
    _check_packing(model, seq_len, max_sequences, prepend_bos)
    dataset = load_text_dataset(name, config_name, split, streaming, data_files)
    return pack_documents(model, dataset_texts(dataset, text_field, name), seq_len, max_sequences, prepend_bos,
                          name, tracker)
