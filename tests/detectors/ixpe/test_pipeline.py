"""The IXPE pipeline functions: simulate (locally and on a dask cluster) and reconstruct."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from astropy.io import fits

from astroreco.detectors.ixpe import moments as moments_mod
from astroreco.detectors.ixpe.level2 import read_level2
from astroreco.detectors.ixpe.pipeline import (EVENT_SCHEMA, available_methods, read_tracks,
                                               reconstruct, simulate)
from astroreco.errors import InputError
from astroreco.io.store import EventFile

N = 2000
KW = dict(n_events=N, energy="2:8", polarization_degree=0.5, polarization_angle_deg=30.0,
          seed=7, progress=False)


def _datasets(path):
    """Every dataset of /events and /truth, by name."""
    out = {}
    with h5py.File(path, "r") as f:
        for group in ("events", "truth"):
            f[group].visititems(lambda name, obj, g=group: out.__setitem__(
                f"{g}/{name}", obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: f.attrs[k] for k in ("config", "n_simulated", "detector")}
    return out, attrs


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "local.h5"
    summary = simulate(path, workers=1, chunk_size=700, **KW)
    return path, summary


def test_summary_and_trigger_efficiency(local_run):
    path, summary = local_run
    assert summary["file"] == str(path)
    assert summary["n_simulated"] == N
    assert 0 < summary["n_stored"] <= N
    eff = summary["trigger_efficiency"]
    assert eff == pytest.approx(summary["n_stored"] / N)
    assert 0.5 < eff <= 1.0
    with EventFile(path, EVENT_SCHEMA) as ef:
        assert ef.n_events == summary["n_stored"]
        assert ef.n_simulated == N
        truth = ef.truth(["event_id", "energy_kev"])
    # event ids are the global stream indices, increasing, within the run
    ids = truth["event_id"]
    assert np.all(np.diff(ids) > 0) and ids[0] >= 0 and ids[-1] < N
    assert np.all((truth["energy_kev"] >= 2) & (truth["energy_kev"] <= 8))


def test_dask_cluster_gives_identical_events(local_run, tmp_path):
    path, summary = local_run
    other = tmp_path / "dask.h5"
    s2 = simulate(other, workers=2, chunk_size=450, **KW)
    assert s2["n_stored"] == summary["n_stored"]
    a, attrs_a = _datasets(path)
    b, attrs_b = _datasets(other)
    assert set(a) == set(b)
    assert {"events/offsets", "events/hits/col", "events/hits/row", "events/hits/charge",
            "truth/phi", "truth/event_id"} <= set(a)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].tobytes() == b[name].tobytes(), name
    assert attrs_a["n_simulated"] == attrs_b["n_simulated"] == N
    assert attrs_a["config"] == attrs_b["config"]


def test_reconstruct_status_counts_and_fits(local_run, tmp_path):
    src, summary = local_run
    path = tmp_path / "ev.h5"
    path.write_bytes(src.read_bytes())
    fits_path = tmp_path / "ev.fits"
    out = reconstruct(path, fits=fits_path, chunk_size=600, progress=False)
    n = summary["n_stored"]
    assert out["method"] == "moments"
    assert out["n_events"] == n
    assert out["fits"] == str(fits_path)
    assert set(out["status_counts"]) == set(moments_mod.STATUS_BITS.values())
    with EventFile(path, EVENT_SCHEMA) as ef:
        assert ef.methods == ["moments"]
        r = ef.reco("moments")
    assert set(r) >= {f[0] for f in moments_mod.OUTPUT_FIELDS} | {"energy_kev"}
    status = r["status"]
    assert len(status) == n
    for bit, name in moments_mod.STATUS_BITS.items():
        assert out["status_counts"][name] == np.count_nonzero(status & bit)
    # angles are NaN exactly for the empty and one-pixel tracks
    no_axis = (status & (moments_mod.STATUS_EMPTY | moments_mod.STATUS_ONE_PIXEL)) != 0
    finite = np.isfinite(r["phi"])
    np.testing.assert_array_equal(finite, ~no_axis)
    assert finite.sum() > 0.9 * n
    # the reconstructed energy is sensible for 2-8 keV photons
    e = r["energy_kev"][finite]
    assert 2.0 < np.median(e) < 8.0

    # Level-2 FITS: one row per event with a reconstructed angle
    with fits.open(fits_path) as hdul:
        assert hdul["EVENTS"].header["NAXIS2"] == int(finite.sum())
    cols, _ = read_level2(fits_path)
    assert len(cols["DETPHI"]) == int(finite.sum())
    np.testing.assert_allclose(np.sort(cols["DETPHI"]), np.sort(r["phi"][finite]), atol=1e-6)

    # re-running replaces the reconstruction; an existing FITS needs overwrite
    with pytest.raises(InputError):
        reconstruct(path, fits=fits_path, progress=False)
    again = reconstruct(path, fits=fits_path, overwrite=True, chunk_size=10_000,
                        progress=False)
    assert again["status_counts"] == out["status_counts"]
    with EventFile(path, EVENT_SCHEMA) as ef:
        assert ef.methods == ["moments"]
        np.testing.assert_array_equal(ef.reco("moments")["phi"], r["phi"])


def test_read_tracks_matches_file(local_run):
    path, summary = local_run
    offsets, hits = read_tracks(path, 10, 20)
    assert offsets[0] == 0 and len(offsets) == 11
    assert len(hits["col"]) == offsets[-1]
    with h5py.File(path, "r") as f:
        o = f["events/offsets"][10:21]
        np.testing.assert_array_equal(hits["charge"], f["events/hits/charge"][o[0]:o[-1]])


def test_bad_arguments(tmp_path, local_run):
    path, _ = local_run
    assert "moments" in available_methods()
    with pytest.raises(InputError):
        reconstruct(path, method="magic", progress=False)
    with pytest.raises(InputError):
        simulate(tmp_path / "x.h5", n_events=10, seed=-1, progress=False)
    with pytest.raises(InputError):
        simulate(tmp_path / "x.h5", n_events=10, chunk_size=0, progress=False)
    assert list(tmp_path.iterdir()) == []
