"""Isotropic 3D arrows in the TPC voxel grid: the seed paper's "simple case" (seed 001, App. B).

An arrow is a solid of revolution of constant shape and uniform density: a cylindrical shaft
followed by a cone (the head), pointing from the tail to the tip of the cone.  Per event:

1. a direction is drawn uniformly on the sphere (the rotated +z of a uniform random
   rotation, as for the recoils, :func:`~astroreco.detectors.tpc.simulate.random_rotation`);
2. the arrow is placed so that the centre of mass of the continuous solid is at the grid
   centre (the recoils' centre-of-charge convention);
3. every voxel whose centre lies inside the solid gets the value 1.0 (uniform density).

The events use the TPC event format (:data:`~astroreco.detectors.tpc.pipeline.EVENT_SCHEMA`)
so :func:`~astroreco.detectors.tpc.pipeline.read_voxels`, the reconstructions and the
training code read them unchanged; the file's ``config`` says ``"source": "arrows"``.
Event ``k`` depends only on ``(seed, k)``.

Coordinates: voxel ``i`` spans ``[i, i + 1)`` voxels, i.e. ``[i, i + 1) * 0.05`` cm in the
grid frame; its centre is at ``i + 0.5``.

Examples
--------
>>> batch = make_arrows(3, seed=1)
>>> len(batch), batch.coords.shape[1], float(batch.values.max())
(3, 3, 1.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from astroreco.detectors.tpc.simulate import (TRUTH_FIELDS, RecoilBatch, TpcConfig,
                                              random_rotation)
from astroreco.errors import InputError
from astroreco.io.store import check_output_path

#: SeedSequence tag of the arrows' per-event streams (the recoils use 7 and 11)
_STREAM_TAG = 17


@dataclass(frozen=True)
class ArrowShape:
    """Shape of the arrows, in voxels (500 um in the seed's 120^3 grid).

    The default arrow is 40 voxels (2 cm) long: a shaft 28 long of radius 2.5 and a head 12
    long of base radius 6, about 1000 voxels in all.  The head carries the head-tail
    information: the centre of mass is 21.7 voxels from the tail and 18.3 from the tip, and
    the voxels' third moment along the direction is negative (standardised skewness about
    -0.55: a dense head, a long thin tail behind it).

    Attributes
    ----------
    shaft_length, shaft_radius : float
        The cylinder, from the tail (voxels).  ``shaft_radius >= 1`` and
        ``shaft_length >= 2`` guarantee at least one voxel centre in every orientation.
    head_length, head_radius : float
        The cone: base radius at the end of the shaft, tip ``head_length`` further on
        (voxels); ``head_radius > shaft_radius``.
    """

    shaft_length: float = 28.0
    shaft_radius: float = 2.5
    head_length: float = 12.0
    head_radius: float = 6.0

    def __post_init__(self):
        for name, low in (("shaft_length", 2.0), ("shaft_radius", 1.0), ("head_length", 1.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.number)) and np.isfinite(v) and v >= low):
                raise InputError(f"ArrowShape.{name}: expected a number >= {low:g} voxels, "
                                 f"got {v!r}")
        r = self.head_radius
        if not (isinstance(r, (int, float, np.number)) and np.isfinite(r)
                and r > self.shaft_radius):
            raise InputError(f"ArrowShape.head_radius: expected a number > shaft_radius "
                             f"({self.shaft_radius:g} voxels), got {r!r}")

    @property
    def length(self) -> float:
        """Tail to tip (voxels)."""
        return self.shaft_length + self.head_length

    @property
    def volume(self) -> float:
        r"""Volume of the solid (voxels^3): :math:`\pi R_s^2 L_s + \pi R_h^2 L_h / 3`."""
        return np.pi * (self.shaft_radius ** 2 * self.shaft_length
                        + self.head_radius ** 2 * self.head_length / 3.0)

    @property
    def centroid(self) -> float:
        r"""Distance from the tail to the centre of mass along the axis (voxels).

        .. math:: u_c = \frac{V_s L_s / 2 + V_h (L_s + L_h / 4)}{V_s + V_h}

        (a cone's centre of mass is a quarter of its height above its base).
        """
        v_s = np.pi * self.shaft_radius ** 2 * self.shaft_length
        v_h = np.pi * self.head_radius ** 2 * self.head_length / 3.0
        return (v_s * self.shaft_length / 2
                + v_h * (self.shaft_length + self.head_length / 4)) / (v_s + v_h)

    @property
    def reach(self) -> float:
        """Largest distance from the centre of mass to a point of the solid (voxels)."""
        u_c = self.centroid
        return max(np.hypot(u_c, self.shaft_radius),                           # tail rim
                   np.hypot(self.shaft_length - u_c, self.head_radius),       # head base rim
                   self.length - u_c)                                           # tip

    def to_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


def _check_index(name, value, low=0):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise InputError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def arrow_voxels(direction, shape: ArrowShape, grid_size: int = 120):
    """Voxels of one arrow whose centre of mass is at the grid centre.

    Parameters
    ----------
    direction : (3,) array
        Unit vector, tail -> tip.
    shape : ArrowShape
    grid_size : int
        Voxels per side.

    Returns
    -------
    coords : (n, 3) int16
        Voxel indices, unique, sorted (C order).
    tail : (3,) float
        Centre of the tail disc in the grid frame (voxels).
    """
    d = np.asarray(direction, np.float64)
    tail = 0.5 * grid_size - shape.centroid * d                       # (3,) voxels
    base = tail + shape.shaft_length * d
    tip = tail + shape.length * d
    # axis-aligned box of the solid: the rims of the two discs and the tip
    rim = np.sqrt(np.clip(1.0 - d * d, 0.0, None))                    # (3,)
    lo = np.minimum.reduce([tail - shape.shaft_radius * rim, base - shape.head_radius * rim,
                            tip])
    hi = np.maximum.reduce([tail + shape.shaft_radius * rim, base + shape.head_radius * rim,
                            tip])
    i0 = np.maximum(np.floor(lo - 0.5).astype(np.int64), 0)          # first voxel per axis
    i1 = np.minimum(np.ceil(hi - 0.5).astype(np.int64) + 1, grid_size)  # one past the last
    # voxel centres relative to the tail, per axis
    x = np.arange(i0[0], i1[0]) + 0.5 - tail[0]                       # (nx,)
    y = np.arange(i0[1], i1[1]) + 0.5 - tail[1]                       # (ny,)
    z = np.arange(i0[2], i1[2]) + 0.5 - tail[2]                       # (nz,)
    u = (x[:, None, None] * d[0] + y[None, :, None] * d[1]
         + z[None, None, :] * d[2])                                    # (nx, ny, nz) along axis
    r2 = (x[:, None, None] ** 2 + y[None, :, None] ** 2 + z[None, None, :] ** 2
          - u * u)                                                     # squared distance to axis
    l_s, l_h = shape.shaft_length, shape.head_length
    shaft = (u >= 0) & (u <= l_s) & (r2 <= shape.shaft_radius ** 2)
    cone_r = shape.head_radius * (shape.length - u) / l_h              # cone radius at u
    head = (u >= l_s) & (u <= shape.length) & (r2 <= cone_r ** 2)
    ii, jj, kk = np.nonzero(shaft | head)                              # C order: sorted
    coords = np.stack([ii + i0[0], jj + i0[1], kk + i0[2]], axis=1).astype(np.int16)
    return coords, tail


def make_arrows(n_events: int, *, seed: int, first: int = 0, shape: ArrowShape = ArrowShape(),
                grid_size: int = 120, progress=None) -> RecoilBatch:
    """Arrows ``first .. first + n_events - 1`` of run ``seed``, as sparse voxels and truth.

    Parameters
    ----------
    n_events : int
        Arrows to make (all are contained: the shape is checked against the grid).
    seed, first : int
        Run seed and index of the first event; event ``k`` depends only on ``(seed, k)``.
    shape : ArrowShape
        Arrow dimensions (voxels).
    grid_size : int
        Voxels per side; 500 um voxels.
    progress : callable, optional
        Called with the number of events done since the last call.

    Returns
    -------
    RecoilBatch
        ``coords`` (n_voxels, 3) int16, ``values`` 1.0 (float32), ``truth`` with the TPC
        truth fields: ``dir_*`` tail -> tip, ``start_*_cm`` the tail centre (grid frame),
        ``length_cm`` tail to tip, ``n_electrons`` the voxels of the arrow,
        ``energy_kev`` NaN, ``sigma_um`` 0.
    """
    n_events = _check_index("n_events", n_events)
    seed = _check_index("seed", seed)
    first = _check_index("first", first)
    if not isinstance(shape, ArrowShape):
        raise InputError(f"shape: expected an ArrowShape, got {type(shape).__name__}")
    grid_size = _check_index("grid_size", grid_size, low=2)
    voxel_cm = TpcConfig(grid_size=grid_size).voxel_cm  # validates grid_size
    if shape.reach >= 0.5 * grid_size:
        raise InputError(f"ArrowShape: reaches {shape.reach:.1f} voxels from its centre of "
                         f"mass, does not fit in the {grid_size}^3 grid (half-width "
                         f"{0.5 * grid_size:g})")
    coords, offsets = [], [0]
    truth = {name: np.empty(n_events, dtype) for name, dtype, *_ in TRUTH_FIELDS}
    for m in range(n_events):
        index = first + m
        gen = np.random.default_rng(np.random.SeedSequence([seed, index, _STREAM_TAG]))
        direction = random_rotation(gen)[:, 2]
        c, tail = arrow_voxels(direction, shape, grid_size)
        coords.append(c)
        offsets.append(offsets[-1] + len(c))
        start = tail * voxel_cm
        for name, v in (("event_id", index), ("energy_kev", np.nan), ("sigma_um", 0.0),
                        ("dir_x", direction[0]), ("dir_y", direction[1]),
                        ("dir_z", direction[2]), ("start_x_cm", start[0]),
                        ("start_y_cm", start[1]), ("start_z_cm", start[2]),
                        ("n_electrons", len(c)), ("length_cm", shape.length * voxel_cm)):
            truth[name][m] = v
        if progress is not None and (m + 1) % 1000 == 0:
            progress(1000)
    if progress is not None and n_events % 1000:
        progress(n_events % 1000)
    coords = np.concatenate(coords) if coords else np.zeros((0, 3), np.int16)
    return RecoilBatch(offsets=np.asarray(offsets, np.int64), coords=coords,
                       values=np.ones(len(coords), np.float32), truth=truth,
                       n_simulated=n_events)


def _config(n_events, seed, first, shape, grid_size) -> dict:
    """The run configuration recorded in the event file."""
    cfg = TpcConfig(grid_size=grid_size)
    return {"source": "arrows", "detector": {"grid_size": cfg.grid_size,
                                             "voxel_cm": cfg.voxel_cm},
            "n_events": n_events, "seed": seed, "first": first, "shape": shape.to_dict()}


def write_arrows(out, *, n_events: int = 6000, seed: int = 0, first: int = 0,
                 shape: ArrowShape = ArrowShape(), grid_size: int = 120,
                 chunk_size: int = 2000, overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Write arrows ``first .. first + n_events - 1`` into a TPC event file (atomically).

    Parameters
    ----------
    out : path-like
        Event file to write (the TPC event format; ``config["source"] == "arrows"``).
    n_events, seed, first : int
        Arrows, run seed and first event index; event ``k`` depends only on ``(seed, k)``.
    shape : ArrowShape
    grid_size : int
    chunk_size : int
        Arrows made and appended at a time (does not change the events).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    dict
        Summary: file, events, seed, first, mean voxels per arrow, arrow length (cm).
    """
    from astroreco.detectors.tpc.pipeline import EVENT_SCHEMA
    from astroreco.io.store import EventWriter
    from astroreco.progress import progress_bar

    n_events = _check_index("n_events", n_events, low=1)
    chunk_size = _check_index("chunk_size", chunk_size, low=1)
    seed, first = _check_index("seed", seed), _check_index("first", first)
    make_arrows(0, seed=seed, shape=shape, grid_size=grid_size)  # checks before any write
    meta = _config(n_events, seed, first, shape, int(grid_size))
    n_voxels = 0
    with EventWriter(out, EVENT_SCHEMA, config=meta, overwrite=overwrite) as writer, \
            progress_bar(f"making {n_events} arrows", total=n_events,
                         enabled=progress) as bar:
        for s in range(first, first + n_events, chunk_size):
            n = min(chunk_size, first + n_events - s)
            batch = make_arrows(n, seed=seed, first=s, shape=shape, grid_size=grid_size,
                                progress=bar.advance)
            c = batch.coords
            writer.append(batch.offsets, hits={"i": c[:, 0], "j": c[:, 1], "k": c[:, 2],
                                               "electrons": batch.values},
                          truth=batch.truth, n_simulated=batch.n_simulated)
            n_voxels += len(c)
        stored = writer.n_events
    return {"file": str(out), "n_stored": stored, "n_simulated": n_events, "seed": seed,
            "first": first, "mean_voxels": n_voxels / stored,
            "length_cm": shape.length * meta["detector"]["voxel_cm"]}


#: the seed's split of its 6000 arrows (Appendix B)
SPLITS = ("train", "val", "test")


def split_arrows(out_dir, *, n_train: int = 4000, n_val: int = 1000, n_test: int = 1000,
                 seed: int = 0, shape: ArrowShape = ArrowShape(), grid_size: int = 120,
                 chunk_size: int = 2000, overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Write ``train.h5``, ``val.h5`` and ``test.h5`` of disjoint arrows (seed, App. B).

    The three files hold consecutive index ranges of one run: train ``0 .. n_train - 1``,
    val the next ``n_val``, test the next ``n_test`` (``event_id`` is the run index), so
    no arrow is in two files and the split of ``seed`` is reproducible.

    Returns
    -------
    dict
        ``{"train": Path, "val": Path, "test": Path}``.
    """
    sizes = {"train": _check_index("n_train", n_train, low=1),
             "val": _check_index("n_val", n_val, low=1),
             "test": _check_index("n_test", n_test, low=1)}
    out_dir = Path(out_dir)
    paths = {name: out_dir / f"{name}.h5" for name in SPLITS}
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in paths.values():
        check_output_path(p, overwrite)
    first = 0
    for name in SPLITS:
        write_arrows(paths[name], n_events=sizes[name], seed=seed, first=first, shape=shape,
                     grid_size=grid_size, chunk_size=chunk_size, overwrite=overwrite,
                     progress=progress)
        first += sizes[name]
    return paths
