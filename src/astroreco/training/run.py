"""A whole training run, for any detector: split the events, fit, write the model directory.

A detector supplies how to read its file (an :class:`~astroreco.training.data.EventSource`
factory), its network and loss, and its model card; :func:`split_sources` and
:func:`train_and_save` do the rest the same way for every detector.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from astroreco.errors import InputError


def check_rows(ef, path, start: int, stop: int, unit: str = "events") -> None:
    """One-line error unless ``[start, stop)`` is a non-empty row range of the open
    :class:`~astroreco.io.store.EventFile` ``ef`` (what every detector's event source checks
    when it is made)."""
    if stop > ef.n_events or start < 0 or start >= stop:
        raise InputError(f"{path}: rows {start}:{stop} outside the file's {ef.n_events} "
                         f"{unit}")


def split_sources(make_source, events, n_events: int, *, val_events=None, n_val_events=None,
                  val_fraction: float = 0.1):
    """Training and validation sources: the last ``val_fraction`` of ``events``, or all of
    ``events`` and all of ``val_events``.  ``make_source(path, start, stop)``."""
    if val_events is not None:
        return make_source(events, 0, n_events), make_source(val_events, 0, n_val_events)
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction {val_fraction}: expected between 0 and 1")
    n_val = max(1, int(round(n_events * val_fraction)))
    if n_events - n_val < 1:
        raise InputError(f"{events}: {n_events} events, too few to split off a validation set")
    return make_source(events, 0, n_events - n_val), make_source(events, n_events - n_val,
                                                                 n_events)


def sources_from_files(make_source, schema, events, *, val_events=None,
                       val_fraction: float = 0.1):
    """:func:`split_sources` on event files of ``schema``: ``(train, val, simulation)``, the
    last being the training file's recorded configuration."""
    from astroreco.io.store import EventFile

    with EventFile(events, schema) as ef:
        n, simulation = ef.n_events, ef.config
    n_val = None
    if val_events is not None:
        with EventFile(val_events, schema) as ef:
            n_val = ef.n_events
    train_src, val_src = split_sources(make_source, events, n, val_events=val_events,
                                       n_val_events=n_val, val_fraction=val_fraction)
    return train_src, val_src, simulation


def train_and_save(model, task_loss, train_src, val_src, out, *, config, detector: str,
                   network: dict, card, events, val_events=None, simulation=None, init=None,
                   command: str | None = None, resume: bool = False,
                   overwrite: bool = False) -> dict:
    """Fit ``model`` and write ``out/model`` (weights, config, card) and ``out/history.json``.

    ``card(model_config, history) -> str`` writes the detector's model card; ``network`` is
    the JSON-able network configuration that rebuilds the model.  Returns the run summary
    (``model`` is the directory written; on a non-zero DDP rank nothing is written).
    """
    from astroreco.io.modeldir import save_model_dir
    from astroreco.training.fit import fit

    result = fit(model, task_loss, train_src, val_src, out, config=config,
                 model_config=network, resume=resume, overwrite=overwrite)
    summary = {"events": str(events),
               "val_events": None if val_events is None else str(val_events),
               "n_train": train_src.n_events, "n_val": val_src.n_events,
               "epochs": result.epochs, "steps": result.steps,
               "train_seconds": round(result.seconds, 1),
               "best_val_loss": result.best_val_loss,
               "machine": platform.processor() or platform.machine(),
               "threads": torch.get_num_threads(),
               "init": None if init is None else str(init), "command": command}
    if not result.is_global_zero:
        return summary
    model_config = {"detector": detector, "network": network, "training": {
        **summary, "train_config": config.to_dict(), "simulation": simulation or {},
        "n_parameters": sum(p.numel() for p in model.parameters())}}
    path = save_model_dir(Path(out) / "model", result.model.state_dict(), model_config,
                          card(model_config, result.history), overwrite=True)
    (Path(out) / "history.json").write_text(json.dumps(result.history, indent=1))
    summary["model"] = str(path)
    return summary
