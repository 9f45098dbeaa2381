"""A task loss: named model outputs scored against named batch targets, weighted and summed."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Term:
    """One term of a task loss: ``weight * loss(outputs[output], batch[target])``."""

    output: str
    target: str
    loss: torch.nn.Module
    weight: float = 1.0


class TaskLoss(torch.nn.Module):
    """Sum of weighted :class:`Term` s; returns ``{"loss": total, <output>: term, ...}``.

    Per-event weights are taken from ``batch[weight_key]`` when that key is present.
    """

    def __init__(self, terms: list[Term], weight_key: str | None = None):
        super().__init__()
        self.terms = list(terms)
        self.losses = torch.nn.ModuleList([t.loss for t in self.terms])
        self.weight_key = weight_key

    def forward(self, outputs: dict, batch: dict) -> dict:
        weight = batch.get(self.weight_key) if self.weight_key else None
        result = {}
        total = 0.0
        for term in self.terms:
            value = term.loss(outputs[term.output], batch[term.target], weight)
            result[term.output] = value
            total = total + term.weight * value
        result["loss"] = total
        return result
