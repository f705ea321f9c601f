"""The settings of the token datasets made from text (their params come through a ``data`` group):
prompts written in YAML, a local file, a Hugging Face dataset (interp_pipeline.text.token_datasets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import MISSING

from interp_pipeline.config.fields import choice, positive

# A text file's formats; auto goes by the suffix (interp_pipeline.text.files.SUFFIX_FORMATS).
FORMATS = ("auto", "jsonl", "parquet", "txt")


@dataclass
class PromptTokensConfig:
    """Prompts tokenized with the model's tokenizer, right-padded (the prompt_tokens stage)."""

    prompts: List[str] = MISSING  # at least one
    prepend_bos: bool = True


@dataclass
class TextFileConfig:
    """A local txt, jsonl or parquet file packed into rows of ``seq_len`` tokens (the text_file_tokens stage)."""

    path: str = MISSING  # relative: from the directory the run was started in
    seq_len: int = positive(MISSING)  # tokens a row, BOS included (so at least 2 with prepend_bos)
    format: str = choice("auto", FORMATS)
    text_field: str = "text"  # jsonl: each record's field; parquet: the column
    max_sequences: Optional[int] = positive(None)  # None: every full row the file holds
    prepend_bos: bool = True


@dataclass
class HFDatasetConfig:
    """A Hugging Face dataset (``datasets.load_dataset(name, config_name, split=...)``) packed into rows of
    ``seq_len`` tokens (the hf_dataset_tokens stage)."""

    name: str = MISSING  # a hub id, a local path, or a builder (json, parquet, ...) over data_files
    seq_len: int = positive(MISSING)  # tokens a row, BOS included (so at least 2 with prepend_bos)
    split: str = "train"
    text_field: str = "text"
    config_name: Optional[str] = None
    max_sequences: Optional[int] = positive(1000)  # records are read until this many rows are full; None: all
    streaming: bool = True  # nothing beyond those records is downloaded
    prepend_bos: bool = True
    data_files: Any = None  # passed through: a path, a list of them, or {split: paths}
