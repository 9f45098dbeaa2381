"""``fit``: train any detector's model with Lightning, resumably, and return the best weights.

Everything a run writes goes under one output directory::

    OUT/checkpoints/last.ckpt   end of the latest epoch (what ``resume`` restarts from)
    OUT/checkpoints/best.ckpt   lowest validation loss so far
    OUT/logs/metrics.csv        per-epoch losses (CSV)

A run killed mid-epoch and restarted with ``resume=True`` continues from the end of the last
complete epoch, so it loses at most that epoch.
"""

from __future__ import annotations

import logging
import csv
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch

from astroreco.errors import InputError
from astroreco.training.data import EventSource, StreamingDataset
from astroreco.training.module import OptimConfig, ReconstructionModule

ACCELERATORS = ("cpu", "gpu", "auto")
#: where ``fit(resume=True)`` keeps the earlier epochs' metrics while Lightning rewrites
_METRICS_STASH = "metrics-before-resume.csv"


class _NoAdverts(logging.Filter):
    """Drop Lightning's product tips from the log (nothing here uploads anywhere)."""

    def filter(self, record):
        return "Tip:" not in str(record.msg)


_ADVERTS = _NoAdverts()


@dataclass
class TrainConfig:
    """How to train (model-independent).

    Attributes
    ----------
    max_epochs : int
    batch_size : int
    patience : int
        Early stopping: epochs without improvement of the validation loss.
    seed : int
        Seeds weights initialisation, shuffling and augmentation.
    accelerator : str
        ``cpu``, ``gpu`` or ``auto``.
    devices : int
        Processes/GPUs; more than one trains with DDP (gloo on CPU, NCCL on GPU).
    strategy : str
        Lightning strategy (``auto``, ``ddp``, ``ddp_spawn``, ...).
    precision : str
        Lightning precision (``32-true``, ``bf16-mixed``, ``16-mixed``).
    chunk_size : int
        Events read and augmented at once.
    threads : int or None
        torch CPU threads per process (None: torch's default).
    progress : bool
        Rich progress bar.
    optim : OptimConfig
    """

    max_epochs: int = 10
    batch_size: int = 256
    patience: int = 3
    seed: int = 0
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    chunk_size: int = 16384
    threads: int | None = None
    progress: bool = True
    max_steps_per_epoch: int | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self):
        if isinstance(self.optim, dict):
            self.optim = OptimConfig(**self.optim)
        if self.accelerator not in ACCELERATORS:
            raise InputError(f"accelerator {self.accelerator!r}: expected one of "
                             f"{', '.join(ACCELERATORS)}")
        for name in ("max_epochs", "batch_size", "devices", "chunk_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} {getattr(self, name)}: expected >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """What :func:`fit` returns (on every rank; only rank 0 should write files)."""

    model: torch.nn.Module
    best_val_loss: float
    epochs: int
    steps: int
    seconds: float
    is_global_zero: bool
    history: list = field(default_factory=list)
    checkpoint: str = ""


class _ReleaseProcessGroup(pl.Callback):
    """Ends a multi-process run's process group once every rank is done.

    Lightning destroys a ``gloo`` group nowhere; a spawned DDP worker that exits with the
    group alive tears gloo's threads down in the interpreter's finalisation, which now and
    then aborts the worker (``terminate called without an active exception``, SIGABRT)
    after a complete run.  Waiting at a barrier and destroying the group in the
    ``teardown`` hook (the last thing ``Trainer.fit`` runs on each rank) ends the threads
    while both ranks are still alive.  Module-level, so that ``ddp_spawn`` can pickle it.
    """

    def teardown(self, trainer, pl_module, stage):
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
            dist.destroy_process_group()


def _read_rows(csv_path: Path) -> list[dict]:
    if not csv_path.exists():
        return []
    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


def _row_epoch(row: dict) -> int | None:
    try:
        return int(float(row.get("epoch") or ""))
    except ValueError:
        return None


def _write_rows(csv_path: Path, rows: list[dict]) -> None:
    keys = sorted({k for row in rows for k in row if k is not None})
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)


def _stash_metrics(logs: Path) -> None:
    """Before resuming: move ``metrics.csv`` aside, as Lightning's CSV logger deletes it.

    A stash left by an earlier resumed run that did not finish is merged, not replaced.
    """
    metrics, stash = logs / "metrics.csv", logs / _METRICS_STASH
    if metrics.exists():
        _write_rows(stash, _merge_rows(_read_rows(stash), _read_rows(metrics)))
        metrics.unlink()


def _merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Rows of ``old`` for the epochs before the first of ``new``, then ``new``."""
    epochs = [e for e in map(_row_epoch, new) if e is not None]
    first = min(epochs) if epochs else None
    return [r for r in old if first is None or (_row_epoch(r) is not None
                                                 and _row_epoch(r) < first)] + new


def _restore_metrics(logs: Path) -> None:
    """After resuming: put the earlier epochs' rows back in front of the new ones."""
    metrics, stash = logs / "metrics.csv", logs / _METRICS_STASH
    if stash.exists():
        _write_rows(metrics, _merge_rows(_read_rows(stash), _read_rows(metrics)))
        stash.unlink()


def _read_history(csv_path: Path) -> list[dict]:
    if not csv_path.exists():
        return []
    rows: dict[int, dict] = {}
    with open(csv_path) as fh:
        for row in csv.DictReader(fh):
            if not row.get("epoch"):
                continue
            ep = int(float(row["epoch"]))
            entry = rows.setdefault(ep, {"epoch": ep})
            for k, v in row.items():
                if v not in ("", None) and k not in ("epoch", "step"):
                    entry[k] = float(v)
    return [rows[k] for k in sorted(rows)]


def fit(model: torch.nn.Module, task_loss: torch.nn.Module, train: EventSource,
        val: EventSource, out, *, config: TrainConfig = TrainConfig(),
        model_config: dict | None = None, resume: bool = False,
        overwrite: bool = False) -> FitResult:
    """Train ``model`` on ``train``, early-stop on ``val``, and return the best weights.

    Parameters
    ----------
    model, task_loss : torch.nn.Module
        See :class:`~astroreco.training.module.ReconstructionModule`.
    train, val : EventSource
        Training and validation events (disjoint).
    out : path-like
        Run directory (checkpoints, logs).
    config : TrainConfig
    model_config : dict
        JSON-able model description, checked when resuming.
    resume : bool
        Continue from ``out/checkpoints/last.ckpt``.
    overwrite : bool
        Start afresh even if ``out`` holds an earlier run.
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.utilities import rank_zero_only

    out = Path(out)
    logs = out / "logs"
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume and not last.exists():
        raise InputError(f"{last}: no checkpoint to resume from")
    # checked before an earlier run is deleted; each process (DDP rank) reads
    # n_events // devices rows
    if train.n_events // config.devices < config.batch_size:
        raise InputError(f"training set: {train.n_events} events, fewer than one batch "
                         f"({config.batch_size}) per device ({config.devices})")
    if val.n_events < config.devices:
        raise InputError(f"validation set: {val.n_events} events, fewer than one per "
                         f"device ({config.devices})")
    if not resume and ckpt_dir.exists() and any(ckpt_dir.iterdir()):
        if not overwrite:
            raise InputError(f"{out}: holds an earlier run (use --resume to continue it or "
                             "--overwrite to start again)")
        for f in ckpt_dir.iterdir():
            f.unlink()
        for name in ("metrics.csv", _METRICS_STASH):
            if (logs / name).exists():
                (logs / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _ADVERTS not in rank_zero_log.filters:
        rank_zero_log.addFilter(_ADVERTS)
    if config.threads:
        torch.set_num_threads(config.threads)
    pl.seed_everything(config.seed, workers=True, verbose=False)

    train_ds = StreamingDataset(train, batch_size=config.batch_size,
                                chunk_size=config.chunk_size, shuffle=True, augment=True,
                                seed=config.seed)
    val_ds = StreamingDataset(val, batch_size=config.batch_size, chunk_size=config.chunk_size,
                              shuffle=False, augment=False, seed=config.seed)
    steps = train_ds.n_batches(config.devices)
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    module = ReconstructionModule(model, task_loss, optim=config.optim, steps_per_epoch=steps,
                                  max_epochs=config.max_epochs, model_config=model_config)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=None, num_workers=0)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=None, num_workers=0)
    best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss",
                              mode="min", save_top_k=1, save_last=True)
    callbacks = [best_cb, EarlyStopping(monitor="val_loss", mode="min",
                                        patience=config.patience),
                 _ReleaseProcessGroup()]
    if config.progress:
        callbacks.append(RichProgressBar(leave=True))
    strategy = config.strategy
    if config.devices > 1 and strategy == "auto":
        strategy = "ddp"
    if strategy in ("ddp", "ddp_spawn") and config.accelerator == "cpu":
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo",
                               start_method="spawn" if strategy == "ddp_spawn" else "popen")
    trainer = pl.Trainer(
        accelerator=config.accelerator, devices=config.devices, strategy=strategy,
        precision=config.precision, max_epochs=config.max_epochs,
        limit_train_batches=config.max_steps_per_epoch or 1.0,
        callbacks=callbacks, logger=CSVLogger(out, name="logs", version=""),
        enable_progress_bar=config.progress, enable_model_summary=False,
        log_every_n_steps=max(1, min(50, steps)), default_root_dir=out,
        num_sanity_val_steps=0, use_distributed_sampler=False)
    if resume and rank_zero_only.rank == 0:
        _stash_metrics(logs)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
            if resume:  # not so: the earlier epochs' rows are stashed and put back
                warnings.filterwarnings("ignore", message=".*Previous log files in this "
                                        "directory will be deleted.*")
            trainer.fit(module, loader, val_loader, ckpt_path=str(last) if resume else None,
                        weights_only=True)
    finally:
        if rank_zero_only.rank == 0:
            _restore_metrics(logs)
    seconds = time.perf_counter() - t0
    epochs, n_steps = trainer.current_epoch, trainer.global_step
    best = best_cb.best_model_score
    if n_steps == 0 and last.exists():
        # the training ran in spawned processes (ddp_spawn) and this process's trainer saw
        # none of it: take the progress and the best score from the last checkpoint
        ckpt = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
        epochs, n_steps = int(ckpt["epoch"]) + 1, int(ckpt["global_step"])
        best = ckpt.get("callbacks", {}).get(best_cb.state_key, {}).get("best_model_score",
                                                                        best)
        del ckpt
    best_path = best_cb.best_model_path or str(last)
    if best_path and Path(best_path).exists():
        ckpt = torch.load(best_path, map_location="cpu", weights_only=True)
        state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items()
                 if k.startswith("model.")}
        model.load_state_dict(state)
    return FitResult(model=model.cpu().eval(),
                     best_val_loss=float(best) if best is not None else float("nan"),
                     epochs=epochs, steps=n_steps,
                     seconds=seconds, is_global_zero=trainer.is_global_zero,
                     history=_read_history(logs / "metrics.csv"),
                     checkpoint=str(best_path))
