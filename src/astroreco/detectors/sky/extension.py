r"""The classical extension test: a likelihood fit of a Gaussian width to each source.

The classical answer to "is this source extended?" (as in the Fermi-LAT catalogs of
extended sources) compares, on the counts around the source, the Poisson likelihood of a
point source with that of a Gaussian of width :math:`\sigma` convolved with the PSF:

.. math::

    \mu_{e,p}(\sigma) = B_{e,p} + a_e\,T_{e,p}(\sigma),
    \qquad \mathrm{TS_{ext}} = 2\,[\ln L(\hat\sigma) - \ln L(0)],

with the background :math:`B` known (the patch's model), one free amplitude
:math:`a_e \ge 0` per energy bin (no spectral shape imposed) fitted by Newton's method, and
:math:`\sigma` scanned over :data:`SIGMA_GRID_DEG`.  The templates :math:`T(\sigma)` are
drawn by the simulator's own renderer (:class:`~astroreco.detectors.sky.render.
PatchRenderer`: the pixel-integrated King PSF convolved with the Gaussian) at the source's
sub-pixel position in the cut-out.  The class follows from :math:`\hat\sigma` (C0 below
0.1 deg, C1 to 0.3 deg, C2 above), and a source is called point-like unless
:math:`\mathrm{TS_{ext}}` reaches ``ts_threshold`` (the catalogs use 16; tune it on
validation sources for the best accuracy).  Neighbouring sources are not modelled (nor are
they for the network): a bright neighbour in the cut-out reads as extension.  The position
is by default the one given (the network's); ``free_position`` fits it first as a point
source (:meth:`ExtensionFitter.locate`), as a catalogue would.  On the 872 CTA-like
validation sources (seed 4002) that did not help: point/extended 0.802 at its best
threshold (TS_ext >= 0) against 0.813 with the position fixed (TS_ext >= 2), at three
times the cost.

The same fit gives each source's detection TS (its best width against the background
alone, one free amplitude per energy bin); a catalog states the extension of the sources
reaching :data:`DETECTION_TS`, and ``min_ts`` restricts the evaluation to them.

This is the baseline the extension classifier
(:mod:`~astroreco.detectors.sky.classify`) is measured against, on the same sources and
positions.
"""

from __future__ import annotations

import numpy as np

from astroreco.detectors.sky.cutouts import cutouts
from astroreco.errors import InputError

#: the Gaussian widths scanned (deg); 0 is the point source
SIGMA_GRID_DEG = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4,
                  0.5, 0.6, 0.75, 0.9, 1.1)
#: class edges in sigma (deg): C0 < 0.1 <= C1 < 0.3 <= C2
CLASS_EDGES_DEG = (0.1, 0.3)
#: the catalogs' detection threshold (TS of the source against the background alone), here
#: applied to this test's own fit (a free amplitude per energy bin and the width: a looser
#: cut than a catalog's spectral fit); the sources whose extension a catalog would state
DETECTION_TS = 25.0


