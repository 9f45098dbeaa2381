"""Detector-agnostic neural-network layers and backbones.

Nothing in this package knows a detector: it sees image tensors ``(N, C, H, W)`` (square
or hexagonal lattices, see :mod:`astroreco.nn.hexconv`) and returns feature or
prediction tensors; :mod:`astroreco.nn.vmf_calibrator` maps per-event features to
calibrated von Mises-Fisher concentrations.
"""
