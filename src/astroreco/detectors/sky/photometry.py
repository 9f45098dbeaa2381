r"""Classical photometry of gamma-ray sources at known positions.

The baseline the refinement ensemble (:mod:`astroreco.detectors.sky.refine`) is compared
with on the same starting positions: per energy bin, the amplitude of the PSF kernel over
the known background by Poisson-weighted least squares, converted to the photon flux
S(1-100 GeV) through the exposure and the band fraction of an assumed power-law spectrum.
"""

from __future__ import annotations

import numpy as np

from astroreco.errors import InputError
from astroreco.physics.gamma import power_law_integral

__all__ = ["band_fractions", "classical_flux"]


def band_fractions(energy_edges_gev, index: float = 2.2, band_gev=(1.0, 100.0)) -> np.ndarray:
    r"""``(E,)`` fraction of each energy bin's photons inside ``band_gev`` for a power law
    :math:`dN/dE \propto E^{-\Gamma}` (``index`` = :math:`\Gamma`) within the bin."""
    e = np.asarray(energy_edges_gev, np.float64)
    lo, hi = np.maximum(e[:-1], band_gev[0]), np.minimum(e[1:], band_gev[1])
    part = np.where(hi > lo, power_law_integral(lo, np.maximum(hi, lo), float(index)), 0.0)
    return part / power_law_integral(e[:-1], e[1:], float(index))


def classical_flux(counts, background, patch, x_pix, y_pix, kernels, exposure_cm2s,
                   energy_edges_gev, index: float = 2.2) -> dict:
    r"""The classical flux of sources at known positions: a PSF-kernel amplitude per energy
    bin over the known background, summed into S(1-100 GeV).

    In each bin the expected counts are :math:`B + a K` with the PSF kernel ``K`` (summing
    to the PSF containment, so ``a`` is the source's expected counts ``npred``) centred on
    the position's pixel; the Poisson-weighted least-squares amplitude (the Gaussian limit
    of the likelihood fit) is

    .. math:: \hat a = \frac{\sum K (N - B) / B}{\sum K^2 / B},

    the photon flux in the bin is :math:`\hat a / \mathrm{exposure}` and
    :math:`S(1-100\,\mathrm{GeV}) = \sum_e f_e \hat a_e / \mathrm{exposure}_e` with the
    fraction ``f_e`` of bin ``e`` inside 1-100 GeV for an ``E^-index`` spectrum
    (:func:`band_fractions`).  ``S`` can come out <= 0 for a faint source.

    Parameters
    ----------
    counts, background : array (n, E, H, W)
    patch, x_pix, y_pix : array (k,)
        Each source's patch row and position (pixels).
    kernels : list of E arrays (odd, odd)
        :func:`~astroreco.detectors.sky.pipeline.psf_kernels`.
    exposure_cm2s : array (E,)
    energy_edges_gev : array (E + 1,)

    Returns
    -------
    dict
        ``flux`` ``(k,)`` (ph cm^-2 s^-1) and ``npred`` ``(k, E)``.
    """
    from astroreco.detectors.sky.cutouts import cutouts

    counts, background = np.asarray(counts), np.asarray(background)
    patch = np.asarray(patch, np.int64).reshape(-1)
    x = np.asarray(x_pix, np.float64).reshape(-1)
    y = np.asarray(y_pix, np.float64).reshape(-1)
    n_e = counts.shape[1]
    if len(kernels) != n_e or len(exposure_cm2s) != n_e or len(energy_edges_gev) != n_e + 1:
        raise InputError(f"kernels, exposure_cm2s, energy_edges_gev: expected {n_e}, {n_e} "
                         f"and {n_e + 1} entries for {n_e} energy bins")
    npred = np.zeros((x.size, n_e))
    for p in np.unique(patch):
        idx = np.flatnonzero(patch == p)
        for e, k in enumerate(kernels):
            k = np.asarray(k, np.float64)
            nw, _ = cutouts(counts[p, e].astype(np.float64), x[idx], y[idx], k.shape[0])
            bw, _ = cutouts(background[p, e].astype(np.float64), x[idx], y[idx], k.shape[0])
            inside, _ = cutouts(np.ones(counts.shape[-2:]), x[idx], y[idx], k.shape[0])
            w = inside * k / np.maximum(bw, 1e-3)                 # (k, s, s): K / B in map
            npred[idx, e] = (w * (nw - bw)).sum((1, 2)) / np.maximum(
                (w * k).sum((1, 2)), 1e-30)
    frac = band_fractions(energy_edges_gev, index)
    flux = (npred / np.asarray(exposure_cm2s, np.float64) * frac).sum(1)
    return {"flux": flux, "npred": npred}
