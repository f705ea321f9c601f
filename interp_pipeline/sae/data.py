"""SAELens's data provider (an endless iterator of activation batches) from a store, a tensor or a model.

The last ``eval_tokens`` rows are held out for evaluation and never trained on: in
a store those are the last sequences cached, so no sequence is split between the
two sides but the one at the boundary. Batches are float32, flattened to
``[batch, d_in]`` (per-head hooks become ``n_heads * d_head`` wide), and checked
for NaN and infinity, which would otherwise reach the optimizer silently.

Without a store, ``from_model`` streams: the rows are the model's activations at
every position of the token dataset, in the order a store of them would hold
(sequence-major), computed as they are needed and never written.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from interp_pipeline.common.errors import ConfigError, did_you_mean, one_of

if TYPE_CHECKING:
    import torch

    from interp_pipeline.activations.reader import ActivationStore


_SHOWN_ROWS = 5


class NonFiniteActivations(ValueError):
    """A training batch holds NaN or infinity."""


@dataclass
class TrainingData:
    """What the trainer needs: batches, their width, the held-out rows and the token budget.

    ``batches_from(n)`` is the stream from its ``n``-th batch on (a resumed run's data
    position), the same batches an unbroken stream would give from there; ``batches`` is
    the stream from the start. Synthetic data is drawn from torch's global RNG, so for it
    the position is that RNG's state (which checkpoints keep) and ``n`` is not needed.
    """

    batches_from: Callable[[int], Iterator[torch.Tensor]]
    d_in: int
    hook: str | None
    holdout: torch.Tensor  # [eval_tokens, d_in], float32
    train_rows: int
    total_tokens: int  # what SAETrainer trains on (training_tokens, or fewer when allowed)
    source: str  # for messages: the store's URL, or "activations tensor"
    batches: Iterator[torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.batches = self.batches_from(0)


def _check_finite(batch: torch.Tensor, where: str, rows: Any = None) -> torch.Tensor:
    """``batch``, unless a row holds NaN or infinity: then an error naming the first such rows and their count.

    ``rows`` are the batch's row indices in its source (store rows, tensor rows); without
    them the rows are named by their place in the batch.
    """
    import torch

    finite = torch.isfinite(batch)
    if not finite.all():
        bad = torch.nonzero(~finite.reshape(batch.shape[0], -1).all(dim=-1)).flatten().numpy()
        named = np.sort(np.asarray(rows)[bad]) if rows is not None else bad
        shown = ", ".join(str(int(r)) for r in named[:_SHOWN_ROWS]) + (", ..." if bad.size > _SHOWN_ROWS else "")
        raise NonFiniteActivations(f"{where}: {bad.size} of {batch.shape[0]} rows hold NaN or infinity "
                                   f"({'rows' if rows is not None else 'batch rows'} {shown}); "
                                   "SAE training stopped before they reached the optimizer")
    return batch


def training_budget(params: Mapping[str, Any], n_rows: int, source: str) -> tuple[int, int]:
    """(held-out rows, tokens to train on), or a ConfigError naming the key to change.

    Pre-flight calls it with the most rows a store can get: what fails there fails at run time too."""
    batch, eval_tokens = int(params["train_batch_size_tokens"]), int(params["eval_tokens"])
    train_rows = n_rows - eval_tokens
    if train_rows < batch:
        raise ConfigError("eval_tokens", f"expected to leave at least one training batch "
                                         f"({batch} rows) of the {n_rows} rows of {source}, found {eval_tokens} "
                                         "held out; lower sae.eval_tokens or sae.train_batch_size_tokens")
    wanted = int(params["training_tokens"])
    # One epoch at most: training again on the same rows is a different experiment.
    if wanted > train_rows and not params.get("allow_fewer_tokens", False):
        raise ConfigError("training_tokens", f"expected at most {train_rows} tokens: {source} holds {n_rows} rows, "
                                             f"{eval_tokens} of them held out (sae.eval_tokens), found {wanted}; "
                                             "cache more tokens, lower it, or set sae.allow_fewer_tokens=true")
    return eval_tokens, whole_batches(min(wanted, train_rows), batch)


def whole_batches(tokens: int, batch: int) -> int:
    """SAETrainer runs whole batches: round the budget down to them (at least one)."""
    return max(batch, tokens - tokens % batch)


def _store_hook(store: ActivationStore, hook: str | None) -> str:
    if hook is None:
        if len(store.hooks) != 1:
            raise ConfigError("hook", f"expected one of the store's hooks ({one_of(store.hooks)}), found none")
        return store.hooks[0]
    if hook not in store.hooks:
        raise ConfigError("hook", f"expected one of the store's hooks ({one_of(store.hooks)}), found '{hook}'",
                          suggestion=did_you_mean(hook, store.hooks))
    return hook


def open_store(store: Any) -> ActivationStore:
    """The cache stage's output (``{"store_uri": ...}``), a path or URL, or an open ActivationStore."""
    from interp_pipeline.activations.reader import ActivationStore

    if isinstance(store, ActivationStore):
        return store
    if isinstance(store, Mapping):
        store = store["store_uri"]
    return ActivationStore.open(store)


