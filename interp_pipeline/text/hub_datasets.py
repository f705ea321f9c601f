"""Documents from Hugging Face datasets (by name, local builders over data files, or the local
datasets cache), and the pre-flight that says when one cannot be had here.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of
from interp_pipeline.common.hf_hub_access import datasets_unreachable_reason
from interp_pipeline.text.config import HFDatasetConfig
from interp_pipeline.text.files import text_value


def _in_datasets_cache(repo_id: str) -> bool:
    """Whether datasets' own offline fallback would find ``repo_id`` (its cache layout, mirrored)."""
    from datasets import config
    from datasets.naming import camelcase_to_snakecase

    parts = repo_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = Path(config.HF_DATASETS_CACHE).expanduser() / "___".join(parts)
    return any(p.is_dir() for p in root.glob("*/*/*"))


def _missing_data_file(data_files: Any) -> str | None:
    """The first local data file (or glob pattern) that matches nothing; URLs are not checked."""
    if isinstance(data_files, dict):  # split -> files
        entries = [f for v in data_files.values() for f in ([v] if isinstance(v, str) else v)]
    else:
        entries = [data_files] if isinstance(data_files, str) else list(data_files)
    for entry in map(str, entries):
        local = os.path.expanduser(entry)
        if "://" not in entry and not os.path.exists(local) and not glob.glob(local, recursive=True):
            return entry
    return None


def check_hf_dataset_available(settings: HFDatasetConfig) -> None:
    """Pre-flight: the dataset is a local path, a builder over local files, in the local
    datasets cache, or the hub is reachable. Else one ConfigError line naming it."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    name, data_files = settings.name, settings.data_files
    if not name:
        raise ConfigError("name", f"expected a dataset id or a local path, found {name!r}")
    if name in _PACKAGED_DATASETS_MODULES:  # json, parquet, text, csv...: reads data_files
        if not data_files:
            raise ConfigError("data_files", f"expected the files for the '{name}' builder, found none")
        missing = _missing_data_file(data_files)
        if missing is not None:
            raise ConfigError("data_files", f"expected existing files, found nothing at '{missing}' (from {Path.cwd()})")
        return
    if Path(name).expanduser().exists():
        return
    repo_id = name.removeprefix("hf://datasets/")
    if repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1:
        raise ConfigError("name", f"expected a local path or a hub dataset id (owner/name), found '{name}' "
                                  f"(no such file or directory)")
    if _in_datasets_cache(repo_id):
        return
    reason = datasets_unreachable_reason()
    if reason is not None:
        raise ConfigError("name", f"dataset '{name}' is neither a local path nor in the local Hugging Face "
                                  f"datasets cache, and the hub is unreachable ({reason})",
                          suggestion="load it once where the hub is reachable, or give a local path")


def dataset_texts(dataset: Any, text_field: str, name: str) -> Iterator[str]:
    columns = dataset.column_names  # None for some streaming datasets: then the first record tells
    if columns is not None:
        if text_field not in columns:
            raise ConfigError("text_field", f"expected a column of dataset '{name}', found '{text_field}' "
                                            f"(columns: {one_of(columns)})", suggestion=did_you_mean(text_field, columns))
        dataset = dataset.select_columns([text_field])  # skip decoding other columns (images, audio)
    for number, record in enumerate(dataset):
        if text_field not in record:
            raise ConfigError("text_field", f"expected a field of dataset '{name}', found '{text_field}' "
                                            f"(fields: {one_of(record)})", suggestion=did_you_mean(text_field, record))
        yield text_value(record[text_field], f"record {number} of dataset '{name}'")


def load_text_dataset(name: str, config_name: str | None, split: str, streaming: bool, data_files: Any) -> Any:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        return datasets.load_dataset(name, config_name, split=split, streaming=streaming, data_files=data_files)
    except DatasetNotFoundError as error:
        raise ConfigError("name", f"expected an accessible dataset, found '{name}' ({error})") from None
    except ConnectionError as error:  # pre-flight catches most; the hub can also drop mid-run
        raise ConfigError("name", str(error)) from None
    except FileNotFoundError as error:  # data files or a local path gone since pre-flight
        raise ConfigError("data_files" if data_files else "name", str(error).split("\n", 1)[0]) from None
    except ValueError as error:
        # datasets says which key is wrong only in its message; its first lines say it in full.
        lines = [line.strip() for line in str(error).splitlines()]
        if lines[0].startswith(("Bad split", "Unknown split")):
            raise ConfigError("split", lines[0]) from None
        if lines[0].startswith(("Config name is missing", "BuilderConfig '")):
            raise ConfigError("config_name", " ".join(lines[:2])) from None
        raise
