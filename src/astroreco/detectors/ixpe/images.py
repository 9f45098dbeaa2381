"""IXPE tracks as network inputs: crops around the track on the hexagonal lattice.

Two representations of the same crop, both centred on a pixel near the track's charge
barycentre so that every symmetry of the lattice maps the crop onto itself:

``hexagonal`` (default)
    The pixels stay on the hexagonal lattice, stored in axial coordinates: image index
    ``[r, q]`` holds the pixel at axial ``(q, r)`` relative to the centre pixel, with
    ``q = col - ceil(row / 2)`` and ``r = row``.  In the physical frame (x right, y up,
    rows going down) a pixel sits at ``x = (q + r / 2) * pitch``, ``y = -r * row_pitch``.
    The six neighbours are ``(q +- 1, r), (q, r -+ 1), (q + 1, r - 1), (q - 1, r + 1)``,
    which is the stencil of :class:`astroreco.nn.hexconv.HexConv2d`.  ``size x size``.
``cartesian``
    The seed paper's baseline: hexagons resampled to a square grid with 2x upsampling by
    shifting alternate rows: each hexagon becomes a 2 x 2 block of half-pitch cells (the
    odd-row half-pitch shift is then an integer shift).  ``2 size x 2 size``.

The twelve symmetries of the hexagonal lattice (rotations by k * 60 degrees, optionally
after the reflection y -> -y) are exact on the axial crop.  :data:`N_SYMMETRIES` of them are
indexed ``g = 6 * reflect + k``; :func:`transform_angle` and :func:`transform_vector` apply
them to the truth, their ``inverse`` twins undo them on predictions (test-time averaging).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba
import numpy as np

from astroreco.detectors.ixpe.geometry import IXPE_GRID, HexGrid, nearest_pixel
from astroreco.errors import InputError

N_SYMMETRIES = 12
REPRESENTATIONS = ("hexagonal", "cartesian")


def _symmetry_matrices() -> np.ndarray:
    """(12, 2, 2) integer maps of relative axial (q, r) for each lattice symmetry."""
    s3 = math.sqrt(3.0) / 2.0
    mats = np.zeros((N_SYMMETRIES, 2, 2), dtype=np.int64)
    for g in range(N_SYMMETRIES):
        reflect, k = divmod(g, 6)
        a = k * math.pi / 3.0
        c, s = math.cos(a), math.sin(a)
        for j, (q, r) in enumerate(((1, 0), (0, 1))):
            x, y = q + 0.5 * r, -s3 * r          # physical frame in units of the pitch
            if reflect:
                y = -y
            x, y = c * x - s * y, s * x + c * y
            r2 = -y / s3
            q2 = x - 0.5 * r2
            qi, ri = round(q2), round(r2)
            assert abs(q2 - qi) < 1e-9 and abs(r2 - ri) < 1e-9
            mats[g, 0, j] = qi
            mats[g, 1, j] = ri
    return mats


SYMMETRY_MATRICES = _symmetry_matrices()


def transform_angle(phi, g):
    """Emission angle (rad, counter-clockwise from +x) after symmetry ``g`` (array-like)."""
    g = np.asarray(g)
    reflect, k = np.divmod(g, 6)
    return np.where(reflect == 1, -np.asarray(phi), phi) + k * (np.pi / 3.0)


def inverse_angle(phi, g):
    """Undo :func:`transform_angle`."""
    g = np.asarray(g)
    reflect, k = np.divmod(g, 6)
    phi = np.asarray(phi) - k * (np.pi / 3.0)
    return np.where(reflect == 1, -phi, phi)


def transform_vector(dx, dy, g):
    """Physical vector (dx, dy) after symmetry ``g``: reflect y first, then rotate."""
    g = np.asarray(g)
    reflect, k = np.divmod(g, 6)
    dy = np.where(reflect == 1, -np.asarray(dy), dy)
    a = k * (np.pi / 3.0)
    c, s = np.cos(a), np.sin(a)
    return c * dx - s * dy, s * dx + c * dy


def inverse_vector(dx, dy, g):
    """Undo :func:`transform_vector`."""
    g = np.asarray(g)
    reflect, k = np.divmod(g, 6)
    a = -k * (np.pi / 3.0)
    c, s = np.cos(a), np.sin(a)
    x, y = c * dx - s * dy, s * dx + c * dy
    return x, np.where(reflect == 1, -y, y)


@dataclass(frozen=True)
class ImageConfig:
    """How tracks become images (saved in a model's ``config.json``).

    Attributes
    ----------
    representation : str
        ``hexagonal`` (axial, ``size x size``) or ``cartesian`` (``2 size x 2 size``).
    size : int
        Crop side in pixels of the hexagonal lattice (even).
    charge_scale : float
        Pixel charges (electrons) are divided by this.
    centre_fraction : float
        Pixels above this fraction of the highest pixel define the barycentre the crop is
        centred on (keeps isolated noise pixels from pulling the crop off the track).
    """

    representation: str = "hexagonal"
    size: int = 24
    charge_scale: float = 1000.0
    centre_fraction: float = 0.1

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise InputError(f"representation {self.representation!r}: expected one of "
                             f"{', '.join(REPRESENTATIONS)}")
        if self.size < 4 or self.size % 4:
            raise InputError(f"image size {self.size}: expected a multiple of 4, at least 4")
        if not self.charge_scale > 0:
            raise InputError(f"charge_scale {self.charge_scale}: expected > 0")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        n = self.size if self.representation == "hexagonal" else 2 * self.size
        return (1, n, n)

    def to_dict(self) -> dict:
        return asdict(self)


@numba.njit(cache=True)
def _centres(offsets, col, row, charge, frac, pitch, row_pitch, x_off, y_off, out_col, out_row,
             out_x, out_y):
    for e in range(offsets.shape[0] - 1):
        s, t = offsets[e], offsets[e + 1]
        qmax = 0.0
        for i in range(s, t):
            if charge[i] > qmax:
                qmax = charge[i]
        sw = 0.0
        sx = 0.0
        sy = 0.0
        for i in range(s, t):
            if charge[i] >= frac * qmax and charge[i] > 0:
                x = (col[i] - 0.5 * (row[i] & 1)) * pitch + x_off
                y = y_off - row[i] * row_pitch
                sw += charge[i]
                sx += charge[i] * x
                sy += charge[i] * y
        if sw > 0:
            c, r = nearest_pixel(sx / sw, sy / sw, pitch, row_pitch, x_off, y_off)
        else:
            c, r = 0, 0
        out_col[e] = c
        out_row[e] = r
        out_x[e] = (c - 0.5 * (r & 1)) * pitch + x_off
        out_y[e] = y_off - r * row_pitch


@numba.njit(cache=True)
def _rasterise(offsets, col, row, charge, centre_col, centre_row, sym, mats, size, cartesian,
               scale, out):
    half = size // 2
    for e in range(offsets.shape[0] - 1):
        rc = np.int64(centre_row[e])
        qc = np.int64(centre_col[e]) - (rc + (rc & 1)) // 2
        m = mats[sym[e]]
        for i in range(offsets[e], offsets[e + 1]):
            r0 = np.int64(row[i])
            dq0 = np.int64(col[i]) - (r0 + (r0 & 1)) // 2 - qc
            dr0 = r0 - rc
            dq = m[0, 0] * dq0 + m[0, 1] * dr0
            dr = m[1, 0] * dq0 + m[1, 1] * dr0
            v = charge[i] / scale
            if not cartesian:
                ii = dr + half
                jj = dq + half
                if 0 <= ii < size and 0 <= jj < size:
                    out[e, 0, ii, jj] += v
            else:
                # half-pitch x index of the hexagon centre, relative to the crop centre
                xh = 2 * dq + dr
                for a in range(2):
                    ii = 2 * dr + size + a
                    if ii < 0 or ii >= 2 * size:
                        continue
                    for b in range(2):
                        jj = xh + size - 1 + b
                        if 0 <= jj < 2 * size:
                            out[e, 0, ii, jj] += v


def track_centres(offsets, col, row, charge, config: ImageConfig = ImageConfig(),
                  grid: HexGrid = IXPE_GRID):
    """Centre pixel of each crop and its position.

    Returns
    -------
    dict
        ``col``, ``row`` (N,) of the centre pixel and ``x_mm``, ``y_mm`` (N,) of its centre.
    """
    n = len(offsets) - 1
    out = {"col": np.zeros(n, np.int64), "row": np.zeros(n, np.int64),
           "x_mm": np.zeros(n), "y_mm": np.zeros(n)}
    _centres(np.asarray(offsets, np.int64), np.asarray(col, np.int64),
             np.asarray(row, np.int64), np.asarray(charge, np.float64), config.centre_fraction,
             grid.pitch_mm, grid.row_pitch_mm, grid.x_offset_mm, grid.y_offset_mm,
             out["col"], out["row"], out["x_mm"], out["y_mm"])
    return out


def track_images(offsets, col, row, charge, config: ImageConfig = ImageConfig(),
                 symmetry=None, centres=None, grid: HexGrid = IXPE_GRID):
    """Rasterise ragged tracks into fixed-size images.

    Parameters
    ----------
    offsets : (N + 1,) int
        Event boundaries in the pixel arrays.
    col, row, charge : (M,) arrays
        Pixel offset coordinates and charges (electrons).
    config : ImageConfig
        Representation, crop size and charge scale.
    symmetry : int or (N,) int array, optional
        Lattice symmetry applied to each track (0 = identity; see module docstring).
    centres : dict, optional
        Output of :func:`track_centres` (computed when not given).

    Returns
    -------
    images : (N, 1, H, W) float32
    centres : dict
        The crop centres (pixel and mm).
    """
    offsets = np.asarray(offsets, np.int64)
    charge = np.asarray(charge, np.float64)
    n = len(offsets) - 1
    if charge.size and not np.all(np.isfinite(charge)):
        raise InputError("charge: expected finite pixel charges, found NaN or inf")
    if centres is None:
        centres = track_centres(offsets, col, row, charge, config, grid)
    sym = np.zeros(n, np.int64) if symmetry is None else np.broadcast_to(
        np.asarray(symmetry, np.int64), (n,)).copy()
    if sym.size and (sym.min() < 0 or sym.max() >= N_SYMMETRIES):
        raise InputError(f"symmetry: expected integers in [0, {N_SYMMETRIES})")
    images = np.zeros((n,) + config.shape, np.float32)
    _rasterise(offsets, np.asarray(col, np.int64), np.asarray(row, np.int64), charge,
               centres["col"], centres["row"], sym, SYMMETRY_MATRICES, config.size,
               config.representation == "cartesian", config.charge_scale, images)
    return images, centres
