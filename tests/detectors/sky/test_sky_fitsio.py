"""Sky file formats: counts cubes, background cubes, FITS catalogs and DS9 regions."""

import re

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from astroreco.detectors.sky.catalog import (CATALOG_COLUMNS, read_catalog, source_names,
                                             write_catalog, write_regions)
from astroreco.detectors.sky.fitsio import (SkyCube, read_counts_cube, write_background,
                                            write_counts_cube)
from astroreco.errors import InputError

EDGES_GEV = np.array([1.0, 3.0, 10.0, 100.0])


def make_wcs(ctype=("GLON-CAR", "GLAT-CAR"), crval=(30.0, 0.0), n=16, cdelt=0.1):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = list(ctype)
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    wcs.wcs.cdelt = [-cdelt, cdelt]
    return wcs


def make_cube(n=16, **kwargs):
    rng = np.random.default_rng(7)
    background = np.full((3, n, n), 2.5)
    counts = rng.poisson(background).astype(np.int32)
    return SkyCube(counts, kwargs.pop("wcs", make_wcs(n=n)), EDGES_GEV, background=background,
                   **kwargs)


def write_raw(path, data=None, header=None, ebounds=True, e_unit="keV", n_rows=3,
              columns=("E_MIN", "E_MAX")):
    """A counts cube written with astropy directly (as another tool would), no validation."""
    data = np.ones((3, 16, 16), np.float32) if data is None else data
    hdr = make_wcs().to_header()
    hdr["CTYPE3"], hdr["CUNIT3"], hdr["CRVAL3"] = "Energy", "MeV", 1000.0
    for key, value in (header or {}).items():
        if value is None:
            del hdr[key]
        else:
            hdr[key] = value
    hdus = [fits.PrimaryHDU(data, hdr)]
    if ebounds:
        kev = EDGES_GEV[: n_rows + 1] * 1e6 if n_rows <= 3 else np.geomspace(1e6, 1e8, n_rows + 1)
        cols = [fits.Column(name=c, format="D", unit=e_unit,
                            array=(kev[:-1] if c == "E_MIN" else kev[1:])) for c in columns]
        hdus.append(fits.BinTableHDU.from_columns(cols, name="EBOUNDS"))
    fits.HDUList(hdus).writeto(path)
    return path


# --------------------------------------------------------------------------------------
# Counts cube
# --------------------------------------------------------------------------------------

def test_cube_round_trip(tmp_path):
    cube = make_cube(exposure=4e11, meta={"OBJECT": "patch 1", "TELESCOP": "SIM"})
    write_counts_cube(tmp_path / "ccube.fits", cube)
    write_background(tmp_path / "bkg.fits", cube)
    back = read_counts_cube(tmp_path / "ccube.fits", background=tmp_path / "bkg.fits")
    assert back.counts.dtype == cube.counts.dtype
    np.testing.assert_array_equal(back.counts, cube.counts)
    np.testing.assert_allclose(back.energy_edges_gev, EDGES_GEV, rtol=1e-12)
    np.testing.assert_array_equal(back.background, cube.background)
    np.testing.assert_array_equal(back.exposure, np.full(cube.counts.shape, 4e11))
    assert list(back.wcs.wcs.ctype) == ["GLON-CAR", "GLAT-CAR"]
    np.testing.assert_allclose(back.wcs.wcs.crval, [30.0, 0.0])
    np.testing.assert_allclose(back.wcs.pixel_scale_matrix, cube.wcs.pixel_scale_matrix)
    assert back.meta["OBJECT"] == "patch 1" and back.meta["TELESCOP"] == "SIM"
    assert back.frame == "galactic"
    with fits.open(tmp_path / "ccube.fits") as hdul:
        assert hdul["EBOUNDS"].columns["E_MIN"].unit == "keV"
        np.testing.assert_allclose(hdul["EBOUNDS"].data["E_MIN"], [1e6, 3e6, 1e7])


def test_equatorial_tan_cube_is_kept_as_is(tmp_path):
    wcs = make_wcs(("RA---TAN", "DEC--TAN"), crval=(83.6, 22.0))
    write_counts_cube(tmp_path / "c.fits", make_cube(wcs=wcs))
    back = read_counts_cube(tmp_path / "c.fits")
    assert back.frame == "icrs" and list(back.wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]


def test_reads_gtbin_like_file_with_other_units(tmp_path):
    write_raw(tmp_path / "kev.fits", e_unit=None)  # no TUNIT: keV as gtbin writes
    write_raw(tmp_path / "mev.fits", e_unit="MeV")
    np.testing.assert_allclose(read_counts_cube(tmp_path / "kev.fits").energy_edges_gev,
                               EDGES_GEV)
    np.testing.assert_allclose(read_counts_cube(tmp_path / "mev.fits").energy_edges_gev,
                               EDGES_GEV * 1e3)


