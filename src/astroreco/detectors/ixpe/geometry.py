"""Readout geometry of the Gas Pixel Detector: a grid of pointy-topped hexagonal pixels.

The ASIC has 300 columns x 352 rows of hexagons with a 50 um pitch and a 43.30 um row
spacing; odd rows are shifted by half a pitch.  Pixel centres (mm), with y pointing up::

    x = (col - 0.5 * (row & 1)) * 0.05 - 7.4625
    y = 7.59915 - row * 0.0433

All functions are vectorised over numpy arrays and have numba twins for the hot loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

N_COLS = 300
N_ROWS = 352
PITCH_MM = 0.05
ROW_PITCH_MM = 0.0433
X_OFFSET_MM = -7.4625
Y_OFFSET_MM = 7.59915


@dataclass(frozen=True)
class HexGrid:
    """The pixel layout (defaults: the IXPE ASIC)."""

    n_cols: int = N_COLS
    n_rows: int = N_ROWS
    pitch_mm: float = PITCH_MM
    row_pitch_mm: float = ROW_PITCH_MM
    x_offset_mm: float = X_OFFSET_MM
    y_offset_mm: float = Y_OFFSET_MM

    def centre(self, col, row):
        """Pixel centres (mm) of integer (col, row) arrays; returns (x, y)."""
        col = np.asarray(col)
        row = np.asarray(row)
        x = (col - 0.5 * (row & 1)) * self.pitch_mm + self.x_offset_mm
        y = self.y_offset_mm - row * self.row_pitch_mm
        return x, y

    def pixel(self, x, y):
        """Nearest pixel (col, row) of points (x, y) in mm: the hexagon containing them.

        Points outside the ASIC get the nearest pixel of the unbounded lattice; use
        :meth:`contains` to test whether it exists.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        col = np.empty(np.shape(x), dtype=np.int64)
        row = np.empty(np.shape(x), dtype=np.int64)
        _pixel_of_points(x.ravel(), y.ravel(), col.reshape(-1), row.reshape(-1),
                         self.pitch_mm, self.row_pitch_mm, self.x_offset_mm, self.y_offset_mm)
        return col, row

    def contains(self, col, row):
        """True where (col, row) is a pixel of the ASIC."""
        col = np.asarray(col)
        row = np.asarray(row)
        return (col >= 0) & (col < self.n_cols) & (row >= 0) & (row < self.n_rows)

    @property
    def extent_mm(self):
        """(xmin, xmax, ymin, ymax) of the pixel centres."""
        x0, y0 = self.centre(0, 0)
        x1, y1 = self.centre(self.n_cols - 1, self.n_rows - 1)
        return float(x0 - 0.5 * self.pitch_mm), float(x1), float(y1), float(y0)


IXPE_GRID = HexGrid()


@numba.njit(cache=True, inline="always")
def nearest_pixel(x, y, pitch, row_pitch, x_off, y_off):
    """Nearest hexagon centre to (x, y): the nearest of the two bracketing rows' candidates.

    Rows are lines of centres; the nearest centre lies in one of the two rows around y,
    and within a row the nearest centre is the rounded column.
    """
    rf = (y_off - y) / row_pitch
    r0 = np.int64(np.floor(rf))
    best_c = np.int64(0)
    best_r = np.int64(0)
    best_d2 = np.inf
    for r in (r0, r0 + 1):
        shift = 0.5 * (r & 1)
        c = np.int64(np.floor((x - x_off) / pitch + shift + 0.5))
        cx = (c - shift) * pitch + x_off
        cy = y_off - r * row_pitch
        d2 = (x - cx) ** 2 + (y - cy) ** 2
        if d2 < best_d2:
            best_d2 = d2
            best_c = c
            best_r = r
    return best_c, best_r


@numba.njit(cache=True)
def _pixel_of_points(x, y, col, row, pitch, row_pitch, x_off, y_off):
    for i in range(x.shape[0]):
        c, r = nearest_pixel(x[i], y[i], pitch, row_pitch, x_off, y_off)
        col[i] = c
        row[i] = r


def neighbours(col, row):
    """The six hexagonal neighbours (col, row) of one pixel, in offset coordinates."""
    shift = -(row & 1)  # odd rows are shifted half a pitch to the left (-x)
    return [
        (col - 1, row), (col + 1, row),
        (col + shift, row - 1), (col + shift + 1, row - 1),
        (col + shift, row + 1), (col + shift + 1, row + 1),
    ]
