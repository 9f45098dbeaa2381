"""AMS-02-like sampling calorimeter (seed 003): 18 x 72 shower images -> shower axis
(inclination) and incident position.

Modules: :mod:`~astroreco.detectors.ecal.geometry` (cells, layers, the fiducial cut) and
:mod:`~astroreco.detectors.ecal.simulate` (GFlash-parameterised electromagnetic showers).
"""
