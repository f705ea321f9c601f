"""A torch IterableDataset over an activation store (kept apart so reader.py imports no torch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import IterableDataset, get_worker_info


class BatchSource(Protocol):
    """What this dataset needs of reader.ActivationStore (a protocol, so this module does not
    import reader.py, which imports it)."""

    def _iter_batches(self, hook: str, batch_size: int, **options: Any) -> Iterator[Any]: ...

    def _reopened(self) -> BatchSource: ...

_ALLOWED = {"seed", "epochs", "shuffle", "buffer_chunks", "drop_last", "with_rows"}


class ActivationBatches(IterableDataset):
    """Whole batches of one hook, from ``ActivationStore.torch_dataset``; DataLoader with ``batch_size=None``."""

    def __init__(self, store: BatchSource, hook: str, batch_size: int, **kwargs: Any):
        unknown = sorted(set(kwargs) - _ALLOWED)
        if unknown:
            raise TypeError(f"torch_dataset: unexpected argument(s) {', '.join(unknown)} "
                            f"(expected some of {', '.join(sorted(_ALLOWED))})")
        self.store = store
        self.hook = hook
        self.batch_size = batch_size
        self.kwargs = kwargs
        self.epoch = 0
        # Fail here, in the notebook, rather than inside a worker process.
        store._iter_batches(hook, batch_size, first_epoch=0, as_torch=True, **self._options())

    def _options(self) -> dict[str, Any]:
        options = {"seed": 0, "epochs": 1, "shuffle": True, "buffer_chunks": 8, "drop_last": False,
                   "with_rows": False}
        options.update(self.kwargs)
        return options

    def set_epoch(self, epoch: int) -> None:
        """Number the next pass's (first) epoch, so each pass of a training loop gets a new order."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, Any]]:
        info = get_worker_info()
        store, part, n_parts = self.store, 0, 1
        if info is not None:
            # A worker: reopen the store in this process (a forked copy shares the
            # parent's file handles and fsspec sessions), and take every n-th chunk.
            store, part, n_parts = self.store._reopened(), info.id, info.num_workers
        return store._iter_batches(self.hook, self.batch_size, first_epoch=self.epoch, as_torch=True,
                                   part=part, n_parts=n_parts, **self._options())
