"""StreamingDataset: rows per epoch, seeded shuffling, DDP sharding, augmentation generator."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import astroreco.training.data as data
from astroreco.training.data import StreamingDataset

A = np.array([[2.0, -1.0, 0.5]], dtype=np.float32)


class LinearRows:
    """EventSource: ``y = A x + noise``, x and noise seeded by the row index; records calls."""

    def __init__(self, n_events: int):
        self.n_events = n_events
        self.calls: list[tuple[int, int, np.ndarray | None, object]] = []

    def load(self, start, stop, rows, rng):
        self.calls.append((start, stop, None if rows is None else np.array(rows), rng))
        idx = np.arange(start, stop) if rows is None else start + np.asarray(rows)
        x = np.stack([np.random.default_rng([1, int(i)]).normal(size=3) for i in idx]
                     ).astype(np.float32).reshape(len(idx), 3)
        noise = np.array([np.random.default_rng([2, int(i)]).normal() for i in idx],
                         dtype=np.float32)
        y = x @ A.T + 0.1 * noise[:, None]
        return {"x": x, "y": y, "row": idx.astype(np.int64)}


def _rows(batches) -> list[int]:
    return [int(r) for b in batches for r in b["row"]]


def _epoch(ds, epoch):
    ds.set_epoch(epoch)
    return list(ds)


def _as_rank(monkeypatch, rank, world):
    monkeypatch.setattr(data, "_rank_world", lambda: (rank, world))


@pytest.mark.parametrize("n, batch, chunk", [(100, 16, 32), (64, 16, 16), (7, 3, 5)])
def test_every_row_once_in_order_without_shuffle(n, batch, chunk):
    ds = StreamingDataset(LinearRows(n), batch_size=batch, chunk_size=chunk, shuffle=False,
                          augment=False)
    batches = list(ds)
    assert _rows(batches) == list(range(n))
    assert len(batches) == len(ds) == -(-n // batch)
    assert [len(b["row"]) for b in batches[:-1]] == [batch] * (len(batches) - 1)
    b = batches[0]
    assert set(b) == {"x", "y", "row"}
    assert b["x"].dtype == torch.float32 and b["x"].shape == (batch, 3)
    # the rows are the source's rows: y = A x + noise, noise small
    assert torch.allclose(b["y"], b["x"] @ torch.from_numpy(A).T, atol=0.5)


def test_shuffle_changes_order_between_epochs_and_keeps_rows():
    n, batch = 100, 16
    ds = StreamingDataset(LinearRows(n), batch_size=batch, chunk_size=32, shuffle=True,
                          augment=False, seed=5)
    e0, e1 = _epoch(ds, 0), _epoch(ds, 1)
    for batches in (e0, e1):
        rows = _rows(batches)
        assert len(batches) == len(ds) == n // batch  # last incomplete batch dropped
        assert all(len(b["row"]) == batch for b in batches)
        assert len(set(rows)) == len(rows) == (n // batch) * batch  # no repeats
        assert set(rows) <= set(range(n))
        assert rows != sorted(rows)  # shuffled
    assert _rows(e0) != _rows(e1)
    # at most one incomplete batch of rows is left out each epoch
    assert n - len(_rows(e0)) < batch


def test_same_seed_and_epoch_give_identical_batches():
    def run(seed, epoch):
        ds = StreamingDataset(LinearRows(90), batch_size=8, chunk_size=20, shuffle=True,
                              augment=True, seed=seed)
        return _epoch(ds, epoch)

    a, b = run(3, 2), run(3, 2)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k])
    assert _rows(run(4, 2)) != _rows(a)
    assert _rows(run(3, 1)) != _rows(a)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n, batch, chunk", [(101, 8, 16), (61, 5, 7), (10, 1, 3),
                                             (33, 4, 33)])
def test_two_ranks_get_disjoint_rows_and_equal_batch_counts(monkeypatch, shuffle, n, batch,
                                                            chunk):
    per_rank = {}
    counts = {}
    for rank in (0, 1):
        _as_rank(monkeypatch, rank, 2)
        ds = StreamingDataset(LinearRows(n), batch_size=batch, chunk_size=chunk,
                              shuffle=shuffle, augment=False, seed=1)
        ds.set_epoch(3)
        batches = list(ds)
        counts[rank] = (len(batches), len(ds))
        per_rank[rank] = _rows(batches)
        if shuffle:
            assert all(len(b["row"]) == batch for b in batches)
    assert counts[0] == counts[1]
    assert counts[0][0] == counts[0][1] > 0
    assert not set(per_rank[0]) & set(per_rank[1])
    for rows in per_rank.values():
        assert len(rows) == len(set(rows))
    if not shuffle:
        # validation: each rank sees n // 2 rows, the odd row out is left out
        assert len(per_rank[0]) == len(per_rank[1]) == n // 2
        assert len(set(per_rank[0]) | set(per_rank[1])) == 2 * (n // 2)


def test_three_ranks_with_default_like_chunks_stay_in_step(monkeypatch):
    """A chunk size not divisible by the world size must not short the last ranks."""
    counts = []
    for rank in range(3):
        _as_rank(monkeypatch, rank, 3)
        ds = StreamingDataset(LinearRows(3 * 40), batch_size=10, chunk_size=16, shuffle=True,
                              augment=False)
        batches = list(ds)
        counts.append((len(batches), len(ds), {len(b["row"]) for b in batches}))
    assert counts == [(4, 4, {10})] * 3


def test_rows_passed_to_source_are_sorted_and_within_the_chunk(monkeypatch):
    _as_rank(monkeypatch, 1, 2)
    src = LinearRows(50)
    list(StreamingDataset(src, batch_size=4, chunk_size=12, shuffle=True, augment=False))
    assert src.calls
    for start, stop, rows, _ in src.calls:
        assert rows is not None and rows.size
        assert np.all(np.diff(rows) > 0)
        assert rows.min() >= 0 and rows.max() < stop - start


def test_augmentation_generator_only_when_augment():
    src = LinearRows(40)
    list(StreamingDataset(src, batch_size=8, chunk_size=16, shuffle=True, augment=False))
    assert src.calls and all(rng is None for *_, rng in src.calls)

    src = LinearRows(40)
    list(StreamingDataset(src, batch_size=8, chunk_size=16, shuffle=True, augment=True))
    assert src.calls and all(isinstance(rng, np.random.Generator) for *_, rng in src.calls)
    # one generator per epoch and rank, carried over the chunks
    assert len({id(rng) for *_, rng in src.calls}) == 1


def test_augmentation_streams_differ_between_ranks_and_epochs(monkeypatch):
    def first_draw(rank, epoch):
        _as_rank(monkeypatch, rank, 2)
        src = LinearRows(40)
        ds = StreamingDataset(src, batch_size=4, chunk_size=16, shuffle=True, augment=True,
                              seed=9)
        ds.set_epoch(epoch)
        next(iter(ds))
        return src.calls[0][3].random()

    draws = Counter(first_draw(r, e) for r in (0, 1) for e in (0, 1))
    assert len(draws) == 4
    assert first_draw(1, 1) == first_draw(1, 1)
