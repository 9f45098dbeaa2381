"""One Lightning module for every detector: a model, a task loss and an optimiser schedule.

The model maps a batch (dict of tensors) to a dict of outputs; the task loss maps (outputs,
batch) to a dict of scalar terms whose ``"loss"`` entry is optimised.  Neither is known
here beyond that contract.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import lightning.pytorch as pl
import torch

from astroreco import __version__
from astroreco.errors import InputError

#: version of what astroreco adds to Lightning checkpoints; resuming checks it
CHECKPOINT_FORMAT = 1
SCHEDULES = ("cosine", "step", "constant")


@dataclass
class OptimConfig:
    """Adam and its learning-rate schedule.

    Attributes
    ----------
    lr : float
        Peak learning rate.
    weight_decay : float
        L2 penalty (Adam's ``weight_decay``; AdamW when ``decoupled``).
    decoupled : bool
        Use AdamW (decoupled weight decay).
    schedule : str
        ``cosine`` (to ``lr * final_fraction`` over ``max_epochs``), ``step`` (x ``gamma``
        every ``step_epochs``) or ``constant``.
    warmup_steps : int
        Linear warm-up from 0 over this many optimiser steps.
    betas, eps :
        Adam's moment decay rates and denominator term (torch's defaults; the TPC seed
        uses ``(0.94, 0.999)`` and ``1e-7``).
    """

    lr: float = 2e-3
    weight_decay: float = 0.0
    decoupled: bool = False
    schedule: str = "cosine"
    final_fraction: float = 0.02
    step_epochs: int = 10
    gamma: float = 0.1
    warmup_steps: int = 200
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise InputError(f"lr {self.lr}: expected > 0")
        self.betas = tuple(float(b) for b in self.betas)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise InputError(f"betas {self.betas}: expected two values in [0, 1)")
        if not self.eps > 0:
            raise InputError(f"eps {self.eps}: expected > 0")


def lr_factor(step: int, steps_per_epoch: int, max_epochs: int, cfg: OptimConfig) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (a pure function of the step)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    epoch = step / max(steps_per_epoch, 1)
    if cfg.schedule == "cosine":
        t = min(epoch / max(max_epochs, 1), 1.0)
        f = cfg.final_fraction + (1 - cfg.final_fraction) * 0.5 * (1 + math.cos(math.pi * t))
    elif cfg.schedule == "step":
        f = cfg.gamma ** int(epoch // cfg.step_epochs)
    else:
        f = 1.0
    return warm * f


class ReconstructionModule(pl.LightningModule):
    """Train ``model`` on ``task_loss``; detector-agnostic.

    Parameters
    ----------
    model : torch.nn.Module
        ``model(batch) -> dict`` of output tensors.
    task_loss : torch.nn.Module
        ``task_loss(outputs, batch) -> dict`` of scalars, ``"loss"`` being optimised.
    optim : OptimConfig
    steps_per_epoch, max_epochs : int
        For the schedule.
    model_config : dict
        JSON-able description of the model (stored in checkpoints and the model directory).
    """

    def __init__(self, model, task_loss, *, optim: OptimConfig, steps_per_epoch: int,
                 max_epochs: int, model_config: dict | None = None):
        super().__init__()
        self.model = model
        self.task_loss = task_loss
        self.optim = optim
        self.steps_per_epoch = steps_per_epoch
        self.max_epochs = max_epochs
        self.model_config = model_config or {}

    def forward(self, batch):
        return self.model(batch)

    def _step(self, batch, stage):
        outputs = self.model(batch)
        terms = self.task_loss(outputs, batch)
        n = len(next(iter(batch.values())))
        for name, value in terms.items():
            self.log(f"{stage}_{name}", value.detach(), on_step=False, on_epoch=True,
                     prog_bar=name == "loss", batch_size=n, sync_dist=stage == "val")
        return terms["loss"]

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step "
                                     f"{self.global_step}: lower the learning rate")
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_train_epoch_start(self):
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        cls = torch.optim.AdamW if self.optim.decoupled else torch.optim.Adam
        opt = cls(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay,
                  betas=self.optim.betas, eps=self.optim.eps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, self.steps_per_epoch, self.max_epochs, self.optim))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["astroreco"] = {"version": __version__, "format": CHECKPOINT_FORMAT,
                                   "optim": asdict(self.optim), "model_config": self.model_config}

    def on_load_checkpoint(self, checkpoint):
        meta = checkpoint.get("astroreco")
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            found = "none" if not isinstance(meta, dict) else meta.get("format")
            raise InputError(f"checkpoint: astroreco checkpoint format {CHECKPOINT_FORMAT} "
                             f"expected, found {found} (saved by another version?)")
        if meta.get("model_config") != self.model_config:
            raise InputError("checkpoint: it was saved for a different model configuration; "
                             "resume with the configuration it was trained with")
