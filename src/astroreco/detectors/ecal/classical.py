"""Classical shower-axis reconstruction of the ECAL: centre of gravity and neighbour-cell ratio.

Both measure, in every layer, where the shower crosses the layer's measured coordinate (x in
x layers, y in y layers), then fit a straight line ``u(z) = u0 + s_u z`` per projection,
weighted by the layer energies.  The two slopes give the inclination and the azimuth, the
two intercepts the incident point on the front face:

    tan(180 deg - theta) = sqrt(s_x^2 + s_y^2),   phi = atan2(s_y, s_x),   (x0, y0) = (u0_x, u0_y)

- **Centre of gravity** (PHYSICS.md): the energy-weighted mean of the cell centres over the
  layer's maximum cell +-2 cells.  It is pulled towards the centre of the maximum cell (the
  cells are 9 mm, about half a Moliere radius), which the fit averages only partly.
- **Neighbour-cell ratio**: the asymmetry of the maximum cell's neighbours,
  ``eta = (E_right - E_left) / (E_left + E_max + E_right)``, turned into the position inside
  the maximum cell by an *S-curve*: the median true offset per bin of ``eta`` and layer,
  derived from simulated showers (:func:`derive_scurve`).  Because an inclined shower
  widens the profile inside a layer, the table has bins of the projected slope; a first fit
  with the vertical table gives the slope, the table of that slope is used for the refit.

Inputs are ``(n, n_layers, n_cells)`` images in MeV; everything is vectorised over events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astroreco.detectors.ecal.geometry import EcalGeometry
from astroreco.errors import InputError

#: cells on each side of the maximum used by the centre of gravity
COG_HALF_WIDTH = 2


def _check(images, geometry: EcalGeometry) -> np.ndarray:
    a = np.asarray(images, np.float64)
    if a.ndim != 3 or a.shape[1:] != (geometry.n_layers, geometry.n_cells):
        raise InputError(f"images: expected shape (n, {geometry.n_layers}, "
                         f"{geometry.n_cells}), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError("images: NaN or infinite cell energies")
    return a


def _max_cell(images):
    """``(n, L)`` index of each layer's maximum cell and the three cells around it."""
    m = np.argmax(images, axis=2)
    n_cells = images.shape[2]
    left = np.take_along_axis(images, np.clip(m - 1, 0, n_cells - 1)[..., None], 2)[..., 0]
    centre = np.take_along_axis(images, m[..., None], 2)[..., 0]
    right = np.take_along_axis(images, np.clip(m + 1, 0, n_cells - 1)[..., None], 2)[..., 0]
    left = np.where(m > 0, left, 0.0)
    right = np.where(m < n_cells - 1, right, 0.0)
    return m, left, centre, right


def layer_cog(images, geometry: EcalGeometry | None = None, half_width: int = COG_HALF_WIDTH):
    """Per-layer centre of gravity (mm) of the maximum cell +-``half_width`` cells.

    Returns ``(position (n, L), layer_energy (n, L))``; layers without energy have NaN.
    """
    g = geometry or EcalGeometry()
    e = np.clip(_check(images, g), 0.0, None)
    m = np.argmax(e, axis=2)                                       # (n, L)
    idx = np.arange(g.n_cells)
    window = np.abs(idx[None, None, :] - m[..., None]) <= half_width   # (n, L, C)
    w = np.where(window, e, 0.0)
    total = w.sum(2)
    pos = (w * g.cell_centres_mm()[None, None, :]).sum(2) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, pos, np.nan), e.sum(2)


