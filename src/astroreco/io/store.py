"""The HDF5 event store: ragged per-event hits, a truth table and reconstructions side by side.

Layout (``schema_version`` 1)::

    /                      attrs: format="astroreco-events", schema_version, detector,
                                  creator, config (JSON of the run), n_simulated
    /events/offsets        (n + 1,) int64: event k owns hits offsets[k]:offsets[k+1]
    /events/hits/<column>  (n_hits,) ragged per-event values (e.g. col, row, charge)
    /events/<column>       (n, ...) one row per event (e.g. window)
    /truth/<column>        (n,) simulation truth, joined on the row number (and event_id)
    /truth_objects/offsets (n + 1,) int64, optional: event k owns truth objects
                                  offsets[k]:offsets[k+1] (e.g. the sources of a sky patch)
    /truth_objects/<col>   (n_objects, ...) ragged per-event truth rows
    /reco/<method>/<col>   (n,) one reconstruction per method (moments, nn, ...); attrs:
                                  method, creator, config (JSON)
    /reco/<method>/offsets (n + 1,) int64, only in a ragged reconstruction (attrs: ragged=1):
                                  several rows per event (e.g. the detected sources), the
                                  columns then (n_rows, ...)

Columns are declared once per detector as :class:`Column` tuples and both the writer and the
reader use them; a column may have a fixed per-row ``shape`` (an image per event, a spectrum
per truth object).  ``/truth_objects`` and ragged reconstructions were added later without a
schema-version change: files without them are unchanged, and readers that do not know them
ignore them.  Files are written to a temporary file and renamed when complete; a
reconstruction added to an existing file is written under a hidden name and renamed when
complete, so a reader never sees half of it.  Reads are lazy: only the requested slice of a
dataset is read, so memory does not grow with the file size.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from astroreco import __version__
from astroreco.errors import InputError

FORMAT = "astroreco-events"
SCHEMA_VERSION = 1
_CHUNK = 1 << 16
#: target size of one HDF5 chunk of a fixed-shape column (bytes): HDF5's default chunk cache
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Column:
    """One declared column: name, numpy dtype string, unit and description."""

    name: str
    dtype: str
    unit: str = ""
    description: str = ""
    shape: tuple = ()


@dataclass(frozen=True)
class EventSchema:
    """What a detector stores: ragged hit columns, per-event columns and truth columns.

    ``truth_objects``: truth with a variable number of rows per event (the sources of a sky
    patch), stored under ``/truth_objects`` with its own offsets.
    """

    detector: str
    hits: tuple
    per_event: tuple = ()
    truth: tuple = ()
    truth_objects: tuple = ()


def columns(spec) -> tuple:
    """Columns from (name, dtype, unit, description) tuples."""
    return tuple(c if isinstance(c, Column) else Column(*c) for c in spec)


def check_run_args(n_events, chunk_size, seed) -> None:
    """One-line errors for the arguments every simulation run takes: ``n_events`` and
    ``chunk_size`` positive integers, ``seed`` an integer >= 0."""
    if isinstance(n_events, bool) or int(n_events) != n_events or n_events <= 0:
        raise InputError(f"--n-events: expected a positive number, got {n_events}")
    if chunk_size <= 0:
        raise InputError(f"--chunk-size: expected a positive number, got {chunk_size}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"--seed: expected >= 0, got {seed}")


def _chunk_rows(shape, dtype, cap=4096) -> int:
    """Rows per chunk: at most ``cap``, and chunks of about 1 MiB for wide rows (images)."""
    row = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return int(max(1, min(cap, _CHUNK_BYTES // max(row, 1))))


def _create_columns(group, cols, cap):
    """Empty, growable datasets of the declared columns in ``group``."""
    for c in cols:
        group.create_dataset(c.name, shape=(0, *c.shape), dtype=c.dtype,
                             maxshape=(None, *c.shape),
                             chunks=(_chunk_rows(c.shape, c.dtype, cap), *c.shape),
                             compression="gzip", compression_opts=1, shuffle=True)
        group[c.name].attrs.update(unit=c.unit, description=c.description)


def _read_ragged(group, names, start, stop, where):
    """Rows of events ``start..stop`` of a ragged group (``offsets`` + columns):
    (offsets from 0, dict of columns)."""
    if start < 0:
        raise InputError(f"{where}: start {start}: expected an event index >= 0")
    n = group["offsets"].shape[0] - 1
    stop = n if stop is None else min(int(stop), n)
    start = min(int(start), stop)
    offs = group["offsets"][start:stop + 1]
    a, b = int(offs[0]), int(offs[-1])
    have = [k for k in group if k != "offsets"]
    names = have if names is None else list(names)
    missing = [k for k in names if k not in have]
    if missing:
        raise InputError(f"{where}: no column {missing[0]!r} (this table has "
                         f"{', '.join(have) or 'no columns'})")
    return offs - a, {k: group[k][a:b] for k in names}


def check_output_path(path, overwrite=False) -> Path:
    """``path`` as a :class:`~pathlib.Path`, or a one-line error if it exists (and
    ``overwrite`` is false) or its directory does not: checked before long work, not after."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: file exists (use --overwrite to replace it)")
    if not path.parent.exists():
        raise InputError(f"{path}: directory {path.parent} does not exist")
    return path


