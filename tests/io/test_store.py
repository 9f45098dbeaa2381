"""The HDF5 event store: round trip, lazy slices, reconstructions, atomic writes, bad files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from astroreco.errors import InputError
from astroreco.io import store
from astroreco.io.store import (Column, EventFile, EventSchema, EventWriter, columns,
                                write_reconstruction)

SCHEMA = EventSchema(
    detector="toy",
    hits=columns([("col", "i2", "", "pixel column"), ("row", "i2", "", "pixel row"),
                  ("charge", "f4", "e-", "pixel charge")]),
    per_event=(Column("window", "i2", "", "window", (2,)),),
    truth=columns([("energy", "f4", "keV", "true energy"),
                   ("event_id", "i8", "", "event number")]),
)

CONFIG = {"seed": 3, "source": {"energy": "4"}, "nested": [1, 2.5, "x"]}


def _batch(rng, first, sizes):
    """One batch: offsets from 0, hit columns and truth of len(sizes) events."""
    sizes = np.asarray(sizes, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    hits = {"col": rng.integers(-300, 300, n).astype(np.int16),
            "row": rng.integers(-300, 300, n).astype(np.int16),
            "charge": rng.uniform(0, 1000, n).astype(np.float32)}
    m = len(sizes)
    per_event = {"window": rng.integers(0, 100, (m, 2)).astype(np.int16)}
    truth = {"energy": rng.uniform(1, 10, m).astype(np.float32),
             "event_id": np.arange(first, first + m, dtype=np.int64)}
    return offsets, hits, per_event, truth


# sizes of the events of three batches (with empty events, an empty batch would also work)
BATCHES = ([3, 0, 5, 1], [2, 7], [0, 4, 4])


@pytest.fixture
def written(tmp_path):
    """A small file of 3 batches, and the concatenated expected content."""
    rng = np.random.default_rng(11)
    path = tmp_path / "toy.h5"
    parts = []
    first = 0
    with EventWriter(path, SCHEMA, config=CONFIG) as w:
        for sizes in BATCHES:
            b = _batch(rng, first, sizes)
            w.append(b[0], hits=b[1], per_event=b[2], truth=b[3])
            parts.append(b)
            first += len(sizes)
        assert w.n_events == sum(len(s) for s in BATCHES)
    sizes = np.concatenate([np.asarray(s, dtype=np.int64) for s in BATCHES])
    expected = {
        "offsets": np.concatenate([[0], np.cumsum(sizes)]),
        "hits": {k: np.concatenate([p[1][k] for p in parts]) for k in ("col", "row", "charge")},
        "window": np.concatenate([p[2]["window"] for p in parts]),
        "truth": {k: np.concatenate([p[3][k] for p in parts]) for k in ("energy", "event_id")},
    }
    return path, expected


def _one_line(exc_info, path=None):
    msg = str(exc_info.value)
    assert "\n" not in msg
    assert msg
    if path is not None:
        assert str(path) in msg or path.name in msg
    return msg


# --- round trip ---------------------------------------------------------------------------

def test_round_trip_across_batches(written):
    path, exp = written
    with EventFile(path, SCHEMA) as ef:
        assert len(ef) == ef.n_events == len(exp["offsets"]) - 1
        assert ef.n_simulated == ef.n_events
        offsets, hits = ef.hits()
        np.testing.assert_array_equal(offsets, exp["offsets"])
        for k, v in exp["hits"].items():
            assert hits[k].dtype == v.dtype
            np.testing.assert_array_equal(hits[k], v)
        np.testing.assert_array_equal(ef.per_event("window"), exp["window"])
        truth = ef.truth()
        assert set(truth) == {"energy", "event_id"}
        for k, v in exp["truth"].items():
            np.testing.assert_array_equal(truth[k], v)
        assert ef.methods == []
    # the offsets continue across appends (stored as absolute hit indices)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["events/offsets"][:], exp["offsets"])
        assert f["events/offsets"].dtype == np.int64


def test_lazy_slices(written):
    path, exp = written
    offs_all = exp["offsets"]
    with EventFile(path) as ef:
        # a slice straddling the batch boundaries 4 and 6
        for start, stop in ((0, 1), (2, 5), (3, 8), (5, 9), (8, 9), (0, 9)):
            offsets, hits = ef.hits(start, stop)
            assert offsets[0] == 0
            assert len(offsets) == stop - start + 1
            a, b = offs_all[start], offs_all[stop]
            np.testing.assert_array_equal(offsets, offs_all[start:stop + 1] - a)
            for k, v in exp["hits"].items():
                np.testing.assert_array_equal(hits[k], v[a:b])
        # stop beyond the end is clipped; names selects columns
        offsets, hits = ef.hits(7, 1000, names=["charge"])
        assert list(hits) == ["charge"]
        np.testing.assert_array_equal(offsets, offs_all[7:] - offs_all[7])
        np.testing.assert_array_equal(hits["charge"], exp["hits"]["charge"][offs_all[7]:])
        t = ef.truth(["event_id"], start=2, stop=6)
        np.testing.assert_array_equal(t["event_id"], np.arange(2, 6))
        with pytest.raises(InputError) as e:
            ef.truth(["nope"])
        _one_line(e, path)
        assert list(ef.iter_chunks(4)) == [(0, 4), (4, 8), (8, 9)]


def test_schema_attributes(written):
    path, exp = written
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == store.FORMAT == "astroreco-events"
        assert int(f.attrs["schema_version"]) == store.SCHEMA_VERSION
        assert f.attrs["detector"] == "toy"
        assert str(f.attrs["creator"]).startswith("astroreco ")
        assert json.loads(f.attrs["config"]) == CONFIG
        assert int(f.attrs["n_simulated"]) == len(exp["offsets"]) - 1
        assert f["events/hits/charge"].attrs["unit"] == "e-"
        assert f["truth/energy"].attrs["unit"] == "keV"
        assert f["events/window"].shape == (len(exp["offsets"]) - 1, 2)
    with EventFile(path) as ef:
        assert ef.detector == "toy"
        assert ef.config == CONFIG


def test_n_simulated_counts_untriggered(tmp_path):
    rng = np.random.default_rng(0)
    with EventWriter(tmp_path / "a.h5", SCHEMA) as w:
        b = _batch(rng, 0, [1, 2])
        w.append(b[0], hits=b[1], per_event=b[2], truth=b[3], n_simulated=10)
        b = _batch(rng, 2, [3])
        w.append(b[0], hits=b[1], per_event=b[2], truth=b[3], n_simulated=5)
    with EventFile(tmp_path / "a.h5") as ef:
        assert ef.n_events == 3
        assert ef.n_simulated == 15
        assert ef.config == {}


def test_append_wrong_length_raises(tmp_path):
    rng = np.random.default_rng(0)
    b = _batch(rng, 0, [1, 2])
    with pytest.raises(InputError) as e:
        with EventWriter(tmp_path / "a.h5", SCHEMA) as w:
            w.append(b[0], hits={**b[1], "col": b[1]["col"][:-1]}, per_event=b[2],
                     truth=b[3])
    _one_line(e)
    assert list(tmp_path.iterdir()) == []


# --- reconstructions ----------------------------------------------------------------------

def test_write_reconstruction_and_rerun(written):
    path, exp = written
    n = len(exp["offsets"]) - 1
    phi = np.linspace(-1, 1, n).astype(np.float32)
    write_reconstruction(path, "moments", {"phi": phi, "n": np.arange(n)},
                         fields=[("phi", "f4", "rad", "angle")], config={"a": 1})
    with h5py.File(path, "r") as f:
        assert set(f["reco/moments"]) == {"phi", "n"}
        assert f["reco/moments/phi"].attrs["unit"] == "rad"
    with EventFile(path) as ef:
        assert ef.methods == ["moments"]
        r = ef.reco("moments")
        np.testing.assert_array_equal(r["phi"], phi)
        attrs = ef.reco_attrs("moments")
        assert attrs["method"] == "moments"
        assert json.loads(attrs["config"]) == {"a": 1}
        np.testing.assert_array_equal(ef.reco("moments", ["n"], 2, 4)["n"], [2, 3])
        with pytest.raises(InputError) as e:
            ef.reco("nn")
        assert "moments" in _one_line(e, path)
    # re-running replaces (columns of the old run do not survive)
    write_reconstruction(path, "moments", {"phi": -phi}, config={"a": 2})
    write_reconstruction(path, "nn", {"phi": phi})
    with EventFile(path) as ef:
        assert ef.methods == ["moments", "nn"]
        r = ef.reco("moments")
        assert list(r) == ["phi"]
        np.testing.assert_array_equal(r["phi"], -phi)
        assert json.loads(ef.reco_attrs("moments")["config"]) == {"a": 2}
        # the events are untouched
        offsets, hits = ef.hits()
        np.testing.assert_array_equal(offsets, exp["offsets"])
    with pytest.raises(InputError) as e:
        write_reconstruction(path, "nn", {"phi": phi}, overwrite=False)
    _one_line(e, path)


def test_leftover_partial_is_ignored_and_cleaned(written):
    path, exp = written
    n = len(exp["offsets"]) - 1
    # a crashed earlier run left a hidden, half-written group behind
    with h5py.File(path, "a") as f:
        g = f["reco"].create_group(".moments.partial")
        g.create_dataset("phi", data=np.zeros(2))
    with EventFile(path) as ef:
        assert ef.methods == []
        with pytest.raises(InputError):
            ef.reco("moments")
    write_reconstruction(path, "moments", {"phi": np.ones(n)})
    with h5py.File(path, "r") as f:
        assert list(f["reco"]) == ["moments"]
    with EventFile(path) as ef:
        assert ef.methods == ["moments"]
        np.testing.assert_array_equal(ef.reco("moments")["phi"], np.ones(n))


def test_reconstruction_wrong_length(written):
    path, exp = written
    n = len(exp["offsets"]) - 1
    with pytest.raises(InputError) as e:
        write_reconstruction(path, "moments", {"phi": np.zeros(n + 1)})
    msg = _one_line(e)
    assert "moments/phi" in msg
    with pytest.raises(InputError) as e:
        write_reconstruction(path, "bad-name", {"phi": np.zeros(n)})
    _one_line(e)
    with EventFile(path) as ef:
        assert ef.methods == []


# --- atomic writes ------------------------------------------------------------------------

def test_exception_inside_writer_leaves_nothing(tmp_path):
    rng = np.random.default_rng(1)
    target = tmp_path / "run.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with EventWriter(target, SCHEMA) as w:
            b = _batch(rng, 0, [2, 3])
            w.append(b[0], hits=b[1], per_event=b[2], truth=b[3])
            # the temporary file is beside the target, hidden, while writing
            assert not target.exists()
            assert len(list(tmp_path.iterdir())) == 1
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_existing_file(written):
    path, exp = written
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with EventWriter(path, SCHEMA, overwrite=True):
            raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_existing_file_without_overwrite(written):
    path, exp = written
    before = path.read_bytes()
    with pytest.raises(InputError) as e:
        EventWriter(path, SCHEMA)
    assert "exists" in _one_line(e, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    # with overwrite it is replaced
    rng = np.random.default_rng(2)
    with EventWriter(path, SCHEMA, overwrite=True) as w:
        b = _batch(rng, 0, [1])
        w.append(b[0], hits=b[1], per_event=b[2], truth=b[3])
    with EventFile(path) as ef:
        assert ef.n_events == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_missing_directory(tmp_path):
    with pytest.raises(InputError) as e:
        EventWriter(tmp_path / "nope" / "a.h5", SCHEMA)
    _one_line(e)


# --- reading errors -----------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "missing.h5"
    with pytest.raises(InputError) as e:
        EventFile(path)
    _one_line(e, path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(InputError) as e:
        EventFile(tmp_path)
    _one_line(e, tmp_path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\nsecond line\n")
    with pytest.raises(InputError) as e:
        EventFile(path)
    _one_line(e, path)


def test_truncated_file(written):
    path, exp = written
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        with EventFile(path) as ef:
            ef.hits()
    _one_line(e, path)


def test_hdf5_from_another_program(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(5))
        f.attrs["program"] = "someone else"
    with pytest.raises(InputError) as e:
        EventFile(path)
    msg = _one_line(e, path)
    assert "astroreco" in msg


def test_wrong_schema_version(written):
    path, exp = written
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(InputError) as e:
        EventFile(path)
    assert "99" in _one_line(e, path)


def test_wrong_detector(written):
    path, exp = written
    other = EventSchema(detector="ixpe", hits=SCHEMA.hits)
    with pytest.raises(InputError) as e:
        EventFile(path, other)
    msg = _one_line(e, path)
    assert "toy" in msg and "ixpe" in msg
    # without a schema any detector is accepted
    with EventFile(path) as ef:
        assert ef.detector == "toy"


def test_missing_declared_column(written):
    path, exp = written
    schema = EventSchema(detector="toy", hits=SCHEMA.hits + columns([("tot", "f4")]))
    with pytest.raises(InputError) as e:
        EventFile(path, schema)
    assert "tot" in _one_line(e, path)


@pytest.mark.parametrize("how", ["offsets", "hits"])
def test_offsets_inconsistent_with_hits(written, how):
    path, exp = written
    with h5py.File(path, "a") as f:
        if how == "offsets":
            f["events/offsets"][-1] = exp["offsets"][-1] + 5
        else:
            for k in f["events/hits"]:
                ds = f["events/hits"][k]
                ds.resize(ds.shape[0] - 3, axis=0)
    with pytest.raises(InputError) as e:
        EventFile(path)
    assert "offsets" in _one_line(e, path)


def test_missing_group(written):
    path, exp = written
    with h5py.File(path, "a") as f:
        del f["truth"]
    with pytest.raises(InputError) as e:
        EventFile(path)
    assert "truth" in _one_line(e, path)


@pytest.mark.parametrize("edit, needle", [
    (lambda f: f.attrs.__setitem__("schema_version", "abc"), "schema_version"),
    (lambda f: f.attrs.__delitem__("detector"), "detector"),
    (lambda f: f.attrs.__setitem__("config", "{not json"), "config"),
])
def test_damaged_attributes(written, edit, needle):
    path, exp = written
    with h5py.File(path, "a") as f:
        edit(f)
    with pytest.raises(InputError) as e:
        with EventFile(path) as ef:
            ef.config
    assert needle in _one_line(e, path)


# --- ragged truth (objects per event) and ragged reconstructions --------------------------

OBJ_SCHEMA = EventSchema(
    detector="toysky", hits=(),
    per_event=(Column("image", "f4", "", "image", (3, 40, 40)),),
    truth=columns([("event_id", "i8")]),
    truth_objects=(Column("x", "f8", "pix", "position"),
                   Column("npred", "f4", "counts", "per energy bin", (3,))),
)


def _objects(rng, sizes):
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offs[-1])
    return offs, {"x": rng.normal(size=n), "npred": rng.random((n, 3)).astype(np.float32)}


def test_truth_objects_round_trip_and_slices(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "obj.h5"
    batches = ([2, 0, 3], [0], [4, 1])
    parts, first = [], 0
    with EventWriter(path, OBJ_SCHEMA) as w:
        for sizes in batches:
            m = len(sizes)
            obj = _objects(rng, sizes)
            w.append(np.zeros(m + 1, np.int64), hits={},
                     per_event={"image": rng.random((m, 3, 40, 40))},
                     truth={"event_id": np.arange(first, first + m)}, truth_objects=obj)
            parts.append(obj)
            first += m
    sizes = np.concatenate(batches)
    offs_all = np.concatenate([[0], np.cumsum(sizes)])
    x_all = np.concatenate([p[1]["x"] for p in parts])
    npred_all = np.concatenate([p[1]["npred"] for p in parts])
    with EventFile(path, OBJ_SCHEMA) as ef:
        assert ef.has_truth_objects and ef.n_events == 6
        offs, obj = ef.truth_objects()
        np.testing.assert_array_equal(offs, offs_all)
        np.testing.assert_array_equal(obj["x"], x_all)
        assert obj["npred"].shape == (10, 3) and obj["npred"].dtype == np.float32
        np.testing.assert_array_equal(obj["npred"], npred_all)
        for start, stop in ((0, 1), (1, 4), (3, 6), (5, 100), (6, 6)):
            offs, obj = ef.truth_objects(["x"], start, stop)
            a, b = offs_all[start], offs_all[min(stop, 6)]
            np.testing.assert_array_equal(offs, offs_all[start:min(stop, 6) + 1] - a)
            np.testing.assert_array_equal(obj["x"], x_all[a:b])
        with pytest.raises(InputError) as e:
            ef.truth_objects(["nope"])
        assert "nope" in _one_line(e, path)
    # fixed-shape columns get ~1 MiB chunks, scalar columns keep 4096 rows
    with h5py.File(path, "r") as f:
        assert f["events/image"].chunks[0] == (1 << 20) // (3 * 40 * 40 * 4)
        assert f["truth/event_id"].chunks == (4096,)


def test_truth_objects_errors(tmp_path, written):
    rng = np.random.default_rng(6)
    with pytest.raises(InputError) as e:
        with EventWriter(tmp_path / "a.h5", OBJ_SCHEMA) as w:
            w.append(np.zeros(2, np.int64), hits={}, per_event={"image": np.zeros((1, 3, 40, 40))},
                     truth={"event_id": [0]})
    assert "truth_objects" in _one_line(e)
    with pytest.raises(InputError) as e:
        with EventWriter(tmp_path / "a.h5", OBJ_SCHEMA) as w:
            w.append(np.zeros(3, np.int64), hits={}, per_event={"image": np.zeros((2, 3, 40, 40))},
                     truth={"event_id": [0, 1]}, truth_objects=_objects(rng, [2]))
    _one_line(e)
    assert list(tmp_path.glob("a.h5*")) == []
    path, exp = written       # an older-style file: no /truth_objects
    with EventFile(path) as ef:
        assert not ef.has_truth_objects
        with pytest.raises(InputError) as e:
            ef.truth_objects()
        _one_line(e, path)
    with pytest.raises(InputError) as e:
        EventFile(path, OBJ_SCHEMA)
    _one_line(e, path)
    # a truncated object table is caught when the file is opened
    good = tmp_path / "b.h5"
    with EventWriter(good, OBJ_SCHEMA) as w:
        w.append(np.zeros(3, np.int64), hits={}, per_event={"image": np.zeros((2, 3, 40, 40))},
                 truth={"event_id": [0, 1]}, truth_objects=_objects(rng, [2, 3]))
    with h5py.File(good, "a") as f:
        f["truth_objects/x"].resize(4, axis=0)
    with pytest.raises(InputError) as e:
        EventFile(good)
    assert "truth_objects" in _one_line(e, good)


def test_ragged_reconstruction(written):
    path, exp = written
    n = len(exp["offsets"]) - 1
    sizes = np.arange(n) % 3
    offs = np.concatenate([[0], np.cumsum(sizes)])
    x = np.arange(offs[-1], dtype=float)
    xy = np.stack([x, -x], axis=1)
    write_reconstruction(path, "found", {"x": x, "xy": xy}, offsets=offs,
                         fields=[("x", "f8", "pix", "position")], config={"t": 5})
    write_reconstruction(path, "flat", {"phi": np.zeros(n)})
    with EventFile(path) as ef:
        assert ef.methods == ["flat", "found"]
        assert ef.is_ragged("found") and not ef.is_ragged("flat")
        o, r = ef.reco_objects("found")
        np.testing.assert_array_equal(o, offs)
        np.testing.assert_array_equal(r["x"], x)
        np.testing.assert_array_equal(r["xy"], xy)
        o, r = ef.reco_objects("found", ["x"], 2, 5)
        np.testing.assert_array_equal(o, offs[2:6] - offs[2])
        np.testing.assert_array_equal(r["x"], x[offs[2]:offs[5]])
        assert json.loads(ef.reco_attrs("found")["config"]) == {"t": 5}
        for call in (lambda: ef.reco("found"), lambda: ef.reco_objects("flat")):
            with pytest.raises(InputError) as e:
                call()
            _one_line(e, path)
    with h5py.File(path, "r") as f:
        assert f["reco/found/x"].attrs["unit"] == "pix"
    # an event file with no detections at all
    write_reconstruction(path, "none", {"x": np.zeros(0)}, offsets=np.zeros(n + 1, int))
    with EventFile(path) as ef:
        o, r = ef.reco_objects("none")
        assert o.sum() == 0 and r["x"].shape == (0,)


def test_ragged_reconstruction_errors(written):
    path, exp = written
    n = len(exp["offsets"]) - 1
    x, offs = np.zeros(n), np.arange(n + 1)
    for table, offsets, needle in (({"x": x}, [0, 1], "offsets"),
                                   ({"x": x}, offs[::-1].copy(), "offsets"),
                                   ({"x": x[1:]}, offs, "rows"),
                                   ({"x": x, "offsets": x}, offs, "reserved")):
        with pytest.raises(InputError) as e:
            write_reconstruction(path, "found", table, offsets=offsets)
        assert needle in _one_line(e)
    with EventFile(path) as ef:
        assert ef.methods == []
