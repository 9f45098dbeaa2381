"""ixpe: the IXPE Gas Pixel Detector (seed 000).

Photoelectron tracks on a hexagonal pixel grid -> emission angle (polarization) and
impact point.  Classical baseline: the two-pass moments analysis.
"""
