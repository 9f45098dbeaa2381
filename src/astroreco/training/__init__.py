"""Detector-agnostic training: streaming data, one Lightning module, resumable ``fit``."""

from astroreco.training.data import EventSource, StreamingDataset
from astroreco.training.fit import FitResult, TrainConfig, fit
from astroreco.training.module import OptimConfig, ReconstructionModule
from astroreco.training.tasks import TaskLoss, Term

__all__ = ["EventSource", "StreamingDataset", "FitResult", "TrainConfig", "fit",
           "OptimConfig", "ReconstructionModule", "TaskLoss", "Term"]