def test_write_refuses_existing_file(tmp_path):
    cube = make_cube()
    write_counts_cube(tmp_path / "c.fits", cube)
    with pytest.raises(InputError, match="exists"):
        write_counts_cube(tmp_path / "c.fits", cube)
    write_counts_cube(tmp_path / "c.fits", cube, overwrite=True)
    with pytest.raises(InputError, match="background"):
        write_background(tmp_path / "b.fits", SkyCube(cube.counts, cube.wcs, EDGES_GEV))


def _nan_counts():
    data = np.ones((3, 16, 16), np.float32)
    data[1, 2, 3] = np.nan
    return data


BAD_CUBES = {
    "no image": (dict(data=np.zeros(0)), r"no image in the PRIMARY"),
    "2-D image": (dict(data=np.ones((16, 16))), r"has 2 axes, expected 3"),
    "no CTYPE": (dict(header={"CTYPE1": None, "CTYPE2": None}), r"CTYPE1/CTYPE2 missing"),
    "projection": (dict(header={"CTYPE1": "GLON-MOL", "CTYPE2": "GLAT-MOL"}),
                   r"projection of CTYPE 'GLON-MOL' not supported"),
    "swapped axes": (dict(header={"CTYPE1": "GLAT-CAR", "CTYPE2": "GLON-CAR"}),
                     r"longitude on axis 1"),
    "no EBOUNDS": (dict(ebounds=False), r"no EBOUNDS extension"),
    "EBOUNDS column": (dict(columns=("E_MIN",)), r"EBOUNDS lacks column\(s\) E_MAX"),
    "EBOUNDS rows": (dict(n_rows=2), r"EBOUNDS has 2 rows but the cube has 3"),
    "EBOUNDS unit": (dict(e_unit="erg"), r"TUNIT 'erg'"),
    "NaN": (dict(data=_nan_counts()),
            r"counts: 1 NaN/infinite value\(s\), first at .* \(1, 2, 3\)"),
    "negative": (dict(data=-np.ones((3, 16, 16))), r"counts: 768 negative value"),
}


