"""Directional gas TPC (seed 001): electron recoils as sparse 3D voxels -> initial direction
with a von Mises-Fisher uncertainty.

Modules: :mod:`~astroreco.detectors.tpc.simulate` (recoil transport, smearing, voxels),
:mod:`~astroreco.detectors.tpc.pipeline` (event files, the reconstruct verb),
:mod:`~astroreco.detectors.tpc.nonml` and :mod:`~astroreco.detectors.tpc.best_expected`
(the classical references), :mod:`~astroreco.detectors.tpc.neural` and
:mod:`~astroreco.detectors.tpc.train` (the sparse networks),
:mod:`~astroreco.detectors.tpc.calibrate` (their kappa map),
:mod:`~astroreco.detectors.tpc.evaluate` and :mod:`~astroreco.detectors.tpc.plots` (the
seed's Figures 5 and 6), :mod:`~astroreco.detectors.tpc.arrows` and
:mod:`~astroreco.detectors.tpc.tutorial` (the 3D-arrows tutorial).
"""
