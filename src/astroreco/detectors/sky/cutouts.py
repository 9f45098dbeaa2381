"""Square cut-outs of a counts cube around source positions (inputs of the per-source
networks: position refinement, flux, extension and class).

A cut-out of ``size`` pixels is centred on the pixel nearest to the position (for an even
``size``, the centre pixel is ``size // 2``); the part outside the map is zero.  The
sub-pixel offset of the position from that centre pixel is returned with the cut-outs, so
a network that refines a position predicts ``truth - (centre + offset)`` or the absolute
offset, whichever it is trained on.
"""

from __future__ import annotations

import numpy as np

from astroreco.errors import InputError

__all__ = ["cutouts"]


def cutouts(cube, x_pix, y_pix, size: int, *, fill: float = 0.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``size x size`` pixels of ``cube`` around each position.

    Parameters
    ----------
    cube : array (..., H, W)
        Any leading axes (energy bins, time bins x energy bins) are kept.
    x_pix, y_pix : array (n,)
        0-based column and row of each position (numpy / astropy convention: pixel ``i``
        spans ``i - 0.5 .. i + 0.5``).  Positions outside the map are allowed (the
        cut-out is then mostly ``fill``).
    size : int
        Cut-out width in pixels, at least 1.
    fill : float
        Value outside the map.

    Returns
    -------
    windows : np.ndarray (n, ..., size, size)
        Same dtype as ``cube``.
    offsets : np.ndarray (n, 2) float64
        ``(x - cx, y - cy)`` of each position from its window's centre pixel, in
        ``[-0.5, 0.5]``; the centre pixel ``(size // 2, size // 2)`` of the window is
        pixel ``(cx, cy)`` of the map.
    """
    cube = np.asarray(cube)
    if cube.ndim < 2 or cube.shape[-1] == 0 or cube.shape[-2] == 0:
        raise InputError(f"cube: expected an array (..., H, W), got shape {cube.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"size: expected an integer >= 1, got {size!r}")
    x = np.asarray(x_pix, np.float64).reshape(-1)
    y = np.asarray(y_pix, np.float64).reshape(-1)
    if x.shape != y.shape:
        raise InputError(f"x_pix, y_pix: expected equal lengths, got {x.size} and {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("x_pix, y_pix: NaN or infinite positions")
    h, w = cube.shape[-2:]
    cx, cy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    half = int(size) // 2
    pad = int(size) + 1
    widths = [(0, 0)] * (cube.ndim - 2) + [(pad, pad), (pad, pad)]
    padded = np.pad(cube, widths, constant_values=fill)
    # clip the corners into the padded map; a position further out than the padding gets
    # the window of the nearest covered place, which is all fill anyway
    r0 = np.clip(cy - half + pad, 0, h + 2 * pad - size)
    c0 = np.clip(cx - half + pad, 0, w + 2 * pad - size)
    rows = r0[:, None] + np.arange(size)  # (n, size)
    cols = c0[:, None] + np.arange(size)
    windows = padded[..., rows[:, :, None], cols[:, None, :]]  # (..., n, size, size)
    windows = np.moveaxis(windows, -3, 0)
    far = (cy - half + pad != r0) | (cx - half + pad != c0)
    if far.any():
        windows[far] = fill
    offsets = np.stack([x - cx, y - cy], axis=1)
    return np.ascontiguousarray(windows), offsets