@pytest.mark.parametrize("case", list(BAD_CUBES))
def test_bad_counts_cube(tmp_path, case):
    kwargs, message = BAD_CUBES[case]
    path = write_raw(tmp_path / "bad.fits", **kwargs)
    with pytest.raises(InputError, match=message) as info:
        read_counts_cube(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_counts_cube(tmp_path / "nope.fits")
    (tmp_path / "text.fits").write_text("not a FITS file at all\n" * 200)
    with pytest.raises(InputError, match="not a readable FITS file"):
        read_counts_cube(tmp_path / "text.fits")
    write_counts_cube(tmp_path / "c.fits", make_cube(n=64))
    raw = (tmp_path / "c.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[: 2880 * 3])
    with pytest.raises(InputError, match="truncated|not a readable FITS file"):
        read_counts_cube(tmp_path / "cut.fits")


def test_background_mismatch(tmp_path):
    cube = make_cube()
    write_counts_cube(tmp_path / "c.fits", cube)
    small = SkyCube(np.zeros((3, 8, 8)), make_wcs(n=8), EDGES_GEV, background=np.ones((3, 8, 8)))
    write_background(tmp_path / "small.fits", small)
    with pytest.raises(InputError, match=r"small.fits: background shape \(3, 8, 8\) differs"):
        read_counts_cube(tmp_path / "c.fits", background=tmp_path / "small.fits")
    moved = SkyCube(cube.counts, make_wcs(crval=(31.0, 0.0)), EDGES_GEV,
                    background=cube.background)
    write_background(tmp_path / "moved.fits", moved)
    with pytest.raises(InputError, match="background WCS .* differs"):
        read_counts_cube(tmp_path / "c.fits", background=tmp_path / "moved.fits")
    negative = write_raw(tmp_path / "neg.fits", data=-np.ones((3, 16, 16)))
    with pytest.raises(InputError, match="neg.fits: background: 768 negative"):
        read_counts_cube(tmp_path / "c.fits", background=negative)


@pytest.mark.parametrize("kwargs, message", [
    (dict(energy_edges_gev=[1.0, 10.0, 100.0]), r"3 edges for 3 energy planes"),
    (dict(energy_edges_gev=[1.0, 3.0, 2.0, 100.0]), r"not strictly increasing"),
    (dict(wcs="GLON-CAR"), r"wcs: expected an astropy.wcs.WCS"),
    (dict(wcs=WCS(naxis=3)), r"wcs: expected a 2-D celestial WCS"),
    (dict(wcs=make_wcs(("GLON-SIN", "GLAT-SIN"))), r"'GLON-SIN' not supported"),
    (dict(background=np.ones((3, 4, 4))), r"background: shape \(3, 4, 4\) differs"),
    (dict(exposure=np.ones(5)), r"exposure: shape \(5,\) does not broadcast"),
    (dict(meta={"lower": 1}), r"meta: key 'lower' is not a FITS keyword"),
])
def test_skycube_validation(kwargs, message):
    args = dict(counts=np.zeros((3, 16, 16)), wcs=make_wcs(), energy_edges_gev=EDGES_GEV)
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        SkyCube(**args)


def test_failing_write_leaves_nothing_behind(tmp_path, monkeypatch):
    cube = make_cube()
    write_counts_cube(tmp_path / "old.fits", cube)
    before = (tmp_path / "old.fits").read_bytes()

    def broken_writeto(self, name, *args, **kwargs):
        with open(name, "wb") as fh:
            fh.write(b"SIMPLE  =                    T" + b" " * 100)
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", broken_writeto)
    with pytest.raises(OSError, match="disk full"):
        write_counts_cube(tmp_path / "new.fits", cube)
    with pytest.raises(OSError, match="disk full"):
        write_counts_cube(tmp_path / "old.fits", cube, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        write_catalog(tmp_path / "cat.fits", {"GLON": [1.0], "GLAT": [2.0]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.fits"]
    assert (tmp_path / "old.fits").read_bytes() == before


# --------------------------------------------------------------------------------------
# Catalog and regions
# --------------------------------------------------------------------------------------

def full_table():
    return {
        "GLON": np.array([359.95, 5.1239, 120.0]), "GLAT": np.array([0.5, -1.2341, 45.0]),
        "POS_ERR": np.array([0.05, 0.1, 0.02]), "POS_ERR_95": np.array([0.12, 0.25, 0.05]),
        "FLUX": np.array([1e-9, 3e-10, 2e-8]), "FLUX_ERR": np.array([1e-10, 1e-10, 1e-9]),
        "P_AGN": np.array([0.9, 0.2, 0.5]), "P_PSR": np.array([0.1, 0.8, 0.5]),
        "EXT_CLASS": np.array([0, 1, 2]), "P_EXT0": np.array([0.8, 0.1, 0.0]),
        "P_EXT1": np.array([0.1, 0.8, 0.1]), "P_EXT2": np.array([0.1, 0.1, 0.9]),
        "DETECTION": np.array([7.5, 5.2, 40.0]),
    }


def test_catalog_round_trip(tmp_path):
    table = full_table()
    write_catalog(tmp_path / "cat.fits", table, method="sep")
    columns, header = read_catalog(tmp_path / "cat.fits")
    for key, values in table.items():
        np.testing.assert_allclose(columns[key], values, rtol=1e-6, err_msg=key)
    icrs = SkyCoord(table["GLON"], table["GLAT"], unit="deg", frame="galactic").icrs
    np.testing.assert_allclose(columns["RA"], icrs.ra.deg, atol=1e-9)
    np.testing.assert_allclose(columns["DEC"], icrs.dec.deg, atol=1e-9)
    assert columns["NAME"].tolist() == ["ARC G359.950+00.500", "ARC G005.123-01.234",
                                        "ARC G120.000+45.000"]
    assert header["METHOD"] == "sep" and header["CREATOR"].startswith("astroreco")
    with fits.open(tmp_path / "cat.fits") as hdul:
        hdr = hdul["CATALOG"].header
        assert all(f"TUNIT{i}" in hdr for i in range(1, len(CATALOG_COLUMNS) + 1))
        assert hdul["CATALOG"].columns["FLUX"].unit == "ph cm-2 s-1"
        assert hdul["CATALOG"].columns["POS_ERR"].unit == "deg"


def test_catalog_optional_columns_aliases_and_icrs(tmp_path):
    result = {"l_deg": np.array([10.0, 20.0]), "b_deg": np.array([1.0, -2.0]),
              "significance": np.array([6.0, 9.0]), "x_pix": [3.0, 4.0], "y_pix": [5.0, 6.0]}
    write_catalog(tmp_path / "a.fits", result, method="peaks")
    columns, _ = read_catalog(tmp_path / "a.fits")
    assert np.all(np.isnan(columns["FLUX"])) and np.all(np.isnan(columns["P_AGN"]))
    assert columns["EXT_CLASS"].tolist() == [-1, -1]
    np.testing.assert_allclose(columns["DETECTION"], [6.0, 9.0])
    np.testing.assert_allclose(columns["X_PIX"], [3.0, 4.0])

    write_catalog(tmp_path / "b.fits", {"RA": [83.633], "DEC": [22.0145]}, wcs_frame="icrs")
    columns, _ = read_catalog(tmp_path / "b.fits")
    crab = SkyCoord(83.633, 22.0145, unit="deg").galactic
    np.testing.assert_allclose([columns["GLON"][0], columns["GLAT"][0]],
                               [crab.l.deg, crab.b.deg], atol=1e-9)

    write_catalog(tmp_path / "empty.fits", {"GLON": [], "GLAT": []})
    columns, _ = read_catalog(tmp_path / "empty.fits")
    assert columns["GLON"].shape == (0,) and columns["NAME"].shape == (0,)


@pytest.mark.parametrize("table, message", [
    ({"GLON": [1.0], "GLAT": [2.0], "SPIN": [1]}, r"unknown column 'SPIN'"),
    ({"GLON": [1.0, 2.0], "GLAT": [2.0]}, r"columns of different lengths"),
    ({"GLON": [1.0]}, r"frame 'galactic' needs column\(s\) GLAT"),
    ({"GLON": [1.0], "GLAT": [91.0]}, r"GLAT outside \[-90, 90\]"),
    ({"GLON": [np.nan], "GLAT": [1.0]}, r"must be finite"),
    ({"GLON": [1.0], "GLAT": [2.0], "P_AGN": [1.5]}, r"'P_AGN'\]: probabilities outside"),
    ({"GLON": [1.0], "GLAT": [2.0], "EXT_CLASS": [3]}, r"EXT_CLASS'\]: expected 0, 1, 2"),
    ({"GLON": [1.0], "GLAT": [2.0], "POS_ERR": [-0.1]}, r"'POS_ERR'\]: negative"),
    ({"GLON": [1.0], "l_deg": [1.0], "GLAT": [2.0]}, r"GLON given twice"),
    ([1, 2], r"expected a dict of arrays"),
])
def test_bad_catalog_input(tmp_path, table, message):
    with pytest.raises(InputError, match=message):
        write_catalog(tmp_path / "cat.fits", table)
    assert not any(tmp_path.iterdir())


def test_read_catalog_errors(tmp_path):
    fits.PrimaryHDU(np.zeros((2, 2))).writeto(tmp_path / "img.fits")
    with pytest.raises(InputError, match="img.fits: no binary table"):
        read_catalog(tmp_path / "img.fits")
    cols = [fits.Column(name="FOO", format="E", array=np.zeros(2))]
    fits.BinTableHDU.from_columns(cols, name="CATALOG").writeto(tmp_path / "foo.fits")
    with pytest.raises(InputError, match=r"foo.fits: CATALOG: frame 'icrs' needs column\(s\) RA"):
        read_catalog(tmp_path / "foo.fits")


def test_source_names():
    names = source_names([0.0004, 0.0004, 0.0004, 359.9999], [-0.0001, -0.0001, -0.0001, 89.9999])
    assert names.tolist() == ["ARC G000.000-00.000a", "ARC G000.000-00.000b",
                              "ARC G000.000-00.000c", "ARC G359.999+89.999"]
    assert all(re.fullmatch(r"ARC G\d{3}\.\d{3}[+-]\d{2}\.\d{3}[a-z]?", n) for n in names)


def test_ds9_regions(tmp_path):
    table = {"GLON": [10.5, 200.25], "GLAT": [-1.25, 30.0], "POS_ERR": [0.05, np.nan],
             "NAME": ["ARC A", "ARC B"]}
    write_regions(tmp_path / "src.reg", table, color="red")
    lines = (tmp_path / "src.reg").read_text().splitlines()
    assert lines[0] == "# Region file format: DS9 version 4.1"
    assert lines[2].startswith("global color=red")
    assert lines[3] == "galactic"
    assert lines[4:] == ['circle(10.500000,-1.250000,180.000") # text={ARC A}',
                         'circle(200.250000,30.000000,360.000") # text={ARC B}']
    write_regions(tmp_path / "fixed.reg", {"l_deg": [1.0], "b_deg": [2.0]}, radius=0.2)
    last = (tmp_path / "fixed.reg").read_text().splitlines()[-1]
    assert last == 'circle(1.000000,2.000000,720.000") # text={ARC G001.000+02.000}'
    with pytest.raises(InputError, match="color"):
        write_regions(tmp_path / "x.reg", table, color="red; rm")
    with pytest.raises(InputError, match="exists"):
        write_regions(tmp_path / "src.reg", table)

