"""IXPE Level-2 event files: schema, round trip, atomic write, bad input, and ixpeobssim."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import wcs
from astropy.io import fits

from astroreco.detectors.ixpe import level2
from astroreco.detectors.ixpe.level2 import (
    EVENTS_COLUMNS,
    PRIMARY_KEYWORDS,
    REQUIRED_COLUMNS,
    energy_to_pi,
    pi_to_energy,
    read_level2,
    write_level2,
)
from astroreco.errors import InputError


def _events(n=500, seed=7):
    rng = np.random.default_rng(seed)
    return dict(
        phi=rng.uniform(-np.pi, np.pi, n),
        energy_kev=rng.uniform(1.0, 12.0, n),
        x_mm=rng.uniform(-7.0, 7.0, n),
        y_mm=rng.uniform(-7.0, 7.0, n),
    )


def _files(directory: Path):
    return sorted(p.name for p in directory.iterdir())


# ----------------------------------------------------------------------------- round trip

def test_round_trip(tmp_path):
    ev = _events()
    n = ev["phi"].size
    rng = np.random.default_rng(3)
    time = np.sort(rng.uniform(1.0e8, 1.0e8 + 500.0, n))
    w_mom = rng.uniform(0.1, 1.0, n)
    status = rng.integers(0, 4, n)
    path = tmp_path / "ev.fits"
    out = write_level2(path, **ev, time=time, w_mom=w_mom, status=status,
                       object_name="Crab", ra_deg=83.633, dec_deg=22.0145, exposure_s=600.0)
    assert out == path and path.is_file()

    columns, header = read_level2(path)
    assert list(columns) == [c.name for c in EVENTS_COLUMNS]
    assert all(columns[name].shape == (n,) for name in columns)
    assert all(columns[name].dtype.isnative for name in columns)
    np.testing.assert_array_equal(columns["TIME"], time)
    np.testing.assert_array_equal(columns["STATUS"], status)
    np.testing.assert_allclose(columns["ENERGY"], ev["energy_kev"], rtol=1e-6)
    np.testing.assert_allclose(columns["DETPHI"], ev["phi"], rtol=1e-6)
    np.testing.assert_allclose(columns["DETX"], ev["x_mm"], rtol=1e-6)
    np.testing.assert_allclose(columns["DETY"], ev["y_mm"], rtol=1e-6)
    np.testing.assert_allclose(columns["W_MOM"], w_mom, rtol=1e-6)
    assert header["OBJECT"] == "Crab"
    assert header["RA_OBJ"] == pytest.approx(83.633)
    assert header["DEC_OBJ"] == pytest.approx(22.0145)
    assert header["TSTART"] == time[0]
    assert header["TSTOP"] == pytest.approx(time[0] + 600.0)
    assert header["ONTIME"] == header["LIVETIME"] == header["TELAPSE"] == pytest.approx(600.0)


def test_header_keywords_and_extensions(tmp_path):
    path = tmp_path / "ev.fits"
    write_level2(path, **_events(), exposure_s=250.0, ra_deg=10.0, dec_deg=-5.0)
    _, header = read_level2(path)
    expected = {
        "TELESCOP": "IXPE", "INSTRUME": "GPD", "DETNAM": "DU1", "TIMESYS": "TT",
        "TIMEUNIT": "s", "TIMEREF": "LOCAL", "MJDREFI": 57754, "MJDREFF": 0.00080074074,
        "TIMEZERO": 0.0, "DEADC": 1.0, "DEADAPP": False, "CREATOR": "astroreco",
        "OBJECT": "SIM", "TSTART": 0.0, "TSTOP": 250.0, "TELAPSE": 250.0,
        "ONTIME": 250.0, "LIVETIME": 250.0,
        "DATE-OBS": "2017-01-01T00:00:00.000", "DATE-END": "2017-01-01T00:04:10.000",
    }
    for key, value in expected.items():
        assert header[key] == value, key
    assert header["DEADAPP"] is False
    assert {spec.name for spec in PRIMARY_KEYWORDS} <= set(header)

    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "EVENTS", "GTI"]
        events = hdul["EVENTS"]
        h = events.header
        names = events.columns.names
        for spec in EVENTS_COLUMNS:
            i = names.index(spec.name) + 1
            assert h[f"TFORM{i}"] == spec.format
            if spec.unit:
                assert h[f"TUNIT{i}"] == spec.unit
        ix, iy, ipi = (names.index(c) + 1 for c in ("X", "Y", "PI"))
        assert h[f"TCTYP{ix}"] == "RA---TAN" and h[f"TCTYP{iy}"] == "DEC--TAN"
        assert h[f"TCRVL{ix}"] == 10.0 and h[f"TCRVL{iy}"] == -5.0
        assert h[f"TCDLT{ix}"] == pytest.approx(-2.6 / 3600)
        assert h[f"TCDLT{iy}"] == pytest.approx(2.6 / 3600)
        assert h[f"TCRPX{ix}"] == h[f"TCRPX{iy}"] == 300.5
        assert (h[f"TLMIN{ipi}"], h[f"TLMAX{ipi}"]) == (0, 374)
        assert (h[f"TLMIN{ix}"], h[f"TLMAX{ix}"]) == (1, 600)
        for key in ("TELESCOP", "DETNAM", "TSTART", "TSTOP", "LIVETIME"):
            assert h[key] == header[key]
        gti = hdul["GTI"]
        np.testing.assert_array_equal(gti.data["START"], [0.0])
        np.testing.assert_array_equal(gti.data["STOP"], [250.0])
        assert gti.header["TSTART"] == 0.0 and gti.header["TSTOP"] == 250.0


def test_default_times_are_uniform_sorted_and_deterministic(tmp_path):
    ev = _events(n=1000)
    write_level2(tmp_path / "a.fits", **ev, exposure_s=100.0)
    write_level2(tmp_path / "b.fits", **ev, exposure_s=100.0)
    ta = read_level2(tmp_path / "a.fits").columns["TIME"]
    tb = read_level2(tmp_path / "b.fits").columns["TIME"]
    np.testing.assert_array_equal(ta, tb)
    assert np.all(np.diff(ta) > 0) and ta[0] > 0.0 and ta[-1] < 100.0
    np.testing.assert_allclose(np.diff(ta), 0.1)


# ----------------------------------------------------------------------------- columns

def test_pi_formula(tmp_path):
    energy = np.array([0.001, 0.0401, 1.0, 2.01, 4.0, 5.9, 11.97, 14.9, 14.999])
    n = energy.size
    path = tmp_path / "ev.fits"
    write_level2(path, phi=np.zeros(n), energy_kev=energy, x_mm=np.zeros(n), y_mm=np.zeros(n))
    pi = read_level2(path).columns["PI"]
    assert pi.dtype == np.int32
    expected = np.clip(np.floor((energy - 0.02) / 0.04 + 0.5), 0, 374)
    np.testing.assert_array_equal(pi, expected)
    assert pi[0] == 0 and pi[-1] == 374
    np.testing.assert_array_equal(energy_to_pi([2.01, 5.9]), [50, 147])
    # ixpeobssim's energy of a channel is its centre: within half a channel of the input
    assert np.all(np.abs(pi_to_energy(pi[1:-1]) - energy[1:-1]) <= 0.02 + 1e-9)


def test_stokes_parameters(tmp_path):
    ev = _events(n=2000)
    path = tmp_path / "ev.fits"
    write_level2(path, **ev)
    columns = read_level2(path).columns
    phi = ev["phi"]
    np.testing.assert_allclose(columns["Q"], 2.0 * np.cos(2.0 * phi), atol=1e-6)
    np.testing.assert_allclose(columns["U"], 2.0 * np.sin(2.0 * phi), atol=1e-6)
    np.testing.assert_allclose(columns["Q"] ** 2 + columns["U"] ** 2, 4.0, rtol=1e-6)
    # a few exact angles
    path2 = tmp_path / "ev2.fits"
    angles = np.array([0.0, np.pi / 4, np.pi / 2, -np.pi / 4])
    write_level2(path2, phi=angles, energy_kev=np.full(4, 3.0), x_mm=np.zeros(4), y_mm=np.zeros(4))
    columns = read_level2(path2).columns
    np.testing.assert_allclose(columns["Q"], [2, 0, -2, 0], atol=1e-6)
    np.testing.assert_allclose(columns["U"], [0, 2, 0, -2], atol=1e-6)


def test_stokes_override_keeps_detphi(tmp_path):
    """Corrected Q, U (e.g. spurious modulation subtracted) go to Q, U; DETPHI stays phi."""
    ev = _events(n=50)
    q = 2.0 * np.cos(2.0 * ev["phi"]) - 0.1
    u = 2.0 * np.sin(2.0 * ev["phi"]) + 0.05
    path = tmp_path / "ev.fits"
    write_level2(path, **ev, stokes=(q, u))
    columns = read_level2(path).columns
    np.testing.assert_allclose(columns["Q"], q, atol=1e-6)
    np.testing.assert_allclose(columns["U"], u, atol=1e-6)
    np.testing.assert_allclose(columns["DETPHI"], ev["phi"], atol=1e-6)
    for bad, match in (((q,), "pair of arrays"), ((q[:3], u), "stokes Q"),
                       ((q, np.where(np.arange(50) == 7, np.nan, u)), "stokes U")):
        with pytest.raises(InputError, match=match):
            write_level2(tmp_path / "bad.fits", **ev, stokes=bad)
    assert not (tmp_path / "bad.fits").exists()


def test_sky_pixels_follow_the_wcs(tmp_path):
    x_mm = np.array([0.0, 1.0, 0.0, -3.0])
    y_mm = np.array([0.0, 0.0, 1.0, 2.0])
    path = tmp_path / "ev.fits"
    write_level2(path, phi=np.zeros(4), energy_kev=np.full(4, 3.0), x_mm=x_mm, y_mm=y_mm,
                 ra_deg=150.0, dec_deg=0.0)
    columns = read_level2(path).columns
    assert (columns["X"][0], columns["Y"][0]) == (300.5, 300.5)
    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wcslib notes on time keywords in a table header
        sky = wcs.WCS(hdul["EVENTS"].header, keysel=["pixel"])
    ra, dec = sky.wcs_pix2world(columns["X"], columns["Y"], 1)
    arcsec_per_mm = np.degrees(1.0 / level2.FOCAL_LENGTH_MM) * 3600.0
    assert ra[0] == pytest.approx(150.0) and dec[0] == pytest.approx(0.0)
    # +DETX -> +X -> towards decreasing RA (West); +DETY -> +Y -> North
    assert (ra[1] - 150.0) * 3600.0 == pytest.approx(-arcsec_per_mm, rel=1e-4)
    assert dec[2] * 3600.0 == pytest.approx(arcsec_per_mm, rel=1e-4)
    assert (ra[3] - 150.0) * 3600.0 == pytest.approx(3.0 * arcsec_per_mm, rel=1e-4)


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "ev.fits"
    write_level2(path, **_events(n=10))
    write_level2(path, **_events(n=20), overwrite=True)
    assert read_level2(path).columns["TIME"].size == 20
    assert _files(tmp_path) == ["ev.fits"]


# ----------------------------------------------------------------------------- atomicity

def _failing_writeto(self, fileobj, *args, **kwargs):
    """Write part of a file, then fail like a full disk would."""
    with open(fileobj, "wb") as fh:
        fh.write(b"SIMPLE  =                    T" + b" " * 4000)
    raise OSError(28, "No space left on device")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(fits.HDUList, "writeto", _failing_writeto)
    path = tmp_path / "ev.fits"
    with pytest.raises(OSError, match="No space left"):
        write_level2(path, **_events())
    assert _files(tmp_path) == []


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ev.fits"
    write_level2(path, **_events(n=10))
    before = path.read_bytes()
    monkeypatch.setattr(fits.HDUList, "writeto", _failing_writeto)
    with pytest.raises(OSError):
        write_level2(path, **_events(n=30), overwrite=True)
    assert _files(tmp_path) == ["ev.fits"]
    assert path.read_bytes() == before


def test_atomic_write_interrupted_by_keyboard(tmp_path, monkeypatch):
    def interrupted(self, fileobj, *args, **kwargs):
        Path(fileobj).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(fits.HDUList, "writeto", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_level2(tmp_path / "ev.fits", **_events())
    assert _files(tmp_path) == []


# ----------------------------------------------------------------------------- bad input

def _bad(**changes):
    ev = _events(n=10)
    ev.update(changes)
    return ev


BAD_INPUTS = {
    "energy_kev length": (_bad(energy_kev=np.full(9, 3.0)), "energy_kev"),
    "x_mm length": (_bad(x_mm=np.zeros(11)), "x_mm"),
    "y_mm length": (_bad(y_mm=np.zeros(3)), "y_mm"),
    "w_mom length": (_bad(w_mom=np.ones(9)), "w_mom"),
    "time length": (_bad(time=np.arange(9.0)), "time"),
    "status length": (_bad(status=np.zeros(12, dtype=int)), "status"),
    "phi NaN": (_bad(phi=np.r_[0.1, np.nan, np.zeros(8)]), "phi"),
    "phi inf": (_bad(phi=np.r_[np.inf, np.zeros(9)]), "phi"),
    "energy NaN": (_bad(energy_kev=np.r_[np.full(9, 3.0), np.nan]), "energy_kev"),
    "energy zero": (_bad(energy_kev=np.r_[0.0, np.full(9, 3.0)]), "energy_kev"),
    "energy negative": (_bad(energy_kev=np.r_[-1.0, np.full(9, 3.0)]), "energy_kev"),
    "energy 15 keV": (_bad(energy_kev=np.r_[np.full(9, 3.0), 15.0]), "energy_kev"),
    "energy too high": (_bad(energy_kev=np.r_[np.full(9, 3.0), 20.0]), "energy_kev"),
    "phi 2-D": (_bad(phi=np.zeros((2, 5))), "phi"),
    "x_mm NaN": (_bad(x_mm=np.r_[np.nan, np.zeros(9)]), "x_mm"),
    "time unsorted": (_bad(time=np.arange(10.0)[::-1]), "time"),
    "time longer than exposure": (_bad(time=np.arange(10.0), exposure_s=5.0), "time"),
    "exposure negative": (_bad(exposure_s=-1.0), "exposure_s"),
    "status float": (_bad(status=np.zeros(10)), "status"),
    "dec out of range": (_bad(dec_deg=91.0), "dec_deg"),
    "object not ascii": (_bad(object_name="Crab\u2606"), "object_name"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_line_input_error(tmp_path, case):
    kwargs, field = BAD_INPUTS[case]
    with pytest.raises(InputError) as info:
        write_level2(tmp_path / "ev.fits", **kwargs)
    message = str(info.value)
    assert field in message and "\n" not in message
    assert isinstance(info.value, ValueError)
    assert _files(tmp_path) == []


def test_existing_file_without_overwrite(tmp_path):
    path = tmp_path / "ev.fits"
    write_level2(path, **_events(n=10))
    before = path.read_bytes()
    with pytest.raises(InputError, match="exists") as info:
        write_level2(path, **_events(n=20))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["ev.fits"]


def test_missing_output_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_level2(tmp_path / "nope" / "ev.fits", **_events(n=10))


# ----------------------------------------------------------------------------- bad files

@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.fits"
    write_level2(path, **_events(n=3000))
    return path


def _assert_read_fails(path, *fragments):
    with pytest.raises(InputError) as info:
        read_level2(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_read_missing_file(tmp_path):
    _assert_read_fails(tmp_path / "absent.fits", "no such file")


def test_read_not_fits(tmp_path):
    path = tmp_path / "text.fits"
    path.write_text("this is not a FITS file\n" * 200)
    _assert_read_fails(path, "not a readable FITS file")
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    _assert_read_fails(empty, "not a readable FITS file")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_read_truncated(good_file, keep):
    raw = good_file.read_bytes()
    good_file.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(InputError) as info:
        read_level2(good_file)
    message = str(info.value)
    assert "\n" not in message
    assert "truncated" in message or "not a readable FITS file" in message


def test_read_corrupted_data_fails_checksum(good_file):
    raw = bytearray(good_file.read_bytes())
    with fits.open(good_file) as hdul:
        offset = hdul["EVENTS"].fileinfo()["datLoc"]
    raw[offset + 100] ^= 0xFF
    good_file.write_bytes(bytes(raw))
    _assert_read_fails(good_file, "corrupt", "Checksum")


def test_read_missing_events_extension(tmp_path):
    path = tmp_path / "noevents.fits"
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "IXPE"
    fits.HDUList([primary]).writeto(path)
    _assert_read_fails(path, "no EVENTS extension")


def test_read_missing_required_columns(good_file, tmp_path):
    with fits.open(good_file) as hdul:
        events = hdul["EVENTS"]
        keep = [c for c in events.columns if c.name not in ("Q", "X")]
        table = fits.BinTableHDU.from_columns(keep, header=events.header, name="EVENTS")
        for key in ("CHECKSUM", "DATASUM"):
            table.header.remove(key, ignore_missing=True)
        path = tmp_path / "nocols.fits"
        fits.HDUList([fits.PrimaryHDU(header=hdul[0].header), table]).writeto(path)
    _assert_read_fails(path, "required column", "Q", "X")
    assert set(REQUIRED_COLUMNS) >= {"Q", "X"}


def test_read_not_ixpe(good_file):
    with fits.open(good_file, mode="update") as hdul:
        hdul[0].header["TELESCOP"] = "XMM"
    _assert_read_fails(good_file, "not an IXPE file")


# ----------------------------------------------------------------------------- ixpeobssim

IRF_NAME = "ixpe:obssim20240101:v13"  # ixpeobssim 33's default IRF set, shipped in its caldb


def _modulated_angles(rng, n, m, phi0):
    """Angles with density proportional to 1 + m cos(2 (phi - phi0)), by rejection."""
    out = np.empty(0)
    while out.size < n:
        phi = rng.uniform(-np.pi, np.pi, 2 * n)
        keep = rng.uniform(0.0, 1.0 + m, 2 * n) < 1.0 + m * np.cos(2.0 * (phi - phi0))
        out = np.concatenate([out, phi[keep]])
    return out[:n]


def _ixpeobssim_command(name):
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", f"ixpeobssim.bin.{name}"]


@pytest.mark.interop
def test_xpbin_pcube_recovers_angle_and_modulation(tmp_path, monkeypatch):
    # ixpeobssim creates its data folders at import time: keep them out of $HOME
    monkeypatch.setenv("IXPEOBSSIM_DATA", str(tmp_path / "ixpeobssimdata"))
    monkeypatch.setenv("IXPEOBSSIM_AUXFILES", str(tmp_path / "ixpeobssimaux"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pytest.importorskip("ixpeobssim")

    n, m, phi0, energy = 200_000, 0.3, 0.5, 4.0
    rng = np.random.default_rng(20240101)
    phi = _modulated_angles(rng, n, m, phi0)
    path = tmp_path / "events.fits"
    write_level2(path, phi=phi, energy_kev=np.full(n, energy),
                 x_mm=rng.normal(0.0, 0.3, n), y_mm=rng.normal(0.0, 0.3, n), exposure_s=2000.0)

    cmd = _ixpeobssim_command("xpbin") + [
        str(path), "--algorithm", "PCUBE", "--irfname", IRF_NAME,
        "--ebinalg", "LIN", "--emin", "2.0", "--emax", "8.0", "--ebins", "1",
    ]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=os.environ.copy())
    pcube = tmp_path / "events_pcube.fits"
    assert run.returncode == 0 and pcube.exists(), (run.stdout + run.stderr)[-3000:]

    with fits.open(pcube) as hdul:
        table = hdul["POLARIZATION"].data
        counts, mu = int(table["COUNTS"][0]), float(table["MU"][0])
        pd, pd_err = float(table["PD"][0]), float(table["PD_ERR"][0])
        pa, pa_err = float(table["PA"][0]), float(table["PA_ERR"][0])
    assert counts == n

    # the modulation factor PCUBE used is the IRF's at the PI channel centre energy
    e_pi = float(pi_to_energy(energy_to_pi(energy)))
    code = (f"from ixpeobssim.irf import load_modf; "
            f"print(float(load_modf({IRF_NAME!r}, 1)({e_pi!r})))")
    mu_run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env=os.environ.copy())
    assert mu_run.returncode == 0, mu_run.stderr[-2000:]
    mu_irf = float(mu_run.stdout.strip().splitlines()[-1])
    assert mu == pytest.approx(mu_irf, rel=1e-5)

    # PA: degrees, counter-clockwise from +X (= detector x), in (-90, 90]
    delta = (pa - np.degrees(phi0) + 90.0) % 180.0 - 90.0
    assert abs(delta) < 3.0 * pa_err, (pa, pa_err)
    # PD is the modulation divided by mu
    assert abs(pd * mu - m) < 3.0 * pd_err * mu, (pd, pd_err, mu)
