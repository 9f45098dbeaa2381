"""A tiny regression problem for the training-engine tests (imported, not collected).

``y = A x + noise`` with ``x`` and the noise drawn from a generator keyed on the row index,
so that any row reads the same whenever and wherever (rank, process) it is loaded.  Also
importable from the helper scripts the tests run in subprocesses (DDP, killed runs).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from astroreco.losses import GaussianNLLLoss
from astroreco.nn.heads import GaussianHead
from astroreco.nn.models import MultiTaskNet
from astroreco.training import TaskLoss, Term

A = np.array([[1.0, -2.0, 0.5], [0.3, 0.8, -1.2]], dtype=np.float32)  # (2 outputs, 3 inputs)
MODEL_CONFIG = {"detector": "toy", "architecture": "linear-tanh", "features": 8}


def rows_of(start: int, stop: int, rows) -> np.ndarray:
    return np.arange(start, stop) if rows is None else start + np.asarray(rows, dtype=np.int64)


class LinearSource:
    """An EventSource of ``n_events`` rows numbered ``offset + i``.

    Parameters
    ----------
    record : str, optional
        Directory where every ``load`` appends the rows it returns to
        ``rows-<rank>-<world>-<pid>.txt`` (one line per call).
    exit_after : int, optional
        ``os._exit(3)`` at the start of the ``exit_after + 1``-th ``load`` call of this
        object: simulates a process killed mid-epoch.
    """

    def __init__(self, n_events: int, offset: int = 0, noise: float = 0.05,
                 record: str | None = None, exit_after: int | None = None):
        self.n_events = int(n_events)
        self.offset = int(offset)
        self.noise = float(noise)
        self.record = record
        self.exit_after = exit_after
        self.calls = 0

    def load(self, start, stop, rows, rng):
        self.calls += 1
        if self.exit_after is not None and self.calls > self.exit_after:
            os._exit(3)
        idx = self.offset + rows_of(start, stop, rows)
        x = np.empty((len(idx), 3), np.float32)
        y = np.empty((len(idx), 2), np.float32)
        for j, i in enumerate(idx):
            g = np.random.default_rng([7, int(i)])
            x[j] = g.normal(size=3)
            y[j] = A @ x[j] + self.noise * g.normal(size=2)
        if self.record is not None:
            import torch.distributed as dist

            rank, world = ((dist.get_rank(), dist.get_world_size()) if dist.is_initialized()
                           else (0, 1))
            with open(os.path.join(self.record, f"rows-{rank}-{world}-{os.getpid()}.txt"),
                      "a") as fh:
                fh.write(" ".join(map(str, idx)) + "\n")
        return {"x": x, "y": y, "row": idx.astype(np.int64)}


class Backbone(nn.Module):
    def __init__(self, n_features: int = 8):
        super().__init__()
        self.n_features = n_features
        self.linear = nn.Linear(3, n_features)

    def forward(self, x):
        return torch.tanh(self.linear(x))


def build_model(seed: int = 0) -> MultiTaskNet:
    torch.manual_seed(seed)
    return MultiTaskNet(Backbone(8), {"y": GaussianHead(8, 2)}, input_key="x")


def task_loss() -> TaskLoss:
    return TaskLoss([Term("y", "y", GaussianNLLLoss())])


def predict(model, n: int = 32, offset: int = 50_000):
    batch = {k: torch.from_numpy(v) for k, v in LinearSource(n, offset).load(0, n, None, None)
             .items()}
    with torch.no_grad():
        mean, log_var = model(batch)["y"]
    return mean, log_var