class ExtensionFitter:
    """Likelihood scan of the Gaussian width of sources in cut-outs of one patch geometry.

    Parameters
    ----------
    config : SkySimConfig
        The patches' simulation configuration (geometry, PSF, PSF index).
    size : int
        Cut-out width in pixels.
    sigmas : sequence of float
        Widths scanned (deg), starting with 0.
    """

    def __init__(self, config, size: int = 32, sigmas=SIGMA_GRID_DEG):
        from astroreco.detectors.sky.geometry import SkyGeometry
        from astroreco.detectors.sky.render import PatchRenderer
        from astroreco.physics.psf import psf_model

        self.sigmas = np.asarray(sigmas, np.float64)
        if self.sigmas.ndim != 1 or self.sigmas.size < 2 or self.sigmas[0] != 0 \
                or np.any(np.diff(self.sigmas) <= 0):
            raise InputError("sigmas: expected increasing widths (deg) starting with 0")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
            raise InputError(f"size: expected an integer >= 8, got {size!r}")
        g = config.geometry
        self.size = int(size)
        small = SkyGeometry(n_pix=self.size, size_deg=self.size * g.pixel_deg,
                            energy_edges_gev=g.energy_edges_gev, projection=g.projection)
        self.renderer = PatchRenderer(small, psf_model(config.psf), margin_deg=0.0,
                                      psf_index=config.psf_index)
        self.n_energy = g.n_energy

    def templates(self, dx: float, dy: float, sigmas=None) -> np.ndarray:
        """``(S, E, size, size)`` expected counts of a unit source (1 count per energy bin
        before the PSF) at ``(dx, dy)`` pixels from the cut-out's centre pixel, per width
        (``sigmas``, default the scanned ones)."""
        c = self.size // 2
        sig = self.sigmas if sigmas is None else np.asarray(sigmas, np.float64)
        out = np.empty((sig.size, self.n_energy, self.size, self.size))
        ones = np.ones((1, self.n_energy))
        for k, s in enumerate(sig):
            _, img = self.renderer.render(None, [c + dx], [c + dy], ones, np.array([s]))
            out[k] = img
        return out

    @staticmethod
    def _loglike(n, b, w, t, iterations: int = 30) -> np.ndarray:
        """Maximised Poisson log-likelihood of ``b + a_e t`` per template set ``t``
        ``(S, E, P, P)`` (amplitudes ``a_e >= 0`` by Newton's method); ``n``, ``b``, ``w``
        already masked."""
        st = t.sum(axis=(2, 3))                                         # (S, E)
        excess = (n - b * w).sum(axis=(1, 2))                           # (E,)
        a = np.clip(excess[None, :] / np.maximum(st, 1e-12), 0.0, None)
        for _ in range(iterations):
            mu = b[None] + a[:, :, None, None] * t
            grad = (n[None] * t / mu).sum(axis=(2, 3)) - st
            hess = -(n[None] * t * t / (mu * mu)).sum(axis=(2, 3))
            step = np.where(hess < 0, -grad / np.where(hess < 0, hess, -1.0), 0.0)
            a = np.clip(a + step, 0.0, None)
        mu = b[None] + a[:, :, None, None] * t
        return (n[None] * np.log(mu) - mu * w[None]).sum(axis=(1, 2, 3))

    @staticmethod
    def _masked(counts, background, mask):
        n = np.asarray(counts, np.float64)
        b = np.clip(np.asarray(background, np.float64), 1e-12, None)
        w = np.ones_like(n) if mask is None else np.broadcast_to(
            np.asarray(mask, np.float64), n.shape)
        return n * w, b * w + (1 - w), w                                # outside: no data

    def locate(self, counts, background, dx: float, dy: float, mask=None,
               radius: float = 1.0) -> tuple[float, float]:
        """The point source's best position near ``(dx, dy)`` (pixels from the centre
        pixel): the likelihood on a grid of step 0.5 pixel within ``radius``, then of step
        0.25 around the best point -- the position a catalogue fit would free."""
        n, b, w = self._masked(counts, background, mask)
        best = (float(dx), float(dy))
        for step, half in ((0.5, radius), (0.25, 0.25)):
            grid = np.arange(-half, half + 1e-9, step)
            cand = [(best[0] + u, best[1] + v) for u in grid for v in grid]
            t = np.concatenate([self.templates(u, v, [0.0]) for u, v in cand]) * w
            best = cand[int(np.argmax(self._loglike(n, b, w, t)))]
        return best

    def scan(self, counts, background, dx: float, dy: float, mask=None,
             iterations: int = 30) -> np.ndarray:
        """``(S,)`` maximised Poisson log-likelihood per width for one cut-out (counts and
        background ``(E, size, size)``; ``mask`` the pixels inside the map) with the source
        at ``(dx, dy)``."""
        n, b, w = self._masked(counts, background, mask)
        return self._loglike(n, b, w, self.templates(dx, dy) * w, iterations)

    def fit_sources(self, counts, background, patch, x_pix, y_pix, *,
                    free_position: bool = False, progress: bool = False) -> dict:
        """The scan for sources spread over patches: ``counts``, ``background``
        ``(n, E, H, W)``, ``patch`` the row of each source's patch; with ``free_position``
        the position is first fitted as a point source (:meth:`locate`).  Returns ``sigma``
        (the best width, deg), ``ts_ext``, ``ts_detection`` (the best width against the
        background alone, :math:`2 [\ln L(\hat\sigma) - \ln L_B]`, one free amplitude per
        energy bin: the source's detection TS), ``loglike`` ``(k, S)`` and the ``x_pix``, ``y_pix``
        used."""
        from astroreco.progress import progress_bar

        patch = np.asarray(patch, np.int64)
        x, y = np.asarray(x_pix, np.float64), np.asarray(y_pix, np.float64)
        ll = np.empty((x.size, self.sigmas.size))
        ll_bkg = np.empty(x.size)
        x_fit, y_fit = x.copy(), y.copy()
        with progress_bar("extension scan", total=x.size, enabled=progress) as bar:
            for p in np.unique(patch):
                idx = np.flatnonzero(patch == p)
                c, off = cutouts(counts[p], x[idx], y[idx], self.size)
                bg, _ = cutouts(background[p], x[idx], y[idx], self.size)
                inside, _ = cutouts(np.ones(counts.shape[-2:]), x[idx], y[idx], self.size)
                for j, i in enumerate(idx):
                    dx, dy = off[j]
                    if free_position:
                        dx, dy = self.locate(c[j], bg[j], dx, dy, inside[j][None])
                    x_fit[i], y_fit[i] = x[i] + dx - off[j, 0], y[i] + dy - off[j, 1]
                    n, b, w = self._masked(c[j], bg[j], inside[j][None])
                    ll[i] = self._loglike(n, b, w, self.templates(dx, dy) * w)
                    ll_bkg[i] = (n * np.log(b) - b * w).sum()           # a = 0
                    bar.advance(1)
        best = ll.argmax(axis=1)
        return {"sigma": self.sigmas[best], "ts_ext": 2.0 * (ll.max(axis=1) - ll[:, 0]),
                "ts_detection": 2.0 * (ll.max(axis=1) - ll_bkg), "loglike": ll, "x_pix": x_fit,
                "y_pix": y_fit}


