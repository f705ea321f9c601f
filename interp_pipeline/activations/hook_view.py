"""One hook of an activation store as ``[sequence, position, *row_shape]``, read lazily.

TransformerLens's ``ActivationCache[hook]`` is a ``[batch, pos, d_model]`` tensor; a store holds
the same activations as rows (one per stored token), so ``store[hook]`` gives a view that indexes
like that tensor and reads only the rows asked for::

    resid = store["blocks.1.hook_resid_pre"]     # or store["resid_pre", 1], as cache["resid_pre", 1]
    resid.shape                                  # (n_sequences, positions per sequence, d_model)
    resid[3]                                     # sequence 3: [pos, d_model]
    resid[3, -1]                                 # its last stored position: [d_model]
    resid[0:8, 5:10]                             # [8, 5, d_model]

The position index counts the positions the store holds for a sequence, which are the token
positions when it holds them all (``cache.positions=all``, the default); with ``last`` or
``START:STOP`` it counts within what was kept (``store.positions()`` has the token positions).
Sequences are the dataset's, in order; a store cut by ``max_tokens`` or written with
``non_padding`` may hold fewer positions for some sequences: one sequence still reads as
``[pos, d]``, several must hold as many positions each.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class RowSource(Protocol):
    """What a view reads of its store (reader.ActivationStore): written here, not imported, so that
    the store, which hands out views, and the view do not import each other."""

    @property
    def url(self) -> str: ...

    def row_shape(self, hook: str) -> tuple[int, ...]: ...

    def sequences(self) -> np.ndarray: ...

    def positions(self) -> np.ndarray: ...

    def read(self, hook: str, rows: Any) -> Any: ...


def hook_name(key: str | tuple[Any, ...]) -> str:
    """A store key as TransformerLens names it: a hook name, or ``(name, layer[, layer_type])`` and
    shorthands (``"resid_pre8"``) through TransformerLens's own ``get_act_name``."""
    if isinstance(key, str) and ("." in key or key.startswith("hook_")):
        return key
    # Imported here: transformer_lens is slow to import and a store is useful without it.
    from transformer_lens.utilities.components_utils import get_act_name

    if isinstance(key, tuple):
        return get_act_name(*key)
    return get_act_name(key)


class HookView:
    """``store[hook]``: a lazy ``[sequence, position, *row_shape]`` view of one hook (module docstring)."""

    def __init__(self, store: RowSource, hook: str):
        store.row_shape(hook)  # raises, with a suggestion, for a hook the store does not hold
        self.store = store
        self.hook = hook
        self._offsets: np.ndarray | None = None

    def _sequence_offsets(self) -> np.ndarray:
        # The writer stores rows sequence by sequence (layout.plan_rows), so each sequence's rows
        # are one run: offsets[s]..offsets[s + 1]. Counted once from the sequence index.
        if self._offsets is None:
            sequences = self.store.sequences()
            if sequences.size and np.any(np.diff(sequences) < 0):
                raise ValueError(f"activation store {self.store.url}: rows are not in sequence order")
            counts = np.bincount(sequences, minlength=int(sequences.max()) + 1 if sequences.size else 0)
            self._offsets = np.concatenate([[0], np.cumsum(counts)])
        return self._offsets

    def __len__(self) -> int:
        return len(self._sequence_offsets()) - 1

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_sequences, positions, *row_shape)``; positions is the most any sequence holds."""
        offsets = self._sequence_offsets()
        longest = int(np.diff(offsets).max()) if len(offsets) > 1 else 0
        return (len(self), longest, *self.store.row_shape(self.hook))

    def rows(self, sequence: int) -> np.ndarray:
        """The store rows of one sequence, in position order."""
        offsets = self._sequence_offsets()
        n = len(offsets) - 1
        if not -n <= sequence < n:
            raise IndexError(f"sequence {sequence} is out of range for a store of {n} sequences")
        sequence %= n
        rows = np.arange(offsets[sequence], offsets[sequence + 1])
        return rows[np.argsort(self.store.positions()[rows], kind="stable")]

    def __getitem__(self, index: Any) -> Any:
        sequence, position = index if isinstance(index, tuple) else (index, slice(None))
        if isinstance(index, tuple) and len(index) > 2:
            raise IndexError(f"expected store[hook][sequence, position], found {len(index)} indices; "
                             "index the row's own dimensions on the tensor returned")
        if isinstance(sequence, (int, np.integer)):
            return self.store.read(self.hook, self.rows(int(sequence))[position])
        chosen = range(len(self))[sequence] if isinstance(sequence, slice) else list(sequence)
        per_sequence = [self.rows(int(s))[position] for s in chosen]
        lengths = {len(np.atleast_1d(rows)) for rows in per_sequence}
        if len(lengths) > 1:
            raise IndexError(f"sequences {chosen} hold different numbers of positions ({sorted(lengths)}); "
                             "read them one at a time")
        if not per_sequence:
            return self.store.read(self.hook, np.empty(0, np.int64))
        rows = np.stack([np.atleast_1d(r) for r in per_sequence])
        values = self.store.read(self.hook, rows.ravel())
        shape = (len(per_sequence),) if np.ndim(per_sequence[0]) == 0 else rows.shape
        return values.reshape(*shape, *values.shape[1:])

    def __repr__(self) -> str:
        return f"HookView({self.hook!r}, shape={self.shape}, store={self.store.url!r})"