def from_store(store: Any, params: Mapping[str, Any]) -> TrainingData:
    """Shuffled batches of one hook of an activation store, read a few chunks at a time."""
    import torch

    store = open_store(store)
    hook = _store_hook(store, params.get("hook"))
    d_in = int(np.prod(store.row_shape(hook)))
    eval_tokens, total = training_budget(params, store.n_rows, f"activation store {store.url}")
    train_rows = store.n_rows - eval_tokens
    batch_size, seed = int(params["train_batch_size_tokens"]), int(params["seed"])
    # [eval_tokens, d_in]
    holdout = store.read(hook, slice(train_rows, store.n_rows)).reshape(eval_tokens, d_in).float()
    _check_finite(holdout, f"activation store {store.url}, hook {hook}, held-out rows",
                  np.arange(train_rows, store.n_rows))

    per_epoch = train_rows // batch_size  # drop_last: the rows left over at an epoch's end are not drawn

    def batches(position: int) -> Iterator[torch.Tensor]:
        # Endless: SAELens draws extra batches to estimate the normalisation, and the
        # budget may stop mid-epoch. Rows past train_rows (the held-out ones) never come.
        # Each epoch's order depends only on (seed, epoch): a resumed stream skips whole
        # epochs, then the first batches of its epoch without reading them.
        first, skip = divmod(position, per_epoch)
        for epoch in itertools.count(first):
            for batch, rows in store.iter_batches(hook, batch_size, seed=seed, first_epoch=epoch, epochs=1,
                                                  buffer_chunks=int(params["buffer_chunks"]), drop_last=True,
                                                  with_rows=True, n_rows=train_rows,
                                                  skip=skip if epoch == first else 0):
                batch = batch.reshape(batch_size, d_in).float()  # [batch, d_in]
                yield _check_finite(batch, f"activation store {store.url}, hook {hook}", rows)

    return TrainingData(batches, d_in, hook, holdout, train_rows, total, f"activation store {store.url}")


def from_tensor(activations: torch.Tensor, params: Mapping[str, Any]) -> TrainingData:
    """Shuffled batches of an in-memory ``[rows, d_in]`` tensor (synthetic data, small experiments)."""
    import torch

    rows = activations.reshape(activations.shape[0], -1).float()  # [rows, d_in]
    eval_tokens, total = training_budget(params, rows.shape[0], "the activations tensor")
    train_rows = rows.shape[0] - eval_tokens
    batch_size = int(params["train_batch_size_tokens"])
    holdout = _check_finite(rows[train_rows:], "activations tensor, held-out rows",  # [eval_tokens, d_in]
                            np.arange(train_rows, rows.shape[0]))
    per_epoch = train_rows // batch_size

    def batches(position: int) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(int(params["seed"]))
        first, skip = divmod(position, per_epoch)
        for _ in range(first):  # the skipped epochs' permutations, to bring the generator along
            torch.randperm(train_rows, generator=generator)
        for epoch in itertools.count(first):
            order = torch.randperm(train_rows, generator=generator)  # [train_rows]
            for start in range(batch_size * (skip if epoch == first else 0), per_epoch * batch_size, batch_size):
                chosen = order[start:start + batch_size]
                yield _check_finite(rows[chosen], "activations tensor", chosen.numpy())

    return TrainingData(batches, rows.shape[1], params.get("hook"), holdout, train_rows, total,
                        "the activations tensor")


