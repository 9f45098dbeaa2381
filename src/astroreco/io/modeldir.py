"""Model directories: ``weights.safetensors`` + ``config.json`` + ``card.md``.

``config.json`` carries everything needed to rebuild the network and its preprocessing
(``detector``, ``architecture``, ``preprocessing``, ...) plus the training provenance;
``card.md`` is the human-readable model card.  Weights are safetensors, so loading a model
never executes code.  A directory is written under a temporary name and renamed when
complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from astroreco import __version__
from astroreco.errors import InputError

MODEL_FORMAT = "astroreco-model"
MODEL_FORMAT_VERSION = 1
FILES = ("weights.safetensors", "config.json", "card.md")


def save_model_dir(path, state_dict: dict, config: dict, card: str, *,
                   overwrite: bool = False) -> Path:
    """Write a model directory atomically.

    Parameters
    ----------
    path : path-like
        Directory to create.
    state_dict : dict of tensors
        The network's weights (buffers included).
    config : dict
        JSON-able; must hold ``detector``.  ``format``, ``format_version`` and
        ``astroreco_version`` are added.
    card : str
        Markdown model card.
    """
    path = Path(path)
    if "detector" not in config:
        raise InputError("model config: expected a 'detector' entry")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: directory exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = _own_storage(state_dict)
        save_file(tensors, str(tmp / "weights.safetensors"))
        full = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
                "astroreco_version": __version__, **config}
        (tmp / "config.json").write_text(json.dumps(full, indent=2) + "\n")
        (tmp / "card.md").write_text(card)
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        os.chmod(tmp, 0o777 & ~umask)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _own_storage(state_dict: dict) -> dict:
    """CPU, contiguous tensors, each on its own storage.

    safetensors refuses tensors that share memory, which a state dict holds for tied
    weights (one module or parameter reachable under two names): those are copied.
    """
    tensors, seen = {}, set()
    for k, v in state_dict.items():
        t = v.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        seen.add(ptr)
        tensors[k] = t
    return tensors


def shipped_model_dir(detector: str) -> Path:
    """The shipped default model of ``detector``: ``$ASTRORECO_MODELS/<detector>``, or
    ``models/<detector>`` of the source checkout."""
    root = os.environ.get("ASTRORECO_MODELS")
    base = Path(root) if root else Path(__file__).resolve().parents[3] / "models"
    return base / detector


def read_model_config(path, detector: str | None = None) -> dict:
    """``config.json`` of a model directory, checked for format and detector."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: model directory not found")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise InputError(f"{path}: model directory is missing {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path / 'config.json'}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise InputError(f"{path / 'config.json'}: not an astroreco model configuration")
    if config.get("format_version") != MODEL_FORMAT_VERSION:
        raise InputError(f"{path / 'config.json'}: model format version "
                         f"{config.get('format_version')}, this astroreco reads "
                         f"{MODEL_FORMAT_VERSION}")
    if detector is not None and config.get("detector") != detector:
        raise InputError(f"{path}: a model for detector {config.get('detector')!r}, "
                         f"expected one for {detector!r}")
    return config


def load_model_dir(path, detector: str | None = None) -> tuple[dict, dict]:
    """(state_dict, config) of a model directory; no code is executed."""
    config = read_model_config(path, detector)
    try:
        state = load_file(str(Path(path) / "weights.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{Path(path) / 'weights.safetensors'}: unreadable ({exc})") from None
    return state, config


def load_state(module: torch.nn.Module, state: dict, path) -> None:
    """Load ``state`` into ``module``, with a one-line error on any mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise InputError(f"{path}: weights do not match the configured architecture "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise InputError(f"{path}: weight {k} has shape {tuple(v.shape)}, the configured "
                             f"architecture expects {tuple(own[k].shape)}")
    module.load_state_dict(state)


def load_network(model_dir, detector: str, make_config, build, *, device: str = "cpu",
                 overrides: dict | None = None):
    """``(config, model)`` of a model directory: ``make_config(**network)`` from its
    ``config.json`` (with the non-None ``overrides`` applied), ``build(config)`` with the
    weights loaded, on ``device``, in eval mode.  One-line errors for a missing or
    mismatched network entry; no code is executed."""
    state, config = load_model_dir(model_dir, detector=detector)
    net = config.get("network")
    if not isinstance(net, dict):
        raise InputError(f"{model_dir}/config.json: no 'network' entry")
    net = {**net, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        cfg = make_config(**net)
    except TypeError as exc:
        raise InputError(f"{model_dir}/config.json: 'network' entry is not a {detector} "
                         f"network configuration ({exc})") from None
    model = build(cfg)
    load_state(model, state, model_dir)
    model.to(device).eval()
    return cfg, model


def history_lines(history) -> list[str]:
    """Markdown lines of a model card's per-epoch table (train and validation loss), ending
    with a blank line; none for an empty history."""
    if not history:
        return []
    lines = ["| epoch | train loss | val loss |", "|---|---|---|"]
    for h in history:
        lines.append(f"| {h['epoch']} | {h.get('train_loss', float('nan')):.4f} | "
                     f"{h.get('val_loss', float('nan')):.4f} |")
    return lines + [""]


class LoadedNetwork:
    """A trained network loaded for inference: ``config``, ``model`` (eval mode, on
    ``device``), ``device``, ``batch_size`` and ``model_dir``; the base of every detector's
    reconstructor (see :func:`load_network` for the arguments)."""

    def __init__(self, model_dir, detector: str, make_config, build, *, device: str = "cpu",
                 batch_size: int = 512, overrides: dict | None = None):
        self.config, self.model = load_network(model_dir, detector, make_config, build,
                                               device=device, overrides=overrides)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model_dir = str(model_dir)

    def config_dict(self) -> dict:
        """What a stored reconstruction records of the network."""
        return {"model_dir": self.model_dir, "network": self.config.to_dict()}
