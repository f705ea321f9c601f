"""Token datasets from text, for a model's tokenizer: prompts written in YAML (prompt_tokens), and
rows packed from a local file (text_file_tokens) or a Hugging Face dataset (hf_dataset_tokens).

Each returns an int64 CPU tensor [batch, pos]. Reading is interp_pipeline.text.files and
.hub_datasets, packing .packing; the settings are interp_pipeline.text.config's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.models.tokens import as_tokens, bos_id, check_fits_context, require_tokenizer
from interp_pipeline.text.config import HFDatasetConfig, PromptTokensConfig, TextFileConfig
from interp_pipeline.text.files import read_documents, resolve_text_file
from interp_pipeline.text.hub_datasets import dataset_texts, load_text_dataset
from interp_pipeline.text.packing import pack_documents
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer


# ---------------------------------------------------------------- prompts


def check_prompts(settings: PromptTokensConfig) -> None:
    if not settings.prompts:
        raise ConfigError("prompts", f"expected a non-empty list of strings, found {settings.prompts!r}")
    # The schema's List[str] turns numbers into strings, but a merged config lets a nested list or mapping through.
    for i, prompt in enumerate(settings.prompts):
        if not isinstance(prompt, str):
            raise ConfigError(f"prompts.{i}", f"expected a string, found {prompt!r}")


def prompt_lengths(settings: PromptTokensConfig, model: Any) -> list[int] | None:
    """Each prompt's length in tokens, when the model's tokenizer is within reach before the run."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return None
    bos = int(settings.prepend_bos)
    return [bos + len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in settings.prompts]


def check_prompt_lengths(settings: PromptTokensConfig, model: Any) -> None:
    """Pre-flight, given the model's shape: every prompt fits its context."""
    for i, length in enumerate(prompt_lengths(settings, model) or []):
        if length > model.n_ctx:
            raise ConfigError(f"prompts.{i}", f"expected at most n_ctx={model.n_ctx} tokens, found {length}")


def prompt_tokens(model: HookedTransformer, settings: PromptTokensConfig,
                  tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "batch pos"]:
    """Prompts tokenized as ``model.to_tokens`` does, right-padded with the pad token (EOS when none).

    A prompt longer than n_ctx is an error, not silently truncated. Padding is not
    marked: where pad is EOS, a downstream stage cannot tell the two apart.
    """
    import torch

    check_prompts(settings)
    tokenizer = require_tokenizer(model, "prompts")
    # One at a time: each prompt's length is known (for the error below), and no
    # pad token is needed to tokenize.
    rows = [model.to_tokens(p, prepend_bos=settings.prepend_bos, padding_side="right", move_to_device=False,
                            truncate=False)[0].cpu() for p in settings.prompts]
    for i, row in enumerate(rows):
        if len(row) > model.cfg.n_ctx:
            raise ConfigError(f"prompts.{i}", f"expected at most n_ctx={model.cfg.n_ctx} tokens, found {len(row)}")
    pad = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, bos_id(model)) if t is not None))
    tokens = as_tokens(torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad), model)
    tracker.log_metrics({"n_sequences": len(rows), "seq_len": tokens.shape[1],
                         "pad_fraction": 1 - sum(len(r) for r in rows) / tokens.numel()})
    return tokens


# ---------------------------------------------------------------- packed rows


def check_seq_len(settings: TextFileConfig | HFDatasetConfig) -> None:
    """A row with BOS needs room for one text token after it."""
    least = 2 if settings.prepend_bos else 1
    if settings.seq_len < least:
        raise ConfigError("seq_len", f"expected an integer >= {least}, found {settings.seq_len!r}")


def check_text_file(settings: TextFileConfig) -> None:
    """Pre-flight: the file exists and its format is known."""
    resolve_text_file(settings.path, settings.format)
    check_seq_len(settings)


def _check_packing(model: HookedTransformer, settings: TextFileConfig | HFDatasetConfig) -> None:
    check_seq_len(settings)
    check_fits_context(model, settings.seq_len, "seq_len")


def text_file_tokens(model: HookedTransformer, settings: TextFileConfig,
                     tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "batch pos"]:
    """Packed rows of ``seq_len`` tokens from a local file.

    txt: one document a line, blank lines skipped; jsonl: ``text_field`` of each
    record; parquet: the ``text_field`` column. ``format: auto`` goes by the suffix
    (.txt/.text, .jsonl/.ndjson, .parquet/.pq).
    """
    file, format = resolve_text_file(settings.path, settings.format)
    require_tokenizer(model, "path")
    _check_packing(model, settings)
    return pack_documents(model, read_documents(file, format, settings.text_field), settings.seq_len,
                          settings.max_sequences, settings.prepend_bos, file.name, tracker)


def hf_dataset_tokens(model: HookedTransformer, settings: HFDatasetConfig,
                      tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "batch pos"]:
    """Packed rows of ``seq_len`` tokens from ``datasets.load_dataset(name, config_name, split=...)``.

    Reads records in the dataset's order (no shuffle) until ``max_sequences`` rows are
    full; with ``streaming`` nothing beyond that is downloaded. ``data_files`` is
    passed through, e.g. ``name: json`` with ``data_files: corpus.jsonl``.
    """
    require_tokenizer(model, "name")
    _check_packing(model, settings)
    dataset = load_text_dataset(settings.name, settings.config_name, settings.split, settings.streaming,
                                settings.data_files)
    return pack_documents(model, dataset_texts(dataset, settings.text_field, settings.name), settings.seq_len,
                          settings.max_sequences, settings.prepend_bos, settings.name, tracker)