def fit_axis(position, weight, geometry: EcalGeometry | None = None,
             min_layers: int = 2) -> dict:
    """Straight-line fits ``u(z) = u0 + s z`` in the two projections.

    Parameters
    ----------
    position : array_like
        ``(n, L)`` measured coordinate per layer (mm; NaN: no measurement).
    weight : array_like
        ``(n, L)`` fit weights (layer energies).

    Returns
    -------
    dict
        ``theta_deg``, ``phi_deg``, ``x0_mm``, ``y0_mm``, ``slope_x``, ``slope_y`` and
        ``failed`` (fewer than ``min_layers`` layers in a projection).
    """
    g = geometry or EcalGeometry()
    pos = np.asarray(position, np.float64)
    w = np.where(np.isfinite(pos), np.clip(np.asarray(weight, np.float64), 0.0, None), 0.0)
    z = g.layer_z_mm()
    out, failed = {}, np.zeros(len(pos), bool)
    for name, sel in (("x", g.measures_x()), ("y", ~g.measures_x())):
        p, ww, zz = np.nan_to_num(pos[:, sel]), w[:, sel], z[sel]
        sw = ww.sum(1)
        n_used = (ww > 0).sum(1)
        ok = (n_used >= min_layers) & (sw > 0)
        sw = np.where(ok, sw, 1.0)
        zm = (ww * zz).sum(1) / sw
        pm = (ww * p).sum(1) / sw
        szz = (ww * (zz - zm[:, None]) ** 2).sum(1)
        szp = (ww * (zz - zm[:, None]) * (p - pm[:, None])).sum(1)
        ok &= szz > 0
        slope = np.where(ok, szp / np.where(szz > 0, szz, 1.0), 0.0)
        out[f"slope_{name}"] = slope
        out[f"{name}0_mm"] = np.where(ok, pm - slope * zm, np.nan)
        failed |= ~ok
    tan_incl = np.hypot(out["slope_x"], out["slope_y"])
    out["theta_deg"] = 180.0 - np.degrees(np.arctan(tan_incl))
    out["phi_deg"] = np.degrees(np.arctan2(out["slope_y"], out["slope_x"])) % 360.0
    out["failed"] = failed
    return out


def centre_of_gravity(images, geometry: EcalGeometry | None = None) -> dict:
    """Shower axis from the per-layer centres of gravity (see the module docstring)."""
    g = geometry or EcalGeometry()
    pos, energy = layer_cog(images, g)
    return fit_axis(pos, energy, g)


def layer_eta(images, geometry: EcalGeometry | None = None):
    """Per layer: maximum cell index, neighbour asymmetry ``eta`` in [-1, 1] and energy."""
    g = geometry or EcalGeometry()
    e = np.clip(_check(images, g), 0.0, None)
    m, left, centre, right = _max_cell(e)
    s = left + centre + right
    eta = np.where(s > 0, (right - left) / np.where(s > 0, s, 1.0), np.nan)
    return m, eta, e.sum(2)


@dataclass
class SCurve:
    """Neighbour-cell-ratio correction table: median true offset (cells, in [-0.5, 0.5])
    inside the maximum cell per layer, bin of ``eta`` and bin of |projected slope|.

    Attributes
    ----------
    eta_edges : ndarray
        ``(n_eta + 1,)`` bin edges of ``eta`` in [-1, 1].
    slope_edges : ndarray
        ``(n_slope + 1,)`` bin edges of |projected slope| (tan of the projected angle).
    offset : ndarray
        ``(n_slope, n_layers, n_eta)`` median offsets (cells).
    provenance : dict
        How the table was made (simulation configuration, events).
    """

    eta_edges: np.ndarray
    slope_edges: np.ndarray
    offset: np.ndarray
    provenance: dict = field(default_factory=dict)

    def lookup(self, layer_eta, slope_abs) -> np.ndarray:
        """``(n, L)`` offsets (cells) for ``layer_eta`` ``(n, L)`` and ``slope_abs`` ``(n, L)``
        (linear interpolation in ``eta`` between bin centres)."""
        centres = 0.5 * (self.eta_edges[:-1] + self.eta_edges[1:])
        sb = np.clip(np.searchsorted(self.slope_edges, slope_abs, side="right") - 1, 0,
                     len(self.slope_edges) - 2)
        out = np.full(np.shape(layer_eta), np.nan)
        eta = np.asarray(layer_eta, np.float64)
        for s in range(self.offset.shape[0]):
            for layer in range(self.offset.shape[1]):
                sel = (sb[:, layer] == s) & np.isfinite(eta[:, layer])
                if sel.any():
                    out[sel, layer] = np.interp(eta[sel, layer], centres,
                                                self.offset[s, layer])
        return out

    def save(self, path) -> None:
        """Write the table as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"format": "astroreco-ecal-scurve", "version": 1,
                                   "eta_edges": self.eta_edges.tolist(),
                                   "slope_edges": self.slope_edges.tolist(),
                                   "offset": self.offset.tolist(),
                                   "provenance": self.provenance}, indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "SCurve":
        """Read a table written by :meth:`save`; a one-line error for a bad file."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            if d.get("format") != "astroreco-ecal-scurve":
                raise ValueError
            table = cls(np.asarray(d["eta_edges"], float), np.asarray(d["slope_edges"], float),
                        np.asarray(d["offset"], float), d.get("provenance", {}))
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"{path}: not an astroreco ECAL S-curve table (JSON with "
                             "eta_edges, slope_edges, offset)") from None
        n_s, n_e = len(table.slope_edges) - 1, len(table.eta_edges) - 1
        if table.offset.ndim != 3 or table.offset.shape[0] != n_s \
                or table.offset.shape[2] != n_e or not np.all(np.isfinite(table.offset)):
            raise InputError(f"{path}: offset table of shape {table.offset.shape}, expected "
                             f"({n_s}, n_layers, {n_e}) finite values")
        return table


