"""Activation stores written by hand in the version-2 layout (as the writer writes them), for the
reader's tests and the SAE tests that train from a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from interp_pipeline.activations.checksums import codecs
from interp_pipeline.activations.layout import LAYOUT_VERSION

RESID = "blocks.0.hook_resid_pre"
HEADS = "blocks.0.attn.hook_z"
D_MODEL, N_HEADS, D_HEAD = 6, 2, 3
WRITER_CONFIG = {"write_empty_chunks": True}


def write_store(path: Path | str, n_rows: int, chunk_rows: int, hooks: tuple[str, ...] = (RESID, HEADS),
                dtype: str = "float32", complete: bool = True, seq_len: int = 7,
                values: dict[str, np.ndarray] | None = None, chunk_done: np.ndarray | None = None) -> dict:
    """Write a store by hand; by default column 0 of every hook's row i holds i (exact in float32).

    Rows come from sequences of ``seq_len`` tokens (row i: sequence i // seq_len,
    position i % seq_len, token id (7 * i) % 50). Returns the written arrays.
    """
    n_chunks = -(-n_rows // chunk_rows)
    shapes = {h: [N_HEADS, D_HEAD] if "attn" in h else [D_MODEL] for h in hooks}
    stored = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}[dtype]
    group = zarr.open_group(str(path), mode="w")
    written: dict[str, np.ndarray] = {}
    for hook in hooks:
        shape = shapes[hook]
        if values and hook in values:
            data = values[hook]
        else:
            data = np.zeros((n_rows, *shape), np.float32)
            data.reshape(n_rows, -1)[:, 0] = np.arange(n_rows)
            data.reshape(n_rows, -1)[:, 1] = hooks.index(hook)
            data = data.astype(stored)
        names = ("token", "head", "d_head") if len(shape) == 2 else ("token", "d_model")
        arr = group.create_array(f"activations/{hook}", shape=(n_rows, *shape), chunks=(chunk_rows, *shape),
                                 dtype=stored, compressors=codecs(ZstdCodec(level=3)), dimension_names=names,
                                 fill_value=0, config=WRITER_CONFIG)
        arr[:] = data
        written[hook] = data
    rows = np.arange(n_rows)
    index = {"token_ids": (7 * rows) % 50, "sequence": rows // seq_len, "position": rows % seq_len}
    for name, data in index.items():
        arr = group.create_array(name, shape=(n_rows,), chunks=(chunk_rows,), dtype="int32",
                                 compressors=codecs(ZstdCodec(level=3)), dimension_names=("token",), fill_value=0,
                                 config=WRITER_CONFIG)
        arr[:] = data.astype(np.int32)
        written[name] = data
    done = group.create_array("chunk_done", shape=(n_chunks,), chunks=(1,), dtype="uint8", fill_value=0,
                              compressors=codecs(None), config=WRITER_CONFIG)
    done[:] = np.ones(n_chunks, np.uint8) if chunk_done is None else chunk_done
    group.attrs.update({
        "interp_pipeline_layout": LAYOUT_VERSION, "complete": complete, "hooks": list(hooks), "row_shape": shapes,
        "dtype": dtype, "n_rows": n_rows, "chunk_rows": chunk_rows, "n_chunks": n_chunks,
        "model": {"name": "tiny"}, "positions": "all", "dataset_fingerprint": "f" * 16,
        "cache_key": "k", "versions": {"zarr": zarr.__version__},
    })
    return written
