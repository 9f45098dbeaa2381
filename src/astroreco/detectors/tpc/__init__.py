"""Directional gas TPC (seed 001): electron recoils as sparse 3D voxels -> initial direction.

Built so far: the recoil simulator (:mod:`astroreco.detectors.tpc.simulate`).  The event
store schema, the classical references (Non-ML, Best-Expected), the sparse networks and the
evaluation follow in the TPC issue.
"""