def derive_scurve(images, truth: dict, geometry: EcalGeometry | None = None, *,
                  n_eta: int = 40, slope_edges=(0.0, 0.1, 0.2, 0.3, 0.5),
                  provenance: dict | None = None) -> SCurve:
    """The S-curve table from simulated showers with their true axis (``truth`` holds
    ``theta_deg``, ``phi_deg``, ``x0_mm``, ``y0_mm``).  Empty bins take the nearest
    filled bin of the same layer (or 0 if the layer has none)."""
    g = geometry or EcalGeometry()
    m, eta, energy = layer_eta(images, g)
    z = g.layer_z_mm()
    ax, ay = g.axis_at(z[None, :], np.asarray(truth["x0_mm"])[:, None],
                       np.asarray(truth["y0_mm"])[:, None],
                       np.asarray(truth["theta_deg"])[:, None],
                       np.asarray(truth["phi_deg"])[:, None])
    true_u = np.where(g.measures_x()[None, :], ax, ay)
    offset = (true_u - g.cell_centres_mm()[m]) / g.cell_mm
    slope_abs = _projected_slope(truth, g)
    eta_edges = np.linspace(-1.0, 1.0, n_eta + 1)
    slope_edges = np.asarray(slope_edges, np.float64)
    table = np.zeros((len(slope_edges) - 1, g.n_layers, n_eta))
    eb = np.clip(np.searchsorted(eta_edges, eta, side="right") - 1, 0, n_eta - 1)
    sb = np.clip(np.searchsorted(slope_edges, slope_abs, side="right") - 1, 0,
                 len(slope_edges) - 2)
    good = np.isfinite(eta) & (energy > 0) & (np.abs(offset) <= 1.0)
    for s in range(table.shape[0]):
        for layer in range(g.n_layers):
            sel = good[:, layer] & (sb[:, layer] == s)
            filled = np.zeros(n_eta, bool)
            for b in range(n_eta):
                v = offset[sel & (eb[:, layer] == b), layer]
                if v.size >= 5:
                    table[s, layer, b] = np.median(v)
                    filled[b] = True
            if filled.any() and not filled.all():
                idx = np.flatnonzero(filled)
                nearest = idx[np.argmin(np.abs(np.arange(n_eta)[:, None] - idx[None]), 1)]
                table[s, layer] = table[s, layer, nearest]
    return SCurve(eta_edges, slope_edges, table, dict(provenance or {}, n_events=len(eta)))


def _projected_slope(truth, g: EcalGeometry) -> np.ndarray:
    """``(n, L)`` |slope| of the true axis in each layer's measured projection."""
    t = np.tan(np.radians(180.0 - np.asarray(truth["theta_deg"], np.float64)))
    phi = np.radians(np.asarray(truth["phi_deg"], np.float64))
    sx, sy = np.abs(t * np.cos(phi)), np.abs(t * np.sin(phi))
    return np.where(g.measures_x()[None, :], sx[:, None], sy[:, None])


def cell_ratio(images, scurve: SCurve, geometry: EcalGeometry | None = None) -> dict:
    """Shower axis from the neighbour-cell ratios and the S-curve (see the module
    docstring): a fit with the vertical table, then a refit with the table of the fitted
    projected slopes."""
    g = geometry or EcalGeometry()
    if scurve.offset.shape[1] != g.n_layers:
        raise InputError(f"S-curve table for {scurve.offset.shape[1]} layers, the geometry "
                         f"has {g.n_layers}")
    m, eta, energy = layer_eta(images, g)
    centres = g.cell_centres_mm()[m]
    slope = np.zeros_like(eta)
    fit = None
    for _ in range(2):
        pos = centres + g.cell_mm * scurve.lookup(eta, slope)
        fit = fit_axis(pos, energy, g)
        slope = np.where(g.measures_x()[None, :], np.abs(fit["slope_x"])[:, None],
                         np.abs(fit["slope_y"])[:, None])
    return fit