def from_synthetic(toy: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> TrainingData:
    """Fresh synthetic batches (interp_pipeline.sae.toy): no budget to run out of; held-out rows drawn first."""
    import torch

    from interp_pipeline.sae.toy import activation_stream

    eval_tokens = int(params["eval_tokens"])
    torch.manual_seed(int(params["seed"]))  # SAELens's generator draws from torch's global generator
    # [eval_tokens, d]
    holdout = next(activation_stream(toy, eval_tokens)) if eval_tokens else torch.empty(0, toy["features"].shape[1])

    def batches(position: int) -> Iterator[torch.Tensor]:
        # A fresh stream draws from the global RNG as it sets itself up; a resumed one must
        # not: the RNG state it is handed (the checkpoint's) is already past that point.
        stream = activation_stream(toy, int(params["train_batch_size_tokens"]), keep_rng_for_setup=position > 0)
        return (_check_finite(batch, "synthetic activations") for batch in stream)  # each [batch, d]

    return TrainingData(batches, int(toy["features"].shape[1]), params.get("hook"), holdout.float(), 0,
                        whole_batches(int(params["training_tokens"]), int(params["train_batch_size_tokens"])),
                        "synthetic activations")


def from_model(model: Any, tokens: torch.Tensor, params: Mapping[str, Any], *, forward_batch: int = 32) -> TrainingData:
    """Shuffled batches of one hook's activations, computed from ``tokens`` as training draws them.

    Each epoch visits the training sequences in a seeded order, ``sae.buffer_chunks``
    batches' worth of rows at a time: their forward passes (stopped after the hook's
    block), then the rows shuffled together and cut into batches. Rows left over at a
    buffer's end, too few for a batch, are dropped, as at an epoch's end. A resumed
    stream skips whole buffers without running the model.
    """
    import torch

    from interp_pipeline.activations.model_forward import hook_activations, hook_row_shapes, stop_at_layer_for

    hook = params.get("hook")
    if hook is None:
        raise ConfigError("hook", "expected the hook to train on (streaming from the model: no store to take it from)")
    try:
        hook_row_shapes(model, tokens, [hook])  # refuses a hook the model lacks, or one without a token axis
    except ConfigError as error:
        raise ConfigError("hook", error.message, suggestion=error.suggestion) from None
    n_seq, seq_len = tokens.shape
    n_rows = n_seq * seq_len
    source = f"the model's {hook} on {n_seq} x {seq_len} tokens"
    eval_tokens, total = training_budget(params, n_rows, source)
    train_rows = n_rows - eval_tokens
    batch_size, seed = int(params["train_batch_size_tokens"]), int(params["seed"])
    stop = stop_at_layer_for(model, [hook])

    def activations(sequences: torch.Tensor) -> torch.Tensor:
        """[len(sequences) * seq_len, d_in] float32, rows in sequence-major order."""
        out = []
        for start in range(0, len(sequences), forward_batch):
            batch = tokens[sequences[start:start + forward_batch]]  # [batch, pos]
            acts = hook_activations(model, batch, [hook], stop)[hook]  # [batch, pos, *row]
            out.append(acts.reshape(batch.shape[0] * seq_len, -1).float().cpu())  # [batch * pos, d_in]
        return torch.cat(out)

    first_heldout_seq = train_rows // seq_len
    # [eval_tokens, d_in]: the held-out sequences' rows, less the boundary sequence's training ones
    holdout = activations(torch.arange(first_heldout_seq, n_seq))[train_rows - first_heldout_seq * seq_len:]
    d_in = int(holdout.shape[1])
    _check_finite(holdout, f"{source}, held-out rows", np.arange(train_rows, n_rows))
    # The boundary sequence's first rows are training rows, its last held out.
    training_sequences = -(-train_rows // seq_len)
    per_buffer = max(1, int(params["buffer_chunks"]) * batch_size // seq_len)

    def buffers(epoch: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(training_sequences, generator=generator)  # [training_sequences]
        return [order[start:start + per_buffer] for start in range(0, training_sequences, per_buffer)]

    def row_ids(sequences: torch.Tensor) -> torch.Tensor:
        """The rows' indices (sequence * seq_len + position), sequence-major like activations()."""
        return (sequences[:, None] * seq_len + torch.arange(seq_len)).reshape(-1)  # [len(sequences) * seq_len]

    def batches(position: int) -> Iterator[torch.Tensor]:
        skip = position
        for epoch in itertools.count():
            for index, sequences in enumerate(buffers(epoch)):
                ids = row_ids(sequences)
                keep = ids < train_rows  # [len(sequences) * seq_len], bool
                n_batches = int(keep.sum()) // batch_size
                if skip >= n_batches:  # a resumed stream passes whole buffers without a forward pass
                    skip -= n_batches
                    continue
                rows, ids = activations(sequences)[keep], ids[keep]  # [kept rows, d_in], [kept rows]
                shuffle = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(
                    (seed * 1_000_003 + epoch) * 100_003 + index))
                for b in range(skip, n_batches):
                    chosen = shuffle[b * batch_size:(b + 1) * batch_size]
                    yield _check_finite(rows[chosen], source, ids[chosen].numpy())  # [batch, d_in]
                skip = 0

    return TrainingData(batches, d_in, hook, holdout, train_rows, total, source)
