"""Patching results as labelled arrays: values with named dimensions and a label per index.

A grid's result is a float array such as [layer, head] or [component, layer, pos];
alone it cannot say which axis is which, nor which token a position held. A
:class:`LabelledArray` carries that with it (``dims``, a readable label for every
index in ``coords``, the metric and method in ``attrs``), so top-k tables and
heatmaps (interp_pipeline.patching.plots) need nothing else.

Importing this module registers two stage-cache codecs: one LabelledArray, and a
dict of them (a stage returning several grids as one output). Each is one
safetensors file (written with ``safetensors.numpy``, so torch stays unimported)
whose header metadata holds dims, coords, name and attrs as JSON; nothing is
pickled. A stage module returning these must import this module at its top (as
stages/models.py does for the model codec), so the codecs are registered before
a cached result is read back in a fresh process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.storage.cache_codecs import Codec, register_codec

if TYPE_CHECKING:
    import numpy as np

AttrValue = str | float | int | bool
TOP_K_ORDERS = ("abs", "max", "min")
# Bumped when the stored layout changes; a reader refuses files newer than itself.
FORMAT_VERSION = 1
_META_KEY = "interp_pipeline.labelled_array"
_DICT_META_KEY = "interp_pipeline.labelled_arrays"
_VALUES = "values"
# Tensor names in a dict's file: prefixed, so no key can collide with safetensors'
# reserved "__metadata__" entry.
_DICT_PREFIX = "values/"


def position_labels(str_tokens: Sequence[str]) -> list[str]:
    """Readable labels for the positions of one prompt: ``["0 '<|endoftext|>'", "1 'When'", "2 ' John'"]``.

    The index comes first so labels stay unique when a token repeats; the token is
    quoted so a leading space shows, and line breaks are escaped to keep it on one line.
    """
    return [f"{i} '{_escape(token)}'" for i, token in enumerate(str_tokens)]


def _escape(token: str) -> str:
    return token.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def component_label(dims: Sequence[str], labels: Sequence[str]) -> str:
    """One cell's name, TransformerLens style: "L10H7", "L3 pos 5 ' John'", "attn_out L3 pos 5 ' John'".

    Numeric layer and head labels become L<n> and H<n> (joined as L<n>H<m> when both
    are there), a ``component`` label stands alone, and any other dimension reads
    "<dim> <label>".
    """
    parts: list[str | None] = []
    layer_at = head_at = None
    for dim, label in zip(dims, labels):
        numeric = label.isascii() and label.isdigit()
        if dim == "layer" and numeric:
            layer_at = len(parts)
            parts.append(f"L{label}")
        elif dim in ("head", "head_index") and numeric:
            head_at = len(parts)
            parts.append(f"H{label}")
        elif dim == "component":
            parts.append(label)
        else:
            parts.append(f"{dim} {label}")
    if layer_at is not None and head_at is not None:
        # The head joins its layer wherever the dims put it: (layer, pos, head) -> "L3H7 pos 5 ...".
        parts[layer_at] = f"{parts[layer_at]}{parts[head_at]}"
        parts[head_at] = None
    return " ".join(p for p in parts if p is not None)


@dataclass(eq=False)  # an ndarray's == is elementwise, so a generated __eq__ would mislead
class LabelledArray:
    """A float array with named dimensions and a string label for every index of each.

    ``coords`` may leave out a dimension; its labels are then "0", "1", ...
    ``attrs`` holds scalars describing the result: by convention ``metric`` (the
    colourbar label), ``normalized`` and ``method`` ("exact", "attribution").
    Integer or boolean values become float64, torch tensors are converted, and
    every shape, label list and attr is checked here, so a bad grid fails where it
    is built rather than where it is plotted.
    """

    values: np.ndarray
    dims: tuple[str, ...]
    coords: dict[str, list[str]] = field(default_factory=dict)
    name: str = "values"
    attrs: dict[str, AttrValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = _as_float_array(self.values)
        self.dims = _check_dims(self.dims, self.values.shape)
        if self.values.size == 0:
            raise ValueError(f"expected a non-empty array, found shape {self.values.shape}")
        self.coords = _check_coords(self.coords, self.dims, self.values.shape)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"expected a non-empty string name, found {self.name!r}")
        self.attrs = _check_attrs(self.attrs)

    def __repr__(self) -> str:
        shape = dict(zip(self.dims, self.values.shape))
        return f"LabelledArray(name={self.name!r}, shape={shape}, dtype={self.values.dtype}, attrs={self.attrs!r})"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def ndim(self) -> int:
        return self.values.ndim

    def label(self, index: Sequence[int]) -> str:
        """The readable name of the cell at ``index`` (one integer per dim); see :func:`component_label`."""
        if len(index) != self.ndim:
            raise ValueError(f"expected {self.ndim} indices ({', '.join(self.dims)}), found {len(index)}")
        return component_label(self.dims, [self.coords[d][i] for d, i in zip(self.dims, index)])

    def top_k_indices(self, k: int, by: str = "abs") -> list[tuple[int, ...]]:
        """Indices of the k cells ranked first, NaNs left out.

        ``by``: "abs" (largest magnitude first), "max" (largest first) or "min"
        (most negative first). Ties keep array order (row-major), so the ranking is
        deterministic.
        """
        import numpy as np

        if by not in TOP_K_ORDERS:
            raise ValueError(f"expected by to be one of {', '.join(TOP_K_ORDERS)}, found {by!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"expected k to be a positive integer, found {k!r}")
        flat = self.values.astype(np.float64).ravel()
        keep = np.flatnonzero(~np.isnan(flat))
        key = {"abs": -np.abs(flat[keep]), "max": -flat[keep], "min": flat[keep]}[by]
        order = keep[np.argsort(key, kind="stable")[:k]]
        return [tuple(int(i) for i in np.unravel_index(j, self.shape)) for j in order]

    def top_k(self, k: int, by: str = "abs") -> list[tuple[str, float]]:
        """The k cells ranked first as (label, value), e.g. ``[("L9H9", -0.41), ("L10H7", 0.33)]``."""
        return [(self.label(index), float(self.values[index])) for index in self.top_k_indices(k, by)]

    def sel(self, **labels: str | int) -> LabelledArray | float:
        """Fix some dims: a string picks by label, an int by position (negative counts from the end).

        ``sel(layer="3")`` or ``sel(layer=3)`` gives the [head] array of layer 3 (layer
        labels are the positions); selecting every dim gives the float itself.
        """
        index: list[Any] = [slice(None)] * self.ndim
        for dim, which in labels.items():
            if dim not in self.dims:
                raise KeyError(f"expected a dim of {self.dims}, found {dim!r}")
            index[self.dims.index(dim)] = self._position(dim, which)
        kept = tuple(d for d in self.dims if d not in labels)
        values = self.values[tuple(index)]
        if not kept:
            return float(values)
        return LabelledArray(values, kept, {d: self.coords[d] for d in kept}, self.name, dict(self.attrs))

    def _position(self, dim: str, which: str | int) -> int:
        options = self.coords[dim]
        if isinstance(which, str):
            try:
                return options.index(which)
            except ValueError:
                shown = ", ".join(repr(o) for o in options[:6]) + (", ..." if len(options) > 6 else "")
                raise KeyError(f"{dim}: expected one of {shown}, found {which!r}") from None
        if isinstance(which, bool) or not isinstance(which, int):
            raise TypeError(f"{dim}: expected a label (str) or a position (int), found {which!r}")
        if not -len(options) <= which < len(options):
            raise IndexError(f"{dim}: expected a position in 0..{len(options) - 1}, found {which}")
        return which % len(options)

    def transpose(self, *dims: str) -> LabelledArray:
        """The same array with its dims in the order given (every dim, once)."""
        if sorted(dims) != sorted(self.dims):
            raise ValueError(f"expected a reordering of {self.dims}, found {dims}")
        axes = [self.dims.index(d) for d in dims]
        return LabelledArray(self.values.transpose(axes), tuple(dims), dict(self.coords), self.name, dict(self.attrs))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (values as nested lists; NaN and inf as Python's json writes them)."""
        return {
            "name": self.name,
            "dims": list(self.dims),
            "coords": {d: list(self.coords[d]) for d in self.dims},
            "attrs": dict(self.attrs),
            "dtype": self.values.dtype.name,
            "values": self.values.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelledArray:
        import numpy as np

        values = np.asarray(data["values"], dtype=data.get("dtype", "float64"))
        return cls(values, tuple(data["dims"]), dict(data.get("coords", {})),
                   data.get("name", "values"), dict(data.get("attrs", {})))


def stack(arrays: Sequence[LabelledArray], *, name: str, dim: str = "component",
          labels: Sequence[str] | None = None) -> LabelledArray:
    """Arrays of one shape stacked along a new leading dim, as TransformerLens's ``*_every`` functions do.

    ``labels`` default to the arrays' names (["resid_pre", "attn_out", "mlp_out"]);
    the stack keeps the attrs all of them share.
    """
    import numpy as np

    if not arrays:
        raise ValueError("expected at least one array to stack")
    first = arrays[0]
    for array in arrays[1:]:
        if array.dims != first.dims or array.coords != first.coords:
            raise ValueError(f"expected arrays of one layout to stack; {array.name!r} has dims {array.dims} "
                             f"shape {array.shape}, {first.name!r} has {first.dims} {first.shape}")
    shared = {k: v for k, v in first.attrs.items() if all(a.attrs.get(k) == v for a in arrays[1:])}
    labels = [a.name for a in arrays] if labels is None else list(labels)
    values = np.stack([a.values for a in arrays])
    return LabelledArray(values, (dim, *first.dims), {dim: labels, **first.coords}, name, shared)


def _as_float_array(values: Any) -> np.ndarray:
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor, accepted without importing torch here
        values = values.detach().cpu()
        try:
            values = values.numpy()
        except TypeError:  # bfloat16 has no numpy dtype
            values = values.float().numpy()
    values = np.asarray(values)
    if values.dtype.kind in "biu":
        return values.astype(np.float64)
    if values.dtype.kind != "f":
        raise TypeError(f"expected real numbers, found an array of dtype {values.dtype}")
    return values


def _check_dims(dims: Any, shape: tuple[int, ...]) -> tuple[str, ...]:
    if isinstance(dims, str):  # ("layer") is a string, not a one-element tuple
        raise TypeError(f"expected a tuple of dim names, found the string {dims!r}")
    dims = tuple(dims)
    if not dims or not all(isinstance(d, str) and d for d in dims):
        raise ValueError(f"expected one or more non-empty dim names, found {dims!r}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"expected distinct dim names, found {dims!r}")
    if len(dims) != len(shape):
        raise ValueError(f"expected a {len(dims)}-D array for dims {dims}, found shape {shape}")
    return dims


def _check_coords(coords: Any, dims: tuple[str, ...], shape: tuple[int, ...]) -> dict[str, list[str]]:
    if not isinstance(coords, Mapping):
        raise TypeError(f"expected coords as a dict of label lists, found {type(coords).__name__}")
    unknown = sorted(set(coords) - set(dims))
    if unknown:
        raise ValueError(f"coords name {unknown}, which are not dims {dims}")
    checked = {}
    for axis, (dim, size) in enumerate(zip(dims, shape)):
        labels = coords.get(dim)
        if labels is None:
            checked[dim] = [str(i) for i in range(size)]
            continue
        if isinstance(labels, str):
            raise TypeError(f"coords[{dim!r}]: expected a list of labels, found the string {labels!r}")
        labels = list(labels)
        for label in labels:
            if isinstance(label, bool) or not isinstance(label, (str, int)):
                raise TypeError(f"coords[{dim!r}]: expected string labels, found {label!r}")
        labels = [str(label) for label in labels]
        if len(labels) != size:
            raise ValueError(f"coords[{dim!r}]: expected {size} labels (axis {axis} of shape {shape}), "
                             f"found {len(labels)}")
        repeated = [label for label, count in _counts(labels).items() if count > 1]
        if repeated:
            raise ValueError(f"coords[{dim!r}]: expected distinct labels, found {repeated[0]!r} more than once "
                             "(position_labels prefixes token labels with their position)")
        checked[dim] = labels
    return checked


def _counts(labels: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return counts


def _check_attrs(attrs: Any) -> dict[str, AttrValue]:
    if not isinstance(attrs, Mapping):
        raise TypeError(f"expected attrs as a dict, found {type(attrs).__name__}")
    checked: dict[str, AttrValue] = {}
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise TypeError(f"attrs: expected string keys, found {key!r}")
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            try:
                value = value.item()  # numpy scalars: float32, bool_
            except (TypeError, ValueError):
                pass  # an array of several values: refused just below
        if not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"attrs[{key!r}]: expected a string, number or bool, found {value!r}")
        checked[key] = value
    return checked


# --- stage-cache codecs -------------------------------------------------------------

def _header(array: LabelledArray) -> dict[str, Any]:
    return {"name": array.name, "dims": list(array.dims), "coords": array.coords, "attrs": array.attrs}


def _from_header(header: Mapping[str, Any], values: np.ndarray) -> LabelledArray:
    return LabelledArray(values, tuple(header["dims"]), dict(header["coords"]), header["name"], dict(header["attrs"]))


def _contiguous(values: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(values)


def _read(path: Path, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata() or {}
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    if key not in metadata:
        raise ValueError(f"{path}: expected a labelled-array file (metadata {key!r}), found none")
    header = json.loads(metadata[key])
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: written in labelled-array format {header['format_version']}, "
                         f"newer than this version reads ({FORMAT_VERSION})")
    return header, tensors


def _is_labelled(value: Any) -> bool:
    return isinstance(value, LabelledArray)


def _save_labelled(value: LabelledArray, path: Path) -> None:
    from safetensors.numpy import save_file

    header = {"format_version": FORMAT_VERSION, **_header(value)}
    save_file({_VALUES: _contiguous(value.values)}, str(path), metadata={_META_KEY: json.dumps(header)})


def _load_labelled(path: Path) -> LabelledArray:
    header, tensors = _read(path, _META_KEY)
    return _from_header(header, tensors[_VALUES])


def _is_labelled_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, LabelledArray) for k, v in value.items()
    )


def _save_labelled_dict(value: Mapping[str, LabelledArray], path: Path) -> None:
    from safetensors.numpy import save_file

    # A list, not a dict keyed by name: it keeps the stage's order of the grids.
    header = {"format_version": FORMAT_VERSION,
              "arrays": [{"key": key, **_header(array)} for key, array in value.items()]}
    tensors = {f"{_DICT_PREFIX}{key}": _contiguous(array.values) for key, array in value.items()}
    save_file(tensors, str(path), metadata={_DICT_META_KEY: json.dumps(header)})


def _load_labelled_dict(path: Path) -> dict[str, LabelledArray]:
    header, tensors = _read(path, _DICT_META_KEY)
    return {entry["key"]: _from_header(entry, tensors[f"{_DICT_PREFIX}{entry['key']}"]) for entry in header["arrays"]}


for _codec in (
    Codec("labelled_arrays", ".safetensors", _is_labelled_dict, _save_labelled_dict, _load_labelled_dict),
    Codec("labelled_array", ".safetensors", _is_labelled, _save_labelled, _load_labelled),
):
    register_codec(_codec)
