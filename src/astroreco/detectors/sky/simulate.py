r"""Simulated gamma-ray sky patches (Fermi-LAT-like or CTA-like counts cubes) with truth.

Per patch (one random stream per patch, from ``SeedSequence([seed, patch_index])``):

1. **Centre.**  ``l`` uniform in ``l_range_deg``, ``|b|`` uniform in ``sin|b|`` within
   ``abs_b_range_deg`` (uniform on the sphere), random sign.
2. **Sources** in the patch and a ``margin_deg`` band around it (their PSF tails spill in;
   only those inside are flagged ``in_patch``): Poisson numbers from the population densities
   and :math:`dN/dS` (:mod:`astroreco.physics.gamma`), positions uniform in solid angle (AGN)
   or thinned by :math:`e^{-|b|/h}` (pulsars), fluxes :math:`S(1\text{-}100\,\mathrm{GeV})`
   by inverse CDF, spectral parameters, Gaussian extension classes (pulsar population only;
   AGN are point-like), and with ``n_time_bins > 0`` a light curve per source (AGN log-normal,
   pulsars steady).  The flux in each energy bin is :math:`S` times the ratio of band
   integrals of the source's spectrum; expected counts ``npred = flux x exposure``.
3. **Background**: IEM "A" or "B" plus the isotropic background (times ``isotropic_scale``)
   plus, optionally, a residual cosmic-ray intensity (Cherenkov telescopes), per sr and energy
   bin (:mod:`astroreco.physics.diffuse`), times pixel solid angle and exposure, convolved
   with the PSF.
4. **Rendering** (:class:`~astroreco.detectors.sky.render.PatchRenderer`): each source's
   ``npred x C_e`` counts spread by the pixel-integrated PSF of its energy bin (``C_e`` the
   containment of the truncated kernel, :attr:`SkyBatch.psf_containment`).
5. **Counts**: ``"poisson"``: Poisson draws of background + sources (per time bin, then summed,
   when time bins are on; the background is steady and split evenly); ``"asimov"``: the
   expected maps themselves (float).

The same ``seed`` gives the same batch bit for bit; chunks with ``first_index`` reproduce the
patches of one big call.  Exposure: 4e11 cm^2 s (Fermi, 10 years; PHYSICS.md) or per bin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace

import numpy as np

from astroreco.detectors.sky.geometry import SkyGeometry
from astroreco.detectors.sky.render import PatchRenderer
from astroreco.errors import InputError
from astroreco.physics.diffuse import (
    IEM_MODELS,
    cr_band_intensity,
    iem_model,
    isotropic_band_intensity,
)
from astroreco.physics.gamma import (
    CLASS_CODES,
    FLUX_BAND_GEV,
    AgnPopulation,
    ExtensionClasses,
    PulsarPopulation,
    SourceCounts,
    integrate_bands,
    light_curves,
    logparabola,
    plsec,
)
from astroreco.physics.psf import PSF_MODELS, psf_model

__all__ = ["SkySimConfig", "SkyBatch", "SkySimulator", "TRUTH_FIELDS", "MODES"]

MODES = ("poisson", "asimov")
_NAN = float("nan")

#: The flat source table of a batch, (name, dtype, unit, description); ``E`` = energy bins,
#: ``T`` = time bins.
TRUTH_FIELDS = (
    ("patch", "i8", "", "row of the patch in this batch"),
    ("patch_id", "i8", "", "global patch index (first_index + row): reproducible"),
    ("l_deg", "f8", "deg", "Galactic longitude, [0, 360)"),
    ("b_deg", "f8", "deg", "Galactic latitude"),
    ("x_pix", "f8", "pix", "0-based column in the patch (rendered within 1/64 pixel)"),
    ("y_pix", "f8", "pix", "0-based row in the patch"),
    ("in_patch", "?", "", "the position lies inside the patch"),
    ("flux", "f8", "ph cm-2 s-1", "S(1-100 GeV), time-averaged"),
    ("flux_bin", "f8", "ph cm-2 s-1", "(n, E) photon flux in each energy bin"),
    ("npred", "f8", "counts", "(n, E) expected counts, flux_bin x exposure (before the PSF "
                              "truncation: the map holds npred x psf_containment)"),
    ("cls", "i1", "", "source class: 0 agn, 1 psr (CLASS_CODES)"),
    ("ext_class", "i1", "", "extension class 0 (point-like), 1, 2"),
    ("ext_sigma_deg", "f8", "deg", "Gaussian extension (0 for point-like)"),
    ("alpha", "f8", "", "LogParabola alpha (AGN; NaN otherwise)"),
    ("beta", "f8", "", "LogParabola beta (AGN; NaN otherwise)"),
    ("pivot_gev", "f8", "GeV", "LogParabola pivot energy (AGN; NaN otherwise)"),
    ("gamma_index", "f8", "", "PLSuperExpCutoff photon index (psr; NaN otherwise)"),
    ("ecut_gev", "f8", "GeV", "PLSuperExpCutoff cutoff energy (psr; NaN otherwise)"),
    ("cutoff_b", "f8", "", "PLSuperExpCutoff exponent b (psr; NaN otherwise)"),
    ("var_sigma", "f8", "", "variability index: log-normal flux scatter per time bin "
                            "(0 = steady)"),
    ("light_curve", "f8", "", "(n, T) flux per time bin / flux (only with time bins)"),
)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _pair(value, name, lo, hi, what):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a (low, high) pair, got {value!r}") from None
    if not (np.isfinite(a) and np.isfinite(b) and lo <= a <= b <= hi):
        raise InputError(f"{name}: expected {what}, got {value!r}")
    return (a, b)


@dataclass(frozen=True)
class SkySimConfig:
    """Instrument, sky model and sampling of the simulated patches.

    Attributes
    ----------
    geometry : SkyGeometry
        Pixels, projection and energy bins.
    psf : str
        PSF model name (``"fermi"``, ``"cta"``).
    exposure_cm2s : float or tuple
        Exposure (cm^2 s): one value, or one per energy bin.  4e11: Fermi-LAT, 10 years.
    iem : str
        Interstellar emission model, ``"A"`` or ``"B"``.
    counts : SourceCounts
        dN/dS and the flux range ``s_min .. s_max`` (S(1-100 GeV)).
    agn, psr : AgnPopulation, PulsarPopulation
        The two source populations (densities set their relative numbers).
    extension : ExtensionClasses
        Extension classes of the pulsar (Galactic) population.
    l_range_deg : tuple
        Longitudes of the patch centres, ``(low, high)``, ``high - low <= 360``.
    abs_b_range_deg : tuple
        ``|b|`` of the patch centres, within [0, 90].
    margin_deg : float
        Sources up to this far outside the patch are simulated.
    mode : str
        ``"poisson"`` or ``"asimov"``.
    n_time_bins : int
        0: no time axis; else the exposure is split in this many equal time bins.
    isotropic_scale : float
        Multiplies the isotropic background.
    cr_intensity_above_1tev : float
        Residual cosmic-ray equivalent intensity above 1 TeV (ph cm^-2 s^-1 sr^-1), 0 = none.
    psf_index : float
        Photon index weighting the PSF within an energy bin.
    """

    geometry: SkyGeometry = field(default_factory=SkyGeometry)
    psf: str = "fermi"
    exposure_cm2s: float | tuple = 4e11
    iem: str = "A"
    counts: SourceCounts = field(default_factory=SourceCounts)
    agn: AgnPopulation = field(default_factory=AgnPopulation)
    psr: PulsarPopulation = field(default_factory=PulsarPopulation)
    extension: ExtensionClasses = field(default_factory=ExtensionClasses)
    l_range_deg: tuple = (0.0, 360.0)
    abs_b_range_deg: tuple = (0.0, 90.0)
    margin_deg: float = 2.0
    mode: str = "poisson"
    n_time_bins: int = 0
    isotropic_scale: float = 1.0
    cr_intensity_above_1tev: float = 0.0
    psf_index: float = 2.2

    def __post_init__(self):
        for name, cls in (("geometry", SkyGeometry), ("counts", SourceCounts),
                          ("agn", AgnPopulation), ("psr", PulsarPopulation),
                          ("extension", ExtensionClasses)):
            if not isinstance(getattr(self, name), cls):
                raise InputError(f"{name}: expected a {cls.__name__}, got "
                                 f"{type(getattr(self, name)).__name__}")
        if self.psf not in PSF_MODELS:
            raise InputError(f"psf: unknown PSF model {self.psf!r}, expected one of "
                             f"{sorted(PSF_MODELS)}")
        if self.iem not in IEM_MODELS:
            raise InputError(f"iem: unknown interstellar emission model {self.iem!r}, expected "
                             f"one of {sorted(IEM_MODELS)}")
        if self.mode not in MODES:
            raise InputError(f"mode: expected one of {MODES}, got {self.mode!r}")
        n_e = self.geometry.n_energy
        exp = np.atleast_1d(np.asarray(self.exposure_cm2s, dtype=float)) if not isinstance(
            self.exposure_cm2s, str) else np.array([np.nan])
        if exp.ndim != 1 or len(exp) not in (1, n_e) or np.any(~np.isfinite(exp) | (exp <= 0)):
            raise InputError(f"exposure_cm2s: expected one value > 0 or {n_e} (one per energy "
                             f"bin), in cm^2 s, got {self.exposure_cm2s!r}")
        if len(exp) > 1:
            object.__setattr__(self, "exposure_cm2s", tuple(exp.tolist()))
        object.__setattr__(self, "l_range_deg", _pair(
            self.l_range_deg, "l_range_deg", -360.0, 720.0, "low <= high within [-360, 720]"))
        if self.l_range_deg[1] - self.l_range_deg[0] > 360:
            raise InputError(f"l_range_deg: expected high - low <= 360, got "
                             f"{self.l_range_deg!r}")
        object.__setattr__(self, "abs_b_range_deg", _pair(
            self.abs_b_range_deg, "abs_b_range_deg", 0.0, 90.0, "0 <= low <= high <= 90"))
        for name in ("margin_deg", "isotropic_scale", "cr_intensity_above_1tev"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise InputError(f"{name}: expected a finite value >= 0, got {v!r}")
        if self.margin_deg > self.geometry.size_deg:
            raise InputError(f"margin_deg: expected at most the patch size "
                             f"({self.geometry.size_deg} deg), got {self.margin_deg!r}")
        if not _is_int(self.n_time_bins) or not 0 <= self.n_time_bins <= 1000:
            raise InputError(f"n_time_bins: expected an integer in 0..1000, got "
                             f"{self.n_time_bins!r}")
        if not (isinstance(self.psf_index, (int, float)) and np.isfinite(self.psf_index)):
            raise InputError(f"psf_index: expected a finite photon index, got "
                             f"{self.psf_index!r}")

    @classmethod
    def fermi(cls, **changes) -> "SkySimConfig":
        """Fermi-LAT-like, 10 years: the defaults (64 x 64 x 6, 0.3 GeV-1 TeV, all sky)."""
        return cls().variant(**changes)

    @classmethod
    def cta(cls, **changes) -> "SkySimConfig":
        """CTA-like Galactic plane survey (rough public figures, not an IRF).

        128 x 128 pixels of 0.04 deg, 5 bins 30 GeV-100 TeV, patch centres at ``|b| <= 5`` deg
        and ``-120 < l < 90`` deg; ~25 h per position (the survey's 1620 h spread over the
        plane) times an effective area growing from 4e8 cm^2 (30-150 GeV) to 4e10 cm^2
        (20-100 TeV); a residual cosmic-ray background of 2.9e-8 ph cm^-2 s^-1 sr^-1 above
        1 TeV (equivalent intensity, E^-1.6 integral: order of magnitude of current
        Cherenkov arrays' rates after cuts); a Galactic population of hard sources (Gamma
        2.3 +- 0.25, cutoff ~30 TeV) in a thin layer (h = 1.5 deg), many of them extended.
        """
        base = dict(
            geometry=SkyGeometry.cta(), psf="cta",
            exposure_cm2s=(3.6e13, 2.7e14, 9e14, 2.7e15, 3.6e15),
            psr=PulsarPopulation(plane_density_deg2=0.5, b_scale_deg=1.5, index_mean=2.3,
                                 index_sd=0.25, ecut_gev=3e4),
            extension=ExtensionClasses(fractions=(0.4, 0.35, 0.25)),
            l_range_deg=(-120.0, 90.0), abs_b_range_deg=(0.0, 5.0), margin_deg=1.5,
            cr_intensity_above_1tev=2.9e-8, psf_index=2.4)
        return cls(**base).variant(**changes)

    def variant(self, **changes) -> "SkySimConfig":
        """A copy with ``changes``; ``group__field=value`` changes one field of a group
        (``agn__density_deg2=0.2``, ``geometry__projection="TAN"``)."""
        top, nested = {}, {}
        for key, value in changes.items():
            if "__" in key:
                group, sub = key.split("__", 1)
                nested.setdefault(group, {})[sub] = value
            else:
                top[key] = value
        names = {f.name for f in fields(self)}
        for key in list(top) + list(nested):
            if key not in names:
                raise InputError(f"{key}: not a field of SkySimConfig (fields: "
                                 f"{sorted(names)})")
        for group, sub in nested.items():
            base = top.get(group, getattr(self, group))
            if not is_dataclass(base):
                raise InputError(f"{group}: not a group of fields")
            try:
                top[group] = replace(base, **sub)
            except TypeError as err:
                raise InputError(f"{group}: {err}") from None
        return replace(self, **top)

    @property
    def exposure_per_bin(self) -> np.ndarray:
        """``(E,)`` exposure (cm^2 s)."""
        e = np.atleast_1d(np.asarray(self.exposure_cm2s, dtype=float))
        return np.broadcast_to(e, (self.geometry.n_energy,)).copy()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["geometry"] = self.geometry.to_dict()
        return d


@dataclass
class SkyBatch:
    """Simulated patches.

    Attributes
    ----------
    counts : np.ndarray
        ``(n, E, H, W)`` counts: int32 (poisson) or float32 (asimov: background + sources).
    background : np.ndarray
        ``(n, E, H, W)`` float32 expected background counts (IEM + isotropic [+ CR]).
    source_counts : np.ndarray
        ``(n, E, H, W)`` float32 expected counts from the sources.
    time_counts : np.ndarray or None
        ``(n, T, E, H, W)`` counts per time bin (same dtype as ``counts``), or None.
    centres : np.ndarray
        ``(n, 2)`` patch centres ``(l_deg, b_deg)``.
    patch_id : np.ndarray
        ``(n,)`` global patch indices.
    truth : dict
        Flat source table over all patches, :data:`TRUTH_FIELDS`.
    psf_containment : np.ndarray
        ``(E,)`` fraction of a point source's ``npred`` in its (truncated) kernel.
    config : SkySimConfig
    """

    counts: np.ndarray
    background: np.ndarray
    source_counts: np.ndarray
    time_counts: np.ndarray | None
    centres: np.ndarray
    patch_id: np.ndarray
    truth: dict
    psf_containment: np.ndarray
    config: SkySimConfig

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def geometry(self) -> SkyGeometry:
        return self.config.geometry

    @property
    def energy_edges_gev(self) -> np.ndarray:
        return np.asarray(self.config.geometry.energy_edges_gev)

    def wcs(self, i: int):
        """astropy ``WCS`` of patch ``i``."""
        return self.geometry.wcs(*self.centres[i])

    def sources_of(self, i: int) -> dict:
        """The truth rows of patch ``i``."""
        sel = self.truth["patch"] == i
        return {k: v[sel] for k, v in self.truth.items()}


class SkySimulator:
    """Simulates sky patches for a :class:`SkySimConfig`."""

    def __init__(self, config: SkySimConfig | None = None):
        self.config = c = SkySimConfig() if config is None else config
        if not isinstance(c, SkySimConfig):
            raise InputError(f"config: expected a SkySimConfig, got {type(c).__name__}")
        g = c.geometry
        self.renderer = r = PatchRenderer(g, psf_model(c.psf), c.margin_deg, c.psf_index)
        self.exposure = c.exposure_per_bin
        self.iem = iem_model(c.iem)
        lo, hi = g.energy_bands_gev.T
        iso = c.isotropic_scale * isotropic_band_intensity(lo, hi)
        if c.cr_intensity_above_1tev > 0:
            iso = iso + cr_band_intensity(lo, hi, c.cr_intensity_above_1tev)
        self._iso = iso                                             # (E,) per sr
        self._iem_spectra = self.iem.band_spectra(g.energy_edges_gev)  # (C, E) per sr
        gx, gy = r.grid_pixels()
        self._grid_local = g.native_to_local(*g.pixel_to_native(gx, gy))  # (3, M, M)
        self._grid_omega = g.pixel_solid_angle(gx, gy)              # (M, M) sr
        self._bands = np.concatenate([[FLUX_BAND_GEV], g.energy_bands_gev])
        half = g.size_deg / 2 + c.margin_deg
        self._half = half
        jac = g.native_solid_angle(np.array([0.0, half]), np.array([0.0, half]))
        self._jac_max = float(jac[0])
        if g.projection == "CAR":
            self._region_sr = 2 * math.radians(half) * 2 * math.sin(math.radians(half))
        else:
            t = math.radians(half)
            self._region_sr = 4 * math.asin(t * t / (1 + t * t))
        self._deg2_per_sr = (180.0 / math.pi) ** 2
        self._n_agn_sr = c.counts.expected_number(c.agn.density_deg2) * self._deg2_per_sr
        self._n_psr0_sr = c.counts.expected_number(c.psr.plane_density_deg2) * \
            self._deg2_per_sr

    # --- sampling ---------------------------------------------------------------------------
    def _draw_centre(self, rng):
        c = self.config
        l_lo, l_hi = c.l_range_deg
        s_lo, s_hi = (math.sin(math.radians(v)) for v in c.abs_b_range_deg)
        l0 = (l_lo + (l_hi - l_lo) * rng.random()) % 360.0
        b0 = math.degrees(math.asin(s_lo + (s_hi - s_lo) * rng.random()))
        return l0, (b0 if rng.random() < 0.5 else -b0)

    def _uniform_positions(self, rng, n):
        """``n`` intermediate positions uniform in solid angle over the region (rejection)."""
        g, half = self.config.geometry, self._half
        xs, ys, have = [], [], 0
        while have < n:
            k = int(1.3 * (n - have)) + 16
            x = rng.uniform(-half, half, k)
            y = rng.uniform(-half, half, k)
            keep = rng.random(k) * self._jac_max < g.native_solid_angle(x, y)
            xs.append(x[keep])
            ys.append(y[keep])
            have += int(keep.sum())
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]

    def _draw_sources(self, rng, l0, b0):
        """Positions, classes, fluxes and spectral parameters of one patch's sources."""
        c, g = self.config, self.config.geometry
        axes = g.local_axes(l0, b0)
        n_agn = rng.poisson(self._n_agn_sr * self._region_sr)
        # pulsars: thinning of a Poisson process at the largest density of the region
        b_min = max(0.0, abs(b0) - math.sqrt(2) * self._half - 0.5)
        rho_max = self._n_psr0_sr * float(c.psr.relative_density(b_min))
        n_cand = rng.poisson(rho_max * self._region_sr)
        x, y = self._uniform_positions(rng, n_agn + n_cand)
        vec = np.tensordot(axes, g.native_to_local(x, y), axes=(0, 0))
        b = np.degrees(np.arcsin(np.clip(vec[2], -1, 1)))
        keep = np.ones(len(x), bool)
        if n_cand:
            dens = c.psr.relative_density(b[n_agn:]) / float(c.psr.relative_density(b_min))
            keep[n_agn:] = rng.random(n_cand) < dens
        x, y, vec, b = x[keep], y[keep], vec[:, keep], b[keep]
        n = len(x)
        n_psr = n - n_agn
        cls = np.repeat(np.array([CLASS_CODES["agn"], CLASS_CODES["psr"]], np.int8),
                        [n_agn, n_psr])
        flux = c.counts.sample(rng, n)
        agn = c.agn.draw_spectra(rng, n_agn)
        psr = c.psr.draw_spectra(rng, n_psr)
        ext_class = np.zeros(n, np.int8)
        ext_sigma = np.zeros(n)
        ext_class[n_agn:], ext_sigma[n_agn:] = c.extension.draw(rng, n_psr)
        src = {
            "l_deg": np.degrees(np.arctan2(vec[1], vec[0])) % 360.0, "b_deg": b,
            "cls": cls, "flux": flux, "ext_class": ext_class, "ext_sigma_deg": ext_sigma,
        }
        src["x_pix"], src["y_pix"] = g.native_to_pixel(x, y)
        for k in ("alpha", "beta", "pivot_gev"):
            src[k] = np.concatenate([agn[k], np.full(n_psr, _NAN)])
        for k in ("gamma_index", "ecut_gev", "cutoff_b"):
            src[k] = np.concatenate([np.full(n_agn, _NAN), psr[k]])
        # spectra -> flux per energy bin
        band = np.empty((n, len(self._bands)))
        a = (agn["alpha"][:, None], agn["beta"][:, None], agn["pivot_gev"][:, None])
        band[:n_agn] = integrate_bands(lambda e: logparabola(e[None, :], *a), self._bands)
        p = (psr["gamma_index"][:, None], psr["ecut_gev"][:, None], psr["cutoff_b"][:, None])
        band[n_agn:] = integrate_bands(lambda e: plsec(e[None, :], *p), self._bands)
        src["flux_bin"] = flux[:, None] * band[:, 1:] / band[:, :1]
        src["npred"] = src["flux_bin"] * self.exposure[None, :]
        return src

    # --- one patch --------------------------------------------------------------------------
    def _background_grid(self, l0, b0):
        """``(E, M, M)`` expected background counts per grid pixel, before the PSF."""
        vec = np.tensordot(self.config.geometry.local_axes(l0, b0), self._grid_local,
                           axes=(0, 0))
        l = np.degrees(np.arctan2(vec[1], vec[0]))
        b = np.degrees(np.arcsin(np.clip(vec[2], -1, 1)))
        t = self.iem.templates(l, b, vec)                                  # (C, M, M)
        inten = np.tensordot(self._iem_spectra, t, axes=(0, 0)) + self._iso[:, None, None]
        return inten * self._grid_omega[None] * self.exposure[:, None, None]

    def _patch(self, seed, index, centre):
        c = self.config
        s_centre, s_src, s_var, s_cnt = np.random.SeedSequence([seed, index]).spawn(4)
        l0, b0 = self._draw_centre(np.random.default_rng(s_centre)) if centre is None \
            else (float(centre[0]) % 360.0, float(centre[1]))
        src = self._draw_sources(np.random.default_rng(s_src), l0, b0)
        n, t = len(src["flux"]), c.n_time_bins
        rng_var = np.random.default_rng(s_var)
        if t:
            sig = np.zeros(n)
            is_agn = src["cls"] == CLASS_CODES["agn"]
            sig[is_agn] = c.agn.draw_variability(rng_var, int(is_agn.sum()))
            src["var_sigma"] = sig
            src["light_curve"] = light_curves(rng_var, sig, t)
            npred = src["npred"][:, None, :] * src["light_curve"][:, :, None] / t   # (n, T, E)
        else:
            src["var_sigma"] = np.zeros(n)
            npred = src["npred"]
        bg, img = self.renderer.render(self._background_grid(l0, b0), src["x_pix"],
                                       src["y_pix"], npred, src["ext_sigma_deg"])
        h = c.geometry.n_pix
        src["in_patch"] = ((src["x_pix"] >= -0.5) & (src["x_pix"] < h - 0.5) &
                           (src["y_pix"] >= -0.5) & (src["y_pix"] < h - 0.5))
        order = np.argsort(-src["flux"], kind="stable")
        src = {k: v[order] for k, v in src.items()}
        rng_cnt = np.random.default_rng(s_cnt)
        bg32 = bg.astype(np.float32)
        if t:
            src_total = img.sum(axis=0)
            expected_t = img + bg[None] / t
            if c.mode == "poisson":
                time_counts = rng_cnt.poisson(expected_t).astype(np.int32)
                counts = time_counts.sum(axis=0, dtype=np.int32)
            else:
                time_counts = expected_t.astype(np.float32)
                counts = bg32 + src_total.astype(np.float32)
        else:
            src_total, time_counts = img, None
            counts = rng_cnt.poisson(bg + img).astype(np.int32) if c.mode == "poisson" else \
                bg32 + img.astype(np.float32)
        return (l0, b0), counts, bg32, src_total.astype(np.float32), time_counts, src

    # --- public -----------------------------------------------------------------------------
    def simulate(self, n_patches: int, seed: int, first_index: int = 0,
                 centres=None) -> SkyBatch:
        """Simulate patches ``first_index .. first_index + n_patches - 1`` of run ``seed``.

        Parameters
        ----------
        n_patches : int
            Number of patches.
        seed : int
            Run seed (>= 0).
        first_index : int
            Global index of the first patch (chunks reproduce a single big call).
        centres : array_like or None
            ``(n_patches, 2)`` patch centres ``(l_deg, b_deg)`` instead of random ones.
        """
        for name, v in (("n_patches", n_patches), ("seed", seed), ("first_index", first_index)):
            if not _is_int(v) or v < 0:
                raise InputError(f"{name}: expected an integer >= 0, got {v!r}")
        if centres is not None:
            centres = np.asarray(centres, dtype=float)
            if centres.shape != (n_patches, 2) or np.any(~np.isfinite(centres)) or np.any(
                    np.abs(centres[:, 1]) > 90):
                raise InputError(f"centres: expected ({n_patches}, 2) finite (l, b) in deg "
                                 f"with |b| <= 90, got shape {centres.shape}")
        out = [self._patch(seed, first_index + i, None if centres is None else centres[i])
               for i in range(n_patches)]
        g, t = self.config.geometry, self.config.n_time_bins
        shape = (n_patches, g.n_energy) + g.shape
        stack = (lambda k, dt: np.stack([o[k] for o in out]) if out else np.zeros(shape, dt))
        counts_dtype = np.int32 if self.config.mode == "poisson" else np.float32
        time_counts = None
        if t:
            time_counts = np.stack([o[4] for o in out]) if out else np.zeros(
                (0, t) + shape[1:], counts_dtype)
        return SkyBatch(
            counts=stack(1, counts_dtype), background=stack(2, np.float32),
            source_counts=stack(3, np.float32), time_counts=time_counts,
            centres=np.array([o[0] for o in out], dtype=float).reshape(n_patches, 2),
            patch_id=np.arange(first_index, first_index + n_patches, dtype=np.int64),
            truth=self._table([o[5] for o in out], first_index),
            psf_containment=self.renderer.containment.copy(), config=self.config)

    def _table(self, per_patch, first_index):
        n_e, t = self.config.geometry.n_energy, self.config.n_time_bins
        table = {}
        sizes = [len(s["flux"]) for s in per_patch]
        for name, dtype, *_ in TRUTH_FIELDS:
            if name == "light_curve" and not t:
                continue
            if name == "patch":
                col = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
            elif name == "patch_id":
                col = np.repeat(np.arange(len(sizes), dtype=np.int64) + first_index, sizes)
            else:
                width = {"flux_bin": (n_e,), "npred": (n_e,), "light_curve": (t,)}.get(name, ())
                parts = [s[name] for s in per_patch]
                col = np.concatenate(parts) if parts else np.zeros((0,) + width)
            table[name] = col.astype(dtype)
        return table
