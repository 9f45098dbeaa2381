"""Streaming training data: chunks of an event file turned into batches of tensors.

The learning code knows no detector.  A detector supplies an :class:`EventSource`: an
object that knows how many events a file range holds and turns rows ``[start, stop)`` into
named numpy arrays (network inputs and training targets), applying its own augmentation
from the generator it is given.  :class:`StreamingDataset` reads the source in chunks, in a
shuffled chunk order and shuffled within each chunk, so memory stays bounded by one chunk
whatever the file size.

With several processes (DDP), every rank walks the same seeded chunk order and keeps every
``world_size``-th row of the chunks' rows in that order (dealt round-robin across chunk
boundaries); all ranks yield the same number of batches, which DDP needs to stay in step.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset


class EventSource(Protocol):
    """What a detector provides to train on an event file.

    ``load`` returns a dict of equal-length arrays (first axis = event).  It must be
    picklable (DataLoader workers and spawned DDP processes receive a copy).
    """

    n_events: int

    def load(self, start: int, stop: int, rows: np.ndarray | None,
             rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """Arrays for rows ``start + rows`` (all rows when None); augment when rng is given."""
        ...


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamingDataset(IterableDataset):
    """Batches of tensors streamed from an :class:`EventSource`.

    Parameters
    ----------
    source : EventSource
    batch_size : int
    chunk_size : int
        Events read (and augmented) at once.
    shuffle : bool
        Shuffle chunk order and rows within a chunk, differently each epoch; drop the last
        incomplete batch.  Training sets shuffle; validation sets do not.
    augment : bool
        Pass a random generator to ``source.load`` so that it augments.
    seed : int
        Base seed; epoch ``e`` uses the stream ``(seed, e)``, identical on every rank.
    """

    def __init__(self, source: EventSource, *, batch_size: int, chunk_size: int = 16384,
                 shuffle: bool = True, augment: bool = True, seed: int = 0):
        super().__init__()
        self.source = source
        self.batch_size = int(batch_size)
        self.chunk_size = int(max(chunk_size, batch_size))
        self.shuffle = shuffle
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def n_batches(self, world_size: int | None = None) -> int:
        """Batches each rank yields per epoch."""
        world = _rank_world()[1] if world_size is None else world_size
        per_rank = self.source.n_events // world
        if self.shuffle:
            return per_rank // self.batch_size
        return math.ceil(per_rank / self.batch_size)

    def __len__(self) -> int:
        return self.n_batches()

    def __iter__(self):
        rank, world = _rank_world()
        n = self.source.n_events
        quota = n // world  # rows per rank; the remainder (< world rows) is left out
        n_batches = self.n_batches(world)
        rng = np.random.default_rng([self.seed, self.epoch])
        starts = np.arange(0, n, self.chunk_size)
        if self.shuffle:
            starts = rng.permutation(starts)
        # one generator per rank for augmentation, derived from the shared epoch stream
        aug_rng = np.random.default_rng([self.seed, self.epoch, rank + 1]) if self.augment else None
        pending: dict[str, np.ndarray] | None = None
        emitted = 0
        taken = 0
        seen = 0  # rows of the epoch's stream before this chunk (the same on every rank)
        for start in starts:
            stop = min(start + self.chunk_size, n)
            order = rng.permutation(stop - start) if self.shuffle else np.arange(stop - start)
            # deal the stream's rows round-robin across ranks continuing from the previous
            # chunk, so every rank gets floor(n / world) or more rows whatever the chunk
            # sizes (dealing each chunk from rank 0 would short the last ranks)
            first = (rank - seen) % world
            seen += stop - start
            rows = np.sort(order[first::world])[: max(quota - taken, 0)]
            if rows.size == 0:
                continue
            taken += rows.size
            arrays = self.source.load(int(start), int(stop), rows, aug_rng)
            if self.shuffle:
                perm = rng.permutation(rows.size) if world == 1 else \
                    np.random.default_rng([self.seed, self.epoch, rank + 1, int(start)]
                                          ).permutation(rows.size)
                arrays = {k: v[perm] for k, v in arrays.items()}
            if pending is not None:
                arrays = {k: np.concatenate([pending[k], arrays[k]]) for k in arrays}
                pending = None
            m = len(next(iter(arrays.values())))
            i = 0
            while m - i >= self.batch_size and emitted < n_batches:
                yield {k: torch.from_numpy(np.ascontiguousarray(v[i:i + self.batch_size]))
                       for k, v in arrays.items()}
                i += self.batch_size
                emitted += 1
            if i < m:
                pending = {k: v[i:] for k, v in arrays.items()}
        if pending is not None and emitted < n_batches:
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in pending.items()}
