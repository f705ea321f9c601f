"""LabelledArray: validation, labels, top-k, selection, and its stage-cache codecs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from interp_pipeline.patching.labelled import LabelledArray, component_label, position_labels, stack
from interp_pipeline.storage.cache_codecs import codec_for
from interp_pipeline.runner.stage_cache import StageCache

REPO = Path(__file__).resolve().parents[2]
TOKENS = ["<|endoftext|>", "When", " John", " and", " Mary"]


def _heads() -> LabelledArray:
    # [layer, head] with a known order: |values| ranks L1H2 (-9), L0H1 (7), L2H0 (5), ...
    values = np.array([[0.5, 7.0, -1.0], [2.0, 0.0, -9.0], [5.0, -3.0, 1.5]], dtype=np.float32)
    return LabelledArray(values, ("layer", "head"), name="head_out",
                         attrs={"metric": "logit_diff", "normalized": True, "method": "exact"})


def _block() -> LabelledArray:
    values = np.arange(3 * 2 * 5, dtype=np.float64).reshape(3, 2, 5) - 10.0
    values[1, 0, 3] = np.nan
    return LabelledArray(values, ("component", "layer", "pos"),
                         {"component": ["resid_pre", "attn_out", "mlp_out"], "pos": position_labels(TOKENS)},
                         name="block_every", attrs={"metric": "logit_diff", "clean": 3.25})


def _same(a: LabelledArray, b: LabelledArray) -> None:
    assert (a.name, a.dims, a.coords, a.attrs) == (b.name, b.dims, b.coords, b.attrs)
    assert a.values.dtype == b.values.dtype
    np.testing.assert_array_equal(a.values, b.values)  # NaNs compare equal here


def _round_trip(tmp_path: Path, value):
    pending = StageCache(tmp_path).begin("f", "0" * 32)
    pending.write_output("out", value)
    entry = pending.commit(run_id=None, metrics={}, extra={})
    return entry, entry.path / entry.record["outputs"]["out"]["file"], entry.load_output("out")


# --- construction and validation ----------------------------------------------------

def test_missing_coords_default_to_indices_and_ints_become_float() -> None:
    array = LabelledArray(np.arange(6).reshape(2, 3), ("layer", "head"), {"head": [0, 1, 2]})
    assert array.coords == {"layer": ["0", "1"], "head": ["0", "1", "2"]}
    assert array.values.dtype == np.float64
    assert array.shape == (2, 3) and array.ndim == 2


def test_position_labels_are_unique_and_show_spaces() -> None:
    labels = position_labels(["<bos>", " John", " John", "a\nb"])
    assert labels == ["0 '<bos>'", "1 ' John'", "2 ' John'", "3 'a\\nb'"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(values=np.zeros((2, 3)), dims=("layer",)), ValueError, "1-D array for dims"),
        (dict(values=np.zeros((2, 3)), dims=("layer", "layer")), ValueError, "distinct dim names"),
        (dict(values=np.zeros(3), dims="layer"), TypeError, "tuple of dim names"),
        (dict(values=np.zeros((2, 3)), dims=("layer", "head"), coords={"head": ["a", "b"]}),
         ValueError, r"coords\['head'\]: expected 3 labels"),
        (dict(values=np.zeros((2, 3)), dims=("layer", "head"), coords={"pos": ["a"]}),
         ValueError, "not dims"),
        (dict(values=np.zeros((2, 3)), dims=("layer", "head"), coords={"head": ["a", "b", "a"]}),
         ValueError, "distinct labels"),
        (dict(values=np.zeros((2, 3)), dims=("layer", "head"), coords={"head": "abc"}),
         TypeError, "list of labels"),
        (dict(values=np.zeros((2, 0)), dims=("layer", "head")), ValueError, "non-empty array"),
        (dict(values=np.array([["a"]]), dims=("layer", "head")), TypeError, "real numbers"),
        (dict(values=np.zeros((1, 1), dtype=complex), dims=("layer", "head")), TypeError, "real numbers"),
        (dict(values=np.zeros((1, 1)), dims=("layer", "head"), attrs={"metric": [1]}), TypeError, "attrs"),
        (dict(values=np.zeros((1, 1)), dims=("layer", "head"), name=""), ValueError, "name"),
    ],
    ids=["ndim", "repeated-dim", "string-dims", "label-count", "unknown-dim", "repeated-label",
         "string-coords", "empty", "strings", "complex", "attr-type", "empty-name"],
)
def test_bad_arrays_are_refused_where_they_are_built(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        LabelledArray(**kwargs)


def test_torch_tensors_are_converted() -> None:
    torch = pytest.importorskip("torch")
    array = LabelledArray(torch.ones(2, 2, dtype=torch.bfloat16, requires_grad=True), ("layer", "head"))
    assert array.values.dtype == np.float32 and array.values.sum() == 4


# --- labels and top-k ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("dims", "labels", "expected"),
    [
        (("layer", "head"), ("10", "7"), "L10H7"),
        (("layer", "pos"), ("3", "2 ' John'"), "L3 pos 2 ' John'"),
        (("component", "layer", "pos"), ("attn_out", "3", "2 ' John'"), "attn_out L3 pos 2 ' John'"),
        (("layer", "pos", "head"), ("3", "2 ' John'", "7"), "L3H7 pos 2 ' John'"),
        (("layer", "head", "dest_pos"), ("3", "7", "4 ' Mary'"), "L3H7 dest_pos 4 ' Mary'"),
        (("layer",), ("embed",), "layer embed"),
    ],
)
def test_component_labels_read_like_transformer_lens(dims, labels, expected) -> None:
    assert component_label(dims, labels) == expected


def test_top_k_orders_by_magnitude_by_default() -> None:
    assert _heads().top_k(3) == [("L1H2", -9.0), ("L0H1", 7.0), ("L2H0", 5.0)]


def test_top_k_by_max_and_min() -> None:
    heads = _heads()
    assert [label for label, _ in heads.top_k(2, by="max")] == ["L0H1", "L2H0"]
    assert [label for label, _ in heads.top_k(2, by="min")] == ["L1H2", "L2H1"]


def test_top_k_skips_nan_breaks_ties_in_array_order_and_stops_at_the_size() -> None:
    array = LabelledArray(np.array([[1.0, np.nan], [-1.0, 1.0]]), ("layer", "head"))
    assert array.top_k(10) == [("L0H0", 1.0), ("L1H0", -1.0), ("L1H1", 1.0)]


def test_top_k_labels_name_tokens() -> None:
    label, value = _block().top_k(1)[0]
    assert (label, value) == ("mlp_out L1 pos 4 ' Mary'", 19.0)


@pytest.mark.parametrize(("k", "by"), [(0, "abs"), (True, "abs"), (2.0, "abs"), (1, "largest")])
def test_top_k_refuses_bad_arguments(k, by) -> None:
    with pytest.raises(ValueError):
        _heads().top_k(k, by=by)


# --- selection, reshaping, dict form --------------------------------------------------

def test_sel_by_label_or_position() -> None:
    block = _block()
    attn = block.sel(component="attn_out")
    assert attn.dims == ("layer", "pos") and attn.coords["pos"] == position_labels(TOKENS)
    np.testing.assert_array_equal(attn.values, block.values[1])
    assert attn.name == block.name and attn.attrs == block.attrs
    np.testing.assert_array_equal(block.sel(pos=-1, layer="0").values, block.values[:, 0, -1])
    assert block.sel(component=2, layer=1, pos="2 ' John'") == block.values[2, 1, 2]


def test_sel_refuses_unknown_dims_and_labels() -> None:
    block = _block()
    with pytest.raises(KeyError, match="dim"):
        block.sel(head=0)
    with pytest.raises(KeyError, match="pos: expected one of"):
        block.sel(pos=" John")
    with pytest.raises(IndexError):
        block.sel(layer=2)


def test_transpose_and_stack() -> None:
    block = _block()
    flipped = block.transpose("pos", "component", "layer")
    np.testing.assert_array_equal(flipped.values, block.values.transpose(2, 0, 1))
    assert flipped.coords == block.coords
    parts = [block.sel(component=c) for c in block.coords["component"]]
    for part, name in zip(parts, block.coords["component"]):
        part.name = name
    _same(stack(parts, name="block_every"), block)
    with pytest.raises(ValueError, match="one layout"):
        stack([parts[0], _heads()], name="x")


def test_dict_form_survives_json() -> None:
    block = _block()
    _same(LabelledArray.from_dict(json.loads(json.dumps(block.to_dict()))), block)


# --- stage-cache codecs ---------------------------------------------------------------

def test_a_labelled_array_round_trips_through_the_stage_cache(tmp_path: Path) -> None:
    heads = _heads()
    assert codec_for(heads).name == "labelled_array"
    entry, path, loaded = _round_trip(tmp_path, heads)
    assert entry.record["outputs"]["out"] == {"codec": "labelled_array", "file": "out.safetensors"}
    _same(loaded, heads)
    assert loaded.top_k(1) == [("L1H2", -9.0)]


def test_a_dict_of_labelled_arrays_round_trips_in_order(tmp_path: Path) -> None:
    grids = {"head_out": _heads(), "block_every": _block(), "__metadata__": _heads()}
    assert codec_for(grids).name == "labelled_arrays"
    entry, _, loaded = _round_trip(tmp_path, grids)
    assert entry.record["outputs"]["out"]["codec"] == "labelled_arrays"
    assert list(loaded) == list(grids)
    for key, array in grids.items():
        _same(loaded[key], array)


def test_other_values_keep_their_codecs() -> None:
    assert codec_for({}).name == "json"
    with pytest.raises(TypeError):
        codec_for({"a": _heads(), "b": "not an array"})


def test_the_file_is_plain_safetensors_with_json_metadata(tmp_path: Path) -> None:
    from safetensors import safe_open

    _, path, _ = _round_trip(tmp_path, _block())
    with safe_open(str(path), framework="np") as handle:
        assert list(handle.keys()) == ["values"]
        header = json.loads(handle.metadata()["interp_pipeline.labelled_array"])
    assert header["dims"] == ["component", "layer", "pos"]
    assert header["coords"]["pos"][2] == "2 ' John'"
    assert header["attrs"] == {"metric": "logit_diff", "clean": 3.25}


def test_a_file_from_a_newer_format_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from interp_pipeline.storage.cache_codecs import codec_named

    path = tmp_path / "new.safetensors"
    header = {"format_version": 99, "name": "x", "dims": ["layer"], "coords": {"layer": ["0"]}, "attrs": {}}
    save_file({"values": np.zeros(1)}, str(path), metadata={"interp_pipeline.labelled_array": json.dumps(header)})
    with pytest.raises(ValueError, match="newer"):
        codec_named("labelled_array").load(path)


def test_the_codecs_work_without_torch(tmp_path: Path) -> None:
    # Other tests import torch into this process, so look from a fresh one.
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from interp_pipeline.patching.labelled import LabelledArray\n"
        "from interp_pipeline.storage.cache_codecs import codec_for, codec_named\n"
        "a = LabelledArray(np.ones((2, 2)), ('layer', 'head'), name='x')\n"
        f"path = Path({str(tmp_path)!r}) / 'x.safetensors'\n"
        "codec_for(a).save(a, path)\n"
        "assert codec_named('labelled_array').load(path).values.sum() == 4\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_nan_and_attrs_survive_the_codec(tmp_path: Path) -> None:
    _, _, loaded = _round_trip(tmp_path, _block())
    assert math.isnan(loaded.values[1, 0, 3])
    assert loaded.attrs["clean"] == 3.25