def classify(sigma, ts_ext, ts_threshold: float = 16.0) -> np.ndarray:
    """Extension classes 0/1/2 from the fitted width and ``TS_ext`` (point-like below the
    threshold)."""
    sigma, ts = np.asarray(sigma, np.float64), np.asarray(ts_ext, np.float64)
    cls = np.searchsorted(np.asarray(CLASS_EDGES_DEG), sigma, side="right")
    return np.where(ts >= ts_threshold, cls, 0).astype(np.int64)


def scan_sources(path, cfg, *, free_position: bool = False, progress: bool = False,
                 chunk_patches: int = 256) -> tuple:
    """:meth:`ExtensionFitter.fit_sources` on the true sources of a patch file that ``cfg``
    selects (a classifier's :class:`~astroreco.detectors.sky.sources.CutoutConfig`: the same
    sources, cut-out size and validation-jittered positions as the network's evaluation):
    the fit and the :class:`~astroreco.detectors.sky.sources.SourceRows`.  The patches are
    read ``chunk_patches`` at a time (12,000 CTA-like patches would be 8 GB at once)."""
    from astroreco.detectors.sky.pipeline import config_of, read_patches
    from astroreco.detectors.sky.sources import SourceRows
    from astroreco.progress import progress_bar

    if isinstance(chunk_patches, bool) or int(chunk_patches) != chunk_patches \
            or chunk_patches < 1:
        raise InputError(f"chunk_patches: expected an integer >= 1, got {chunk_patches!r}")
    src = SourceRows(path, 0, None, cfg, task="extension")
    if src.n_events == 0:
        raise InputError(f"{path}: no true source passes the selection")
    pos = src.starts(np.arange(src.n_events), None)
    fitter = ExtensionFitter(config_of(path), size=src.size)
    parts = []
    n_patches = int(src.patch.max()) + 1
    with progress_bar("extension scan", total=src.n_events, enabled=progress) as bar:
        for a in range(0, n_patches, int(chunk_patches)):
            b = min(n_patches, a + int(chunk_patches))
            rows = np.flatnonzero((src.patch >= a) & (src.patch < b))
            if rows.size == 0:
                continue
            data = read_patches(path, a, b)
            parts.append(fitter.fit_sources(data.counts, data.background, src.patch[rows] - a,
                                            pos[rows, 0], pos[rows, 1],
                                            free_position=free_position))
            bar.advance(rows.size)
    # the rows are ordered by patch, so the chunks' rows follow one another
    return {k: np.concatenate([f[k] for f in parts]) for k in parts[0]}, src


def _detected(fit, min_ts):
    if min_ts is None:
        return np.ones(fit["ts_detection"].size, bool)
    return fit["ts_detection"] >= float(min_ts)


def evaluate_sources(path, cfg, ts_threshold: float = 16.0, *,
                     min_ts: float | None = None, scan=None, progress: bool = False) -> dict:
    """The classical test's figures (:func:`~astroreco.detectors.sky.classify.
    source_figures`) on the sources ``cfg`` selects in ``path``; with ``min_ts`` only
    on those whose detection TS reaches it (:data:`DETECTION_TS`: the detected ones),
    with ``n_selected_from`` the count before that cut.  ``scan``: the ``(fit, sources)``
    :func:`scan_sources` returned for the same file and ``cfg``, not scanned again."""
    from astroreco.detectors.sky.classify import source_figures

    fit, src = scan or scan_sources(path, cfg, progress=progress)
    keep = _detected(fit, min_ts)
    if not keep.any():
        raise InputError(f"{path}: no source reaches a detection TS of {min_ts}")
    pred = classify(fit["sigma"], fit["ts_ext"], ts_threshold)
    fig = source_figures(np.eye(3)[pred[keep]], src.ext_class[keep], src.log_flux[keep],
                         "extension")
    return {**fig, "ts_threshold": float(ts_threshold), "min_ts": min_ts,
            "n_selected_from": int(keep.size)}


def tune_threshold(path, cfg, thresholds=(0.0, 1.0, 2.0, 4.0, 9.0, 16.0, 25.0), *,
                   min_ts: float | None = None, scan=None, progress: bool = False) -> dict:
    """The ``TS_ext`` threshold with the best point/extended accuracy on the sources of
    ``path`` (validation patches; with ``min_ts``, those whose detection TS reaches it),
    and the accuracy of every candidate; ``scan`` as in :func:`evaluate_sources`."""
    fit, src = scan or scan_sources(path, cfg, progress=progress)
    keep = _detected(fit, min_ts)
    if not keep.any():
        raise InputError(f"{path}: no source reaches a detection TS of {min_ts}")
    truth_ext = src.ext_class[keep] > 0
    acc = {float(t): float(np.mean((classify(fit["sigma"][keep], fit["ts_ext"][keep], t) > 0)
                                   == truth_ext)) for t in thresholds}
    best = max(acc, key=lambda t: (acc[t], -t))
    return {"ts_threshold": best, "accuracy": acc, "n": int(keep.sum()), "min_ts": min_ts}