@contextmanager
def atomic_path(path, overwrite=False):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only."""
    path = check_output_path(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class EventWriter:
    """Write events batch by batch into a new file (atomically: temp file + rename).

    Examples
    --------
    >>> with EventWriter("run.h5", schema, config={"seed": 1}) as w:   # doctest: +SKIP
    ...     w.append(offsets, hits={"col": c, "row": r, "charge": q}, truth={...})
    """

    def __init__(self, path, schema: EventSchema, *, config=None, overwrite=False):
        self.path = Path(path)
        self.schema = schema
        self._ctx = atomic_path(self.path, overwrite)
        self._tmp = self._ctx.__enter__()
        self._f = h5py.File(self._tmp, "w")
        f = self._f
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["detector"] = schema.detector
        f.attrs["creator"] = f"astroreco {__version__}"
        f.attrs["config"] = json.dumps(config or {})
        f.attrs["n_simulated"] = 0
        ev = f.create_group("events")
        ev.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,),
                          chunks=(_CHUNK,))
        hits = ev.create_group("hits")
        for c in schema.hits:
            hits.create_dataset(c.name, shape=(0,), dtype=c.dtype, maxshape=(None,),
                                chunks=(_CHUNK,), compression="gzip", compression_opts=1,
                                shuffle=True)
            hits[c.name].attrs.update(unit=c.unit, description=c.description)
        _create_columns(ev, schema.per_event, 4096)
        _create_columns(f.create_group("truth"), schema.truth, 4096)
        if schema.truth_objects:
            obj = f.create_group("truth_objects")
            obj.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,),
                               chunks=(_CHUNK,))
            _create_columns(obj, schema.truth_objects, _CHUNK)
        f.create_group("reco")
        self.n_events = 0
        self.n_hits = 0
        self.n_objects = 0

    def append(self, offsets, *, hits, per_event=None, truth=None, truth_objects=None,
               n_simulated=None):
        """Append a batch: ``offsets`` (m + 1,) starting at 0, and the declared columns.

        ``truth_objects``: ``(object_offsets, columns)`` when the schema declares ragged
        truth, ``object_offsets`` (m + 1,) starting at 0 like ``offsets``.
        """
        offsets = np.asarray(offsets, dtype=np.int64)
        m = len(offsets) - 1
        n_new = int(offsets[-1])
        f = self._f
        for c in self.schema.hits:
            _append(f["events/hits"][c.name], np.asarray(hits[c.name], dtype=c.dtype), n_new)
        for c in self.schema.per_event:
            _append(f["events"][c.name], np.asarray(per_event[c.name], dtype=c.dtype), m)
        for c in self.schema.truth:
            _append(f["truth"][c.name], np.asarray(truth[c.name], dtype=c.dtype), m)
        n_obj = 0
        if self.schema.truth_objects:
            if truth_objects is None:
                raise InputError(f"{self.path}: this schema declares truth_objects; expected "
                                 f"(offsets, columns) in append")
            obj_offsets, obj = truth_objects
            obj_offsets = np.asarray(obj_offsets, dtype=np.int64)
            if len(obj_offsets) != m + 1 or obj_offsets[0] != 0 or np.any(
                    np.diff(obj_offsets) < 0):
                raise InputError(f"{self.path}: truth_objects offsets: expected {m + 1} "
                                 f"non-decreasing values from 0, got {len(obj_offsets)}")
            n_obj = int(obj_offsets[-1])
            for c in self.schema.truth_objects:
                _append(f["truth_objects"][c.name], np.asarray(obj[c.name], dtype=c.dtype),
                        n_obj)
            _append(f["truth_objects/offsets"], obj_offsets[1:] + self.n_objects, m)
        _append(f["events/offsets"], offsets[1:] + self.n_hits, m)
        self.n_events += m
        self.n_hits += n_new
        self.n_objects += n_obj
        f.attrs["n_simulated"] = int(f.attrs["n_simulated"]) + int(
            m if n_simulated is None else n_simulated)

    def close(self, ok=True):
        self._f.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
        return False


def _append(ds, values, n):
    if len(values) != n:
        raise InputError(f"{ds.name}: expected {n} values, got {len(values)}")
    old = ds.shape[0]
    ds.resize(old + n, axis=0)
    if n:
        ds[old:old + n] = values


def select_rows(offsets, hits: dict, rows) -> tuple[np.ndarray, dict]:
    """Ragged hits of the events ``rows`` (sorted indices into ``offsets``): new offsets and
    the hit columns of those events only."""
    rows = np.asarray(rows, np.int64)
    n = np.diff(offsets)[rows]
    new = np.zeros(rows.size + 1, np.int64)
    np.cumsum(n, out=new[1:])
    idx = np.repeat(offsets[rows] - new[:-1], n) + np.arange(new[-1])
    return new, {k: v[idx] for k, v in hits.items()}


class EventFile:
    """Read an event file lazily.

    Use as a context manager; every read method takes a slice of events.

    Parameters
    ----------
    path : path-like
    schema : EventSchema, optional
        When given, the detector and the declared columns are checked.
    """

    def __init__(self, path, schema: EventSchema | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such event file")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError:
            raise InputError(f"{self.path}: not a readable HDF5 event file "
                             "(corrupt or truncated?)") from None
        try:
            self._check(schema)
        except Exception:
            self._f.close()
            raise

    def _check(self, schema):
        f = self._f
        if f.attrs.get("format") != FORMAT:
            raise InputError(f"{self.path}: not an astroreco event file (format attribute "
                             f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
        try:
            version = int(f.attrs.get("schema_version", -1))
        except (TypeError, ValueError):
            raise InputError(f"{self.path}: schema_version attribute "
                             f"{f.attrs.get('schema_version')!r} is not an integer") from None
        if version != SCHEMA_VERSION:
            raise InputError(f"{self.path}: schema version {version}; this astroreco reads "
                             f"version {SCHEMA_VERSION}")
        if "detector" not in f.attrs:
            raise InputError(f"{self.path}: missing detector attribute")
        for name in ("events/offsets", "events/hits", "truth", "reco"):
            if name not in f:
                raise InputError(f"{self.path}: missing /{name}")
        if schema is not None:
            if self.detector != schema.detector:
                raise InputError(f"{self.path}: events of detector {self.detector!r}, "
                                 f"expected {schema.detector!r}")
            for group, cols in (("events/hits", schema.hits), ("events", schema.per_event)):
                for c in cols:
                    if c.name not in f[group]:
                        raise InputError(f"{self.path}: missing /{group}/{c.name}")
        try:
            n_hits = f["events/hits"][next(iter(f["events/hits"]))].shape[0] \
                if len(f["events/hits"]) else 0
            last = int(f["events/offsets"][-1])
        except Exception:
            raise InputError(f"{self.path}: unreadable /events (corrupt or truncated?)") \
                from None
        if last != n_hits:
            raise InputError(f"{self.path}: /events/offsets ends at {last} but there are "
                             f"{n_hits} hits (truncated file?)")
        if schema is not None and schema.truth_objects:
            for c in schema.truth_objects:
                if "truth_objects" not in f or c.name not in f["truth_objects"]:
                    raise InputError(f"{self.path}: missing /truth_objects/{c.name}")
        if "truth_objects" in f:
            obj = f["truth_objects"]
            try:
                last = int(obj["offsets"][-1])
                ok = obj["offsets"].shape[0] == self.n_events + 1 and all(
                    obj[k].shape[0] == last for k in obj if k != "offsets")
            except Exception:
                ok = False
            if not ok:
                raise InputError(f"{self.path}: /truth_objects offsets and columns do not "
                                 f"agree with {self.n_events} events (truncated file?)")

    # --- metadata
    @property
    def detector(self) -> str:
        return str(self._f.attrs["detector"])

    @property
    def config(self) -> dict:
        try:
            return json.loads(self._f.attrs.get("config", "{}"))
        except (TypeError, ValueError):
            raise InputError(f"{self.path}: config attribute is not valid JSON") from None

    @property
    def n_events(self) -> int:
        return self._f["events/offsets"].shape[0] - 1

    @property
    def n_simulated(self) -> int:
        return int(self._f.attrs.get("n_simulated", self.n_events))

    @property
    def methods(self) -> list[str]:
        """Reconstruction methods stored in the file."""
        return sorted(k for k in self._f["reco"] if not k.startswith("."))

    def __len__(self):
        return self.n_events

    # --- data
    def hits(self, start=0, stop=None, names=None):
        """Ragged hits of events start..stop: (offsets from 0, dict of hit columns)."""
        stop = self.n_events if stop is None else min(stop, self.n_events)
        offs = self._f["events/offsets"][start:stop + 1]
        a, b = int(offs[0]), int(offs[-1])
        grp = self._f["events/hits"]
        names = list(grp) if names is None else names
        return offs - a, {k: grp[k][a:b] for k in names}

    def per_event(self, name, start=0, stop=None):
        return self._f["events"][name][start:stop]

    def truth(self, names=None, start=0, stop=None) -> dict:
        grp = self._f["truth"]
        names = list(grp) if names is None else names
        missing = [k for k in names if k not in grp]
        if missing:
            raise InputError(f"{self.path}: no truth column {missing[0]!r} (this file has "
                             f"{', '.join(grp) or 'no truth'})")
        return {k: grp[k][start:stop] for k in names}

    @property
    def has_truth_objects(self) -> bool:
        return "truth_objects" in self._f

    def truth_objects(self, names=None, start=0, stop=None):
        """Ragged truth rows of events start..stop: (offsets from 0, dict of columns)."""
        if not self.has_truth_objects:
            raise InputError(f"{self.path}: no /truth_objects (this file has no per-object "
                             f"truth)")
        return _read_ragged(self._f["truth_objects"], names, start, stop,
                            f"{self.path}: /truth_objects")

    def _reco_group(self, method):
        if method not in self.methods:
            raise InputError(f"{self.path}: no reconstruction {method!r} (stored: "
                             f"{', '.join(self.methods) or 'none'}); run reconstruct first")
        return self._f["reco"][method]

    def is_ragged(self, method) -> bool:
        """Whether reconstruction ``method`` has several rows per event (read with
        :meth:`reco_objects`)."""
        return bool(self._reco_group(method).attrs.get("ragged", False))

    def reco(self, method, names=None, start=0, stop=None) -> dict:
        grp = self._reco_group(method)
        if grp.attrs.get("ragged", False):
            raise InputError(f"{self.path}: reconstruction {method!r} has several rows per "
                             f"event; read it with reco_objects")
        names = list(grp) if names is None else names
        return {k: grp[k][start:stop] for k in names}

    def reco_objects(self, method, names=None, start=0, stop=None):
        """Rows of a ragged reconstruction for events start..stop: (offsets from 0, dict)."""
        grp = self._reco_group(method)
        if not grp.attrs.get("ragged", False):
            raise InputError(f"{self.path}: reconstruction {method!r} has one row per event; "
                             f"read it with reco")
        return _read_ragged(grp, names, start, stop, f"{self.path}: /reco/{method}")

    def reco_attrs(self, method) -> dict:
        return {k: (v if not isinstance(v, bytes) else v.decode())
                for k, v in self._f["reco"][method].attrs.items()}

    def iter_chunks(self, chunk_size=100_000):
        """Yield (start, stop) event ranges of at most ``chunk_size`` events."""
        for s in range(0, self.n_events, chunk_size):
            yield s, min(s + chunk_size, self.n_events)

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def write_reconstruction(path, method: str, table: dict, *, fields=None, config=None,
                         overwrite=True, offsets=None):
    """Store a reconstruction under ``/reco/<method>`` of an existing event file.

    Written under a hidden name first and renamed when complete (a reader never sees a
    partial reconstruction); an existing one is replaced when ``overwrite``.

    ``offsets`` (n + 1,), from 0: a *ragged* reconstruction, several rows per event (event k
    owns rows ``offsets[k]:offsets[k+1]`` of every column, e.g. the sources detected in a
    sky patch); read it back with :meth:`EventFile.reco_objects`.
    """
    if not method.isidentifier():
        raise InputError(f"method name {method!r}: expected letters, digits and underscores")
    with EventFile(path) as ef:
        n = ef.n_events
    n_rows = n
    if offsets is not None:
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.shape != (n + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise InputError(f"reconstruction {method}/offsets: expected {n + 1} "
                             f"non-decreasing values from 0 for {n} events, got shape "
                             f"{offsets.shape}")
        if "offsets" in table:
            raise InputError(f"reconstruction {method}: 'offsets' is reserved in a ragged "
                             f"reconstruction; rename the column")
        n_rows = int(offsets[-1])
    for k, v in table.items():
        if len(v) != n_rows:
            what = f"{n} events" if offsets is None else f"{n_rows} rows (offsets)"
            raise InputError(f"reconstruction {method}/{k}: {len(v)} rows for {what}")
    meta = {c.name: c for c in columns(fields or ())}
    with h5py.File(path, "a") as f:
        reco = f["reco"]
        tmp = f".{method}.partial"
        if tmp in reco:
            del reco[tmp]
        if method in reco and not overwrite:
            raise InputError(f"{path}: reconstruction {method!r} exists (use --overwrite)")
        g = reco.create_group(tmp)
        g.attrs["method"] = method
        g.attrs["creator"] = f"astroreco {__version__}"
        g.attrs["config"] = json.dumps(config or {})
        if offsets is not None:
            g.attrs["ragged"] = True
            g.create_dataset("offsets", data=offsets)
        for k, v in table.items():
            ds = g.create_dataset(k, data=np.asarray(v), chunks=True, compression="gzip",
                                  compression_opts=1)
            if k in meta:
                ds.attrs.update(unit=meta[k].unit, description=meta[k].description)
        if method in reco:
            del reco[method]
        reco.move(tmp, method)
