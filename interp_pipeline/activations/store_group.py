"""Opening an activation store's zarr group read-only, and checking that its layout is one this
version reads (the version, the attributes it requires, its dtype and row shapes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.activations.layout import DTYPES, LAYOUT_ATTR, LAYOUT_VERSION

if TYPE_CHECKING:
    import zarr

_REQUIRED_ATTRS = ("complete", "hooks", "row_shape", "dtype", "n_rows", "chunk_rows", "n_chunks")


class StoreLayoutError(Exception):
    """The path is not an interp_pipeline activation store, or has a layout this version cannot read."""


class IncompleteStoreError(Exception):
    """The store's writer has not finished every chunk (open with ``allow_incomplete=True`` to read anyway)."""


def open_group(url: str, storage_options: dict[str, Any] | None) -> zarr.Group:
    import zarr
    from zarr.errors import ContainsArrayError, GroupNotFoundError

    try:
        return zarr.open_group(url, mode="r", storage_options=storage_options)
    except (GroupNotFoundError, ContainsArrayError):
        # Checked before FileNotFoundError: GroupNotFoundError subclasses it.
        raise StoreLayoutError(f"{url} is not an interp_pipeline activation store (no zarr group there)") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"no activation store at {url} (the path does not exist)") from None


def check_layout(url: str, attrs: dict[str, Any]) -> None:
    version = attrs.get(LAYOUT_ATTR)
    if version is None:
        raise StoreLayoutError(f"{url} is not an interp_pipeline activation store "
                               f"(zarr group without a '{LAYOUT_ATTR}' attribute)")
    if version != LAYOUT_VERSION:
        raise StoreLayoutError(f"activation store {url} has layout version {version!r}; this interp_pipeline "
                               f"reads version {LAYOUT_VERSION} (use the interp_pipeline that wrote it)")
    missing = [key for key in _REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise StoreLayoutError(f"activation store {url} lacks attribute(s) {', '.join(missing)} "
                               f"required by layout version {LAYOUT_VERSION}")
    if attrs["dtype"] not in DTYPES:
        raise StoreLayoutError(f"activation store {url} has dtype {attrs['dtype']!r}; expected one of "
                               f"{', '.join(DTYPES)}")
    unshaped = [h for h in attrs["hooks"] if h not in attrs["row_shape"]]
    if unshaped:
        raise StoreLayoutError(f"activation store {url} has no row_shape for hook(s) {', '.join(unshaped)}")
