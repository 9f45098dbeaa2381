"""Gamma-ray sky maps (seed 002): Fermi-LAT / CTA-like counts cubes -> point sources."""
