r"""Source-level training data: one row per true source of a patch file, as network inputs
(cut-outs around a detector-like starting position) and targets.

The per-source networks of seed 002 (position refinement and flux, extension class, AGN /
pulsar class) see a cut-out of the counts around the position a detector would give: the
LoG / k-means centre of the U-Net's map.  Here that position is simulated as the truth plus
a Gaussian jitter (:attr:`CutoutConfig.jitter_pix` per axis), redrawn at every epoch when
training and fixed (drawn once from :attr:`CutoutConfig.jitter_seed`) for validation, so
that a validation loss is reproducible.

Inputs (:func:`source_inputs`, float32), per source:

- ``image`` ``(3 E + 1, S, S)``: the cut-out of ``S = size`` pixels centred on the starting
  position (:func:`~astroreco.detectors.sky.cutouts.cutouts`), per energy bin ``e``
  three channels (channel ``3 e + k``):

  .. math::
      z = \operatorname{asinh}\frac{N - B}{\sqrt{B + 1}}, \qquad
      \log(1 + N), \qquad \log(1 + B)

  (``N`` counts, ``B`` the background model): the excess in units of its Poisson noise,
  compressed by ``asinh`` so that faint (``z ~ 1``) and bright (``z ~ 100``) sources are
  both well scaled; the counts and the background level on a log scale.  The last channel
  is 1 inside the map and 0 outside (a cut-out at the border is zero-filled there).
- ``offset`` ``(2,)``: the starting position minus the cut-out's centre pixel,
  ``[-0.5, 0.5]`` pixel per axis.
- ``aperture`` ``(E,)``: :math:`\operatorname{asinh}\sum (N - B)` over the cut-out in each
  energy bin (the excess counts, on a log-like scale: an aperture photometry the flux
  head starts from).

Targets (``task``):

- ``refine``: ``(3,)`` float32, ``(dx, dy)`` of the true position from the starting
  position in pixels, and ``log10(S / 1e-10 ph cm^-2 s^-1)`` (``S`` = S(1-100 GeV)).
- ``extension``: the extension class 0/1/2 (int64); ``class``: 0 AGN / 1 pulsar (int64),
  with the extra input ``cube`` ``(T, E, S, S)``: the excess significance per time bin
  (:func:`time_cutouts`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import numpy as np

from astroreco.detectors.sky.cutouts import cutouts
from astroreco.errors import InputError

__all__ = ["CutoutConfig", "CUTOUT_VIEWS", "FLUX_UNIT", "SOURCE_TASKS", "SourceRows",
           "batch_inputs", "cutout_view", "source_inputs", "time_cutouts"]

#: unit of the flux target: ``log10(S / FLUX_UNIT)`` (ph cm^-2 s^-1)
FLUX_UNIT = 1e-10
#: what a :class:`SourceRows` can give as ``target``
SOURCE_TASKS = ("refine", "extension", "class")
_TRUTH = ("x_pix", "y_pix", "in_patch", "flux", "ext_class", "cls")


@dataclass
class CutoutConfig:
    """Cut-outs and source selection of the per-source networks.

    Attributes
    ----------
    size : int
        Cut-out width in pixels (even: the starting position is in pixel ``size // 2``).
    jitter_pix : float
        Standard deviation (pixels, per axis) of the starting position around the truth.
    min_flux, max_flux : float
        Sources with ``min_flux <= S(1-100 GeV) < max_flux`` (ph cm^-2 s^-1) are used; the
        default 1e-10 keeps the ones a detector can find (see PHYSICS.md, sky).
    jitter_seed : int
        Seed of the fixed validation jitter.
    dihedral : bool
        Augment in training with the 8 symmetries of the square pixel grid
        (:func:`cutout_view`: reflections about the start pixel and the transpose), one drawn
        per source and epoch; a classifier then also averages its probabilities over the
        8 views when it predicts.  The sky has no preferred orientation on the scale of a
        cut-out, so an extension or class is the same in every view.
    """

    size: int = 16
    jitter_pix: float = 0.5
    min_flux: float = 1e-10
    max_flux: float = float("inf")
    jitter_seed: int = 12345
    dihedral: bool = False

    def __post_init__(self):
        if self.max_flux is None:   # JSON has no infinity
            self.max_flux = float("inf")
        if isinstance(self.size, bool) or int(self.size) != self.size or self.size < 4:
            raise InputError(f"size: expected an integer >= 4, got {self.size!r}")
        self.size = int(self.size)
        if not isinstance(self.dihedral, (bool, np.bool_)):
            raise InputError(f"dihedral: expected true or false, got {self.dihedral!r}")
        self.dihedral = bool(self.dihedral)
        if not (np.isfinite(self.jitter_pix) and self.jitter_pix >= 0):
            raise InputError(f"jitter_pix: expected a finite value >= 0, got {self.jitter_pix}")
        if not (self.min_flux >= 0 and self.max_flux > self.min_flux):
            raise InputError(f"min_flux, max_flux: expected 0 <= min_flux < max_flux, got "
                             f"{self.min_flux}, {self.max_flux}")

    def to_dict(self) -> dict:
        """JSON-able: tuples as lists, an infinite ``max_flux`` as None."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        d["max_flux"] = None if math.isinf(self.max_flux) else self.max_flux
        return d

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of :meth:`to_dict`; one-line error for unknown entries."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"{cls.__name__}: unknown entries {unknown}")
        d = dict(d)
        if d.get("max_flux", 0.0) is None:
            d["max_flux"] = float("inf")
        return cls(**d)


#: the 8 symmetries of the square grid: bit 0 reflects x (columns), bit 1 reflects y (rows),
#: bit 2 then swaps x and y
CUTOUT_VIEWS = tuple(range(8))


def _reflect(a: np.ndarray, axis: int) -> np.ndarray:
    # index i -> S - i (mod S): the reflection about the start pixel S // 2
    return np.roll(np.flip(a, axis), 1, axis)


def cutout_view(inputs: dict, k) -> dict:
    """The inputs of :func:`source_inputs` (and ``cube``, a ``refine`` target's ``(dx,
    dy)``) seen in symmetry ``k`` of :data:`CUTOUT_VIEWS`, one per source (an int: all).

    The cut-outs are reflected about the start pixel (``size // 2``), so the start stays
    where the network expects it; the sub-pixel ``offset`` and a position target change
    sign or swap with the axes.  The first row and column of a cut-out have no mirror
    inside it: every view, the identity (``k = 0``) too, has them set to 0 and the
    ``aperture`` sums lose their excess, so that the 8 views are exactly those of the map.
    """
    if "image" not in inputs:
        raise InputError("inputs: expected the 'image' cut-outs of source_inputs")
    n, size = inputs["image"].shape[0], inputs["image"].shape[-1]
    if size % 2:
        raise InputError(f"image: the views reflect about the start pixel size // 2, which "
                         f"needs an even cut-out size, got {size}")
    k_in = np.asarray(k)
    if k_in.dtype.kind not in "iu" or k_in.ndim > 1 or (k_in.ndim == 1 and k_in.size != n):
        raise InputError(f"k: expected an integer or {n} integers (one per source), got "
                         f"{k_in.dtype} of shape {k_in.shape}")
    k = np.broadcast_to(k_in.astype(np.int64), (n,))
    if np.any((k < 0) | (k > 7)):
        raise InputError(f"k: expected symmetries 0..7, got {np.unique(k)}")
    out = {key: np.array(value, copy=True) for key, value in inputs.items()}
    if "aperture" in out:
        # the excess N - B on the first row and column, from the log(1 + N), log(1 + B)
        # channels of each energy bin (source_inputs)
        img = out["image"]
        edge = np.concatenate([img[:, :-1, 0, :], img[:, :-1, 1:, 0]], axis=-1)
        e = out["aperture"].shape[1]
        excess = (np.expm1(edge[:, 1:3 * e:3].astype(np.float64))
                  - np.expm1(edge[:, 2:3 * e:3].astype(np.float64))).sum(-1)
        out["aperture"] = np.arcsinh(np.sinh(out["aperture"].astype(np.float64))
                                     - excess).astype(inputs["aperture"].dtype)
    vectors = [key for key in ("offset", "target") if key in out and out[key].ndim == 2
               and out[key].shape[1] >= 2 and out[key].dtype.kind == "f"]
    for g in np.unique(k):
        idx = np.flatnonzero(k == g)
        for key in ("image", "cube"):
            if key not in out:
                continue
            a = out[key][idx]
            if g & 1:
                a = _reflect(a, -1)
            if g & 2:
                a = _reflect(a, -2)
            if g & 4:
                a = np.swapaxes(a, -1, -2)
            out[key][idx] = a
        for key in ("image", "cube"):
            if key in out:
                out[key][..., 0, :] = 0.0
                out[key][..., :, 0] = 0.0
        for key in vectors:
            v = out[key][idx, :2]
            if g & 1:
                v[:, 0] = -v[:, 0]
            if g & 2:
                v[:, 1] = -v[:, 1]
            if g & 4:
                v = v[:, ::-1]
            out[key][idx, :2] = v
    return out


def _check_cube(name, a, ndim) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim or min(a.shape) == 0:
        what = "(E, H, W)" if ndim == 3 else "(n, E, H, W)"
        raise InputError(f"{name}: expected an array {what}, got shape {a.shape}")
    return a


def source_inputs(counts, background, x_pix, y_pix, size: int) -> dict:
    """Network inputs of the sources at ``(x_pix, y_pix)`` of one patch (module docstring).

    Parameters
    ----------
    counts, background : array (E, H, W)
        Counts and expected background counts of the patch.
    x_pix, y_pix : array (k,)
        Starting positions (0-based column and row).
    size : int
        Cut-out width in pixels.

    Returns
    -------
    dict
        ``image`` ``(k, 3 E + 1, size, size)``, ``offset`` ``(k, 2)``, ``aperture``
        ``(k, E)``, float32.
    """
    counts = _check_cube("counts", counts, 3)
    background = _check_cube("background", background, 3)
    if counts.shape != background.shape:
        raise InputError(f"background: shape {background.shape}, expected the counts' "
                         f"shape {counts.shape}")
    c, off = cutouts(counts.astype(np.float32), x_pix, y_pix, size)     # (k, E, S, S)
    b, _ = cutouts(background.astype(np.float32), x_pix, y_pix, size)   # (k, E, S, S)
    inside, _ = cutouts(np.ones(counts.shape[-2:], np.float32), x_pix, y_pix, size)
    b = np.clip(b, 0.0, None)
    z = np.arcsinh((c - b) / np.sqrt(b + 1.0))
    k, e = c.shape[:2]
    image = np.stack([z, np.log1p(np.clip(c, 0, None)), np.log1p(b)], axis=2)  # (k, E, 3, S, S)
    image = image.reshape(k, 3 * e, size, size)
    image = np.concatenate([image, inside[:, None]], axis=1)           # (k, 3E + 1, S, S)
    aperture = np.arcsinh((c - b).sum(axis=(2, 3)))                    # (k, E)
    return {"image": image.astype(np.float32), "offset": off.astype(np.float32),
            "aperture": aperture.astype(np.float32)}


def batch_inputs(counts, background, patch, x_pix, y_pix, size: int) -> dict:
    """:func:`source_inputs` for sources spread over several patches.

    ``counts``, ``background`` ``(n, E, H, W)``; ``patch`` ``(k,)`` the row of each
    source's patch; ``x_pix``, ``y_pix`` ``(k,)``.  Rows come back in the sources' order.
    """
    counts = _check_cube("counts", counts, 4)
    background = _check_cube("background", background, 4)
    patch = np.asarray(patch, np.int64).reshape(-1)
    x = np.asarray(x_pix, np.float64).reshape(-1)
    y = np.asarray(y_pix, np.float64).reshape(-1)
    if not (patch.shape == x.shape == y.shape):
        raise InputError(f"patch, x_pix, y_pix: expected equal lengths, got {patch.size}, "
                         f"{x.size}, {y.size}")
    if patch.size and (patch.min() < 0 or patch.max() >= len(counts)):
        raise InputError(f"patch: rows expected in 0..{len(counts) - 1}, got "
                         f"{patch.min()}..{patch.max()}")
    e, s = counts.shape[1], int(size)
    out = {"image": np.zeros((x.size, 3 * e + 1, s, s), np.float32),
           "offset": np.zeros((x.size, 2), np.float32),
           "aperture": np.zeros((x.size, e), np.float32)}
    for p in np.unique(patch):
        idx = np.flatnonzero(patch == p)
        part = source_inputs(counts[p], background[p], x[idx], y[idx], s)
        for key, value in part.items():
            out[key][idx] = value
    return out


class SourceRows:
    """The selected true sources of patches ``[start_patch, stop_patch)`` of a patch file,
    as an :class:`~astroreco.training.data.EventSource` (one event = one source).

    A source is kept when it lies inside the map (``in_patch``) and its flux passes
    ``cfg``'s selection.  Sources are ordered by patch, so the rows ``[a, b)`` of
    :meth:`load` need only the patches from the one of row ``a`` to the one of row
    ``b - 1``: only those are read.

    Parameters
    ----------
    path : path-like
        Patch file (:func:`~astroreco.detectors.sky.pipeline.simulate`).
    start_patch, stop_patch : int
        Patch range (``stop_patch`` None: to the end).
    cfg : CutoutConfig
        Or any object with its attributes (e.g. a ``RefineConfig``).
    task : str
        The ``target`` returned, one of :data:`SOURCE_TASKS`.
    cube : bool, optional
        Also return ``cube``, the :func:`time_cutouts` (default: for task ``class``).

    Attributes
    ----------
    n_events : int
        Selected sources.
    patch : np.ndarray (n_events,)
        Each source's patch, relative to ``start_patch``.
    x_pix, y_pix, log_flux, ext_class, cls : np.ndarray (n_events,)
        Their truth (``log_flux`` = ``log10(S / FLUX_UNIT)``).
    val_jitter : np.ndarray (n_events, 2)
        The fixed jitter used when ``load`` gets no generator.
    """

    def __init__(self, path, start_patch: int = 0, stop_patch: int | None = None,
                 cfg: CutoutConfig | None = None, *, task: str = "refine",
                 cube: bool | None = None):
        from astroreco.detectors.sky.pipeline import PATCH_SCHEMA, config_of
        from astroreco.io.store import EventFile

        cfg = cfg or CutoutConfig()
        if task not in SOURCE_TASKS:
            raise InputError(f"task {task!r}: expected one of {', '.join(SOURCE_TASKS)}")
        with EventFile(path, PATCH_SCHEMA) as ef:
            n = ef.n_events
            stop_patch = n if stop_patch is None else stop_patch
            if not (0 <= start_patch < stop_patch <= n):
                raise InputError(f"{path}: patches {start_patch}:{stop_patch} outside the "
                                 f"file's {n} patches")
            if not ef.has_truth_objects:
                raise InputError(f"{path}: no source truth (/truth_objects): not a "
                                 f"simulated patch file")
            offsets, t = ef.truth_objects(list(_TRUTH), start_patch, stop_patch)
        self.n_time_bins = int(config_of(path).n_time_bins)
        h, w = config_of(path).geometry.shape
        patch = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        flux = np.asarray(t["flux"], np.float64)
        x, y = np.asarray(t["x_pix"], np.float64), np.asarray(t["y_pix"], np.float64)
        keep = (np.asarray(t["in_patch"], bool) & (flux >= cfg.min_flux)
                & (flux < cfg.max_flux) & (x >= -0.5) & (x <= w - 0.5)
                & (y >= -0.5) & (y <= h - 0.5))
        self.path, self.start_patch, self.stop_patch = str(path), int(start_patch), \
            int(stop_patch)
        self.size, self.jitter_pix, self.task = int(cfg.size), float(cfg.jitter_pix), task
        self.dihedral = bool(getattr(cfg, "dihedral", False))
        self.patch = patch[keep]
        self.x_pix, self.y_pix = x[keep], y[keep]
        self.log_flux = np.log10(flux[keep] / FLUX_UNIT)
        self.ext_class = np.asarray(t["ext_class"], np.int64)[keep]
        self.cls = np.asarray(t["cls"], np.int64)[keep]
        self.n_events = int(keep.sum())
        self.val_jitter = np.random.default_rng(int(cfg.jitter_seed)).normal(
            0.0, self.jitter_pix, (self.n_events, 2))
        self.cube = task == "class" if cube is None else bool(cube)
        if self.cube and not self.n_time_bins:
            raise InputError(f"{path}: the time cubes of task 'class' need time bins "
                             f"(simulate with n_time_bins > 0)")

    def __len__(self) -> int:
        return self.n_events

    def starts(self, rows: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """``(k, 2)`` starting positions ``(x, y)`` of source ``rows``: truth + jitter (the
        fixed validation jitter when ``rng`` is None)."""
        rows = np.asarray(rows, np.int64)
        jitter = self.val_jitter[rows] if rng is None else \
            rng.normal(0.0, self.jitter_pix, (rows.size, 2))
        return np.stack([self.x_pix[rows], self.y_pix[rows]], 1) + jitter

    def load(self, start: int, stop: int, rows: np.ndarray | None = None,
             rng: np.random.Generator | None = None) -> dict:
        """Inputs and ``target`` of sources ``start + rows`` (all of ``[start, stop)`` when
        ``rows`` is None); a fresh jitter from ``rng`` when given, and then, with
        ``cfg.dihedral``, a random symmetry (:func:`cutout_view`) per source (without
        ``rng``: the identity view)."""
        from astroreco.detectors.sky.pipeline import read_patches

        if not (0 <= start < stop <= self.n_events):
            raise InputError(f"{self.path}: source rows {start}:{stop} outside 0:"
                             f"{self.n_events}")
        idx = start + (np.arange(stop - start) if rows is None else np.asarray(rows, np.int64))
        p0, p1 = int(self.patch[idx].min()), int(self.patch[idx].max()) + 1
        data = read_patches(self.path, self.start_patch + p0, self.start_patch + p1)
        pos = self.starts(idx, rng)
        local = self.patch[idx] - p0
        inputs = batch_inputs(data.counts, data.background, local, pos[:, 0], pos[:, 1],
                              self.size)
        if self.cube:
            inputs["cube"] = time_cutouts(data.time_counts, local, pos[:, 0], pos[:, 1],
                                          self.size, data.background)
        if self.task == "refine":
            truth = np.stack([self.x_pix[idx], self.y_pix[idx]], 1)
            inputs["target"] = np.concatenate([truth - pos, self.log_flux[idx, None]],
                                              1).astype(np.float32)
        elif self.task == "extension":
            inputs["target"] = self.ext_class[idx].copy()
        else:
            inputs["target"] = self.cls[idx].copy()
        if self.dihedral:   # validation: the identity view, its edge blanked as in training
            inputs = cutout_view(inputs, 0 if rng is None else
                                 rng.integers(0, len(CUTOUT_VIEWS), idx.size))
        return inputs


def time_cutouts(time_counts, patch, x_pix, y_pix, size: int, background=None
                 ) -> np.ndarray:
    r"""``(k, T, E, size, size)`` float32 cut-outs of the counts per time bin around each
    source.

    With the background model ``background`` ``(n, E, H, W)`` (expected counts over the
    whole observation, spread evenly over the ``T`` time bins as in the simulation), the
    excess significance per time bin, :math:`\operatorname{asinh}((N_t - B/T) /
    \sqrt{B/T + 1})`; without it, :math:`\log(1 + N_t)`.

    Parameters
    ----------
    time_counts : array (n, T, E, H, W)
    patch : array (k,)
        Row of each source's patch.
    x_pix, y_pix : array (k,)
        Cut-out centres.
    """
    tc = np.asarray(time_counts)
    if tc.ndim != 5:
        raise InputError(f"time_counts: expected an array (n, T, E, H, W), got shape "
                         f"{tc.shape}")
    if background is not None:
        background = np.asarray(background)
        if background.shape != tc.shape[:1] + tc.shape[2:]:
            raise InputError(f"background: shape {background.shape}, expected (n, E, H, W) "
                             f"= {tc.shape[:1] + tc.shape[2:]} of the time counts")
    patch = np.asarray(patch, np.int64).reshape(-1)
    x = np.asarray(x_pix, np.float64).reshape(-1)
    y = np.asarray(y_pix, np.float64).reshape(-1)
    n_t = tc.shape[1]
    out = np.zeros((x.size,) + tc.shape[1:3] + (size, size), np.float32)
    for p in np.unique(patch):
        idx = np.flatnonzero(patch == p)
        win, _ = cutouts(tc[p].astype(np.float32), x[idx], y[idx], size)   # (k, T, E, S, S)
        if background is None:
            out[idx] = np.log1p(np.clip(win, 0, None))
            continue
        b, _ = cutouts(np.clip(background[p], 0, None).astype(np.float32) / n_t, x[idx],
                       y[idx], size)                                       # (k, E, S, S)
        out[idx] = np.arcsinh((win - b[:, None]) / np.sqrt(b[:, None] + 1.0))
    return out
