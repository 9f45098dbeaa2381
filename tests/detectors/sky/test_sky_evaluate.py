"""Scoring sky detections against the truth: hand-made tables, synthetic detections of known
quality (perfect, shifted, Gaussian noise of known sigma), the classical detection end to end,
the written outputs, bad input."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from astroreco.detectors.sky import evaluate as ev
from astroreco.detectors.sky import pipeline, scoring
from astroreco.errors import InputError
from astroreco.io.store import write_reconstruction

N_PATCHES, SEED = 6, 3
HIGH_B = {"abs_b_range_deg": (40.0, 90.0)}
#: per-axis position noise (deg) of the noisy detector: drawn per source in this range
SIGMA_RANGE = (0.02, 0.05)
FLUX_REL_ERR = 0.2
NN_FIELDS = (("x_pix", "f8", "pix", ""), ("y_pix", "f8", "pix", ""),
             ("l_deg", "f8", "deg", ""), ("b_deg", "f8", "deg", ""),
             ("score", "f8", "", "probability"),
             ("pos_sigma_deg", "f8", "deg", "1-sigma per axis"),
             ("flux", "f8", "ph cm-2 s-1", ""), ("flux_err", "f8", "ph cm-2 s-1", ""),
             ("p_agn", "f8", "", ""), ("p_psr", "f8", "", ""), ("p_ext0", "f8", "", ""),
             ("p_ext1", "f8", "", ""), ("p_ext2", "f8", "", ""))


def _store(path, name, table, patch, n_patches):
    """Write a flat detection table (rows sorted by ``patch``) as a ragged reconstruction."""
    order = np.argsort(patch, kind="stable")
    sizes = np.bincount(np.asarray(patch)[order], minlength=n_patches)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    write_reconstruction(path, name, {k: np.asarray(v)[order] for k, v in table.items()},
                         fields=NN_FIELDS, offsets=offsets, config={"synthetic": True})


def _at_pixels(path, patch, x, y):
    """Galactic positions of pixel positions in their patches."""
    g = pipeline.geometry_of(path)
    centres = pipeline.read_patches(path).centres
    l, b = np.empty(len(x)), np.empty(len(x))
    for k in np.unique(patch):
        s = patch == k
        l[s], b[s] = g.pixel_to_galactic(x[s], y[s], *centres[k])
    return l, b


@pytest.fixture(scope="module")
def patch_file(tmp_path_factory):
    """6 high-latitude patches, the sep detection, and three synthetic detectors: perfect,
    shifted beyond the match radius, and noisy with known position / flux errors."""
    path = tmp_path_factory.mktemp("sky_eval") / "patches.h5"
    pipeline.simulate(path, n_patches=N_PATCHES, seed=SEED, progress=False, **HIGH_B)
    pipeline.detect_classical(path, method="sep", progress=False)
    t = pipeline.read_truth(path)
    pix = pipeline.geometry_of(path).pixel_deg
    inside = t["in_patch"]
    rng = np.random.default_rng(11)
    p, x, y = t["patch"][inside], t["x_pix"][inside], t["y_pix"][inside]
    s_true = t["flux"][inside]
    n = p.size

    perfect = {"x_pix": x, "y_pix": y, "l_deg": t["l_deg"][inside],
               "b_deg": t["b_deg"][inside], "score": s_true / s_true.max()}
    _store(path, "perfect", perfect, p, N_PATCHES)

    # shifted by 3 match radii, and only those then farther than the radius from every
    # true source of the patch (margin included): no possible match
    xs, ys = x + 0.9 / pix, y + 0.3 / pix
    far = np.ones(n, bool)
    for k in range(N_PATCHES):
        s, st = p == k, t["patch"] == k
        d = np.hypot(xs[s, None] - t["x_pix"][None, st], ys[s, None] - t["y_pix"][None, st])
        far[s] = d.min(axis=1) > 1.05 * 0.3 / pix
    ls, bs = _at_pixels(path, p[far], xs[far], ys[far])
    _store(path, "shifted", {"x_pix": xs[far], "y_pix": ys[far], "l_deg": ls, "b_deg": bs,
                             "score": rng.uniform(size=far.sum())}, p[far], N_PATCHES)

    # Gaussian position noise of known sigma per source, flux noise of known error,
    # classes right 90 % of the time, extension always right
    sigma = rng.uniform(*SIGMA_RANGE, n)
    xn = x + rng.normal(size=n) * sigma / pix
    yn = y + rng.normal(size=n) * sigma / pix
    ln, bn = _at_pixels(path, p, xn, yn)
    flux_err = FLUX_REL_ERR * s_true
    right = rng.uniform(size=n) < 0.9
    cls = t["cls"][inside].astype(int)
    pred_cls = np.where(right, cls, 1 - cls)
    p_psr = np.where(pred_cls == 1, 0.8, 0.2)
    ext = np.eye(3)[t["ext_class"][inside].astype(int)]
    noisy = {"x_pix": xn, "y_pix": yn, "l_deg": ln, "b_deg": bn, "score": rng.uniform(size=n),
             "pos_sigma_deg": sigma, "flux": s_true + rng.normal(size=n) * flux_err,
             "flux_err": flux_err, "p_agn": 1 - p_psr, "p_psr": p_psr,
             "p_ext0": ext[:, 0], "p_ext1": ext[:, 1], "p_ext2": ext[:, 2]}
    _store(path, "noisy", noisy, p, N_PATCHES)
    return path, {"n_true": n, "n_shifted": int(far.sum()),
                  "class_accuracy": float(np.mean(pred_cls == cls))}


@pytest.fixture(scope="module")
def result(patch_file):
    return scoring.score(patch_file[0])


def test_score_tables_by_hand():
    """Margin handling, purity, recall and the operating point on a table worked by hand."""
    truth = {"patch": [0, 0, 0, 0, 1], "x_pix": [10.0, 30.0, 50.0, -3.0, 10.0],
             "y_pix": [10.0, 30.0, 50.0, 20.0, 10.0],
             "in_patch": [True, True, True, False, True],
             "flux": [1e-9, 2e-9, 1e-11, 1e-9, 5e-10]}
    # patch 0: on source 0, on nothing, on source 1, on the margin source; patch 1: on
    # nothing (its source sits at the position of patch 0's detection 0: no cross-patch pairs)
    det = {"patch": [0, 0, 0, 0, 1], "x_pix": [10.4, 40.0, 30.0, -2.5, 40.0],
           "y_pix": [10.0, 40.0, 29.5, 20.0, 40.0], "score": [0.9, 0.8, 0.7, 0.95, 0.6]}
    m = scoring.score_tables(truth, {"a": det}, pixel_deg=0.1, flux_threshold=4e-10,
                        purity_target=0.95)["methods"]["a"]
    c = m["counts"]
    assert (c["n_detections"], c["n_margin"], c["n_counted"], c["tp"], c["fp"]) == (5, 1, 4,
                                                                                    2, 2)
    assert (c["n_true"], c["n_true_above"], c["n_matched_true_above"]) == (4, 3, 2)
    assert m["purity"] == pytest.approx(0.5)
    assert m["recall_above"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    pr = m["pr_curve"]
    assert pr["threshold"] == [0.9, 0.8, 0.7, 0.6]
    np.testing.assert_allclose(pr["purity"], [1, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(pr["recall"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    op = m["operating_point"]
    assert (op["threshold"], op["purity"], op["n_detections"]) == (0.9, 1.0, 1)
    assert op["recall"] == pytest.approx(1 / 3) and op["f1"] == pytest.approx(0.5)
    op = scoring.score_tables(truth, {"a": det}, pixel_deg=0.1,
                         purity_target=0.6)["methods"]["a"]["operating_point"]
    assert op["threshold"] == 0.7 and op["recall"] == pytest.approx(2 / 3)
    # no pair of l/b: offsets from pixels
    loc = m["localisation"]
    assert loc["offset_from"].startswith("pixel") and loc["n_pairs"] == 2
    assert loc["r95_deg"] == pytest.approx(np.quantile([0.04, 0.05], 0.95))
    # never pure enough: no operating point
    det_bad = dict(det, score=[0.1, 0.9, 0.2, 0.3, 0.4])
    op = scoring.score_tables(truth, {"a": det_bad}, pixel_deg=0.1,
                         purity_target=0.99)["methods"]["a"]["operating_point"]
    assert op["threshold"] is None and op["recall"] is None


def test_fast_match_equals_one_global_optimal_match():
    """The isolated-pair shortcut and the blocks of patches give the optimal matching."""
    from astroreco.stats.matching import match_sources

    rng = np.random.default_rng(5)
    n_patch, per = 150, 60
    patch = np.repeat(np.arange(n_patch), per)
    x, y = rng.uniform(-10, 74, patch.size), rng.uniform(-10, 74, patch.size)
    keep = rng.uniform(size=patch.size) < 0.7
    n_fake = 3000   # plus spurious detections: crowded groups
    dp = np.r_[patch[keep], rng.integers(0, n_patch, n_fake)]
    xd = np.r_[x[keep] + rng.normal(0, 1.5, keep.sum()), rng.uniform(0, 63, n_fake)]
    yd = np.r_[y[keep] + rng.normal(0, 1.5, keep.sum()), rng.uniform(0, 63, n_fake)]
    ti, di = scoring._match({"x_pix": x, "y_pix": y, "patch": patch},
                       {"x_pix": xd, "y_pix": yd, "patch": dp}, 2.0)
    m = match_sources(x + patch * 300.0, y, xd + dp * 300.0, yd, 2.0)
    assert len(ti) == len(m["true_index"]) > 1000
    assert len(set(ti.tolist())) == len(ti) and len(set(di.tolist())) == len(di)
    assert np.all(patch[ti] == dp[di])
    total = np.hypot(x[ti] - xd[di], y[ti] - yd[di]).sum()
    assert total == pytest.approx(m["distance"].sum(), rel=1e-12)


def test_sky_offsets_match_astropy():
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(1)
    l, b = rng.uniform(0, 360, 200), rng.uniform(-89, 89, 200)
    l2 = (l + rng.normal(0, 0.2, 200) / np.cos(np.radians(b))) % 360
    b2 = np.clip(b + rng.normal(0, 0.2, 200), -90, 90)
    dist, east, north = scoring.sky_offsets(l, b, l2, b2)
    ref = SkyCoord(l, b, unit="deg", frame="galactic").separation(
        SkyCoord(l2, b2, unit="deg", frame="galactic")).deg
    np.testing.assert_allclose(dist, ref, atol=1e-9)
    # tangent-plane offsets: same length to second order, signs of the l/b differences
    np.testing.assert_allclose(np.hypot(east, north), dist, rtol=2e-3)
    dl = (l2 - l + 180) % 360 - 180
    assert np.all(np.sign(east) == np.sign(dl)) and np.all(np.sign(north) == np.sign(b2 - b))


def test_perfect_detections(result, patch_file):
    m = result["methods"]["perfect"]
    n = patch_file[1]["n_true"]
    assert m["counts"]["n_detections"] == m["counts"]["tp"] == n == m["counts"]["n_true"]
    assert m["purity"] == 1.0 and m["recall_above"] == 1.0 and m["f1"] == 1.0
    assert m["counts"]["fp"] == 0
    assert m["localisation"]["r95_deg"] < 1e-6
    assert m["localisation"]["fraction_within_above"] == 1.0
    op = m["operating_point"]
    assert op["recall"] == 1.0 and op["purity"] == 1.0
    # the operating point keeps the fewest detections that reach full recall: every
    # source at or above the flux threshold, ranked by flux
    assert op["n_detections"] == m["counts"]["n_true_above"]
    rvf = m["recall_vs_flux"]
    assert all(r in (None, 1.0) for r in rvf["recall"])
    assert sum(rvf["n_true"]) <= n and rvf["n_true"] == rvf["n_matched"]
    assert m["position_pulls"] is None and m["flux"] is None and m["classification"] is None


def test_shifted_detections_match_nothing(result, patch_file):
    m = result["methods"]["shifted"]
    assert m["counts"]["n_detections"] == patch_file[1]["n_shifted"] > 100
    assert m["counts"]["tp"] == 0 and m["purity"] == 0.0 and m["recall_above"] == 0.0
    assert m["f1"] is None and m["operating_point"]["recall"] is None
    assert m["localisation"]["n_pairs"] == 0 and m["localisation"]["r68_deg"] is None
    # only a wider match radius than the shift finds them again
    wide = scoring.score(patch_file[0], "shifted", match_radius_deg=1.2)["methods"]["shifted"]
    assert wide["purity"] > 0.5


def test_noisy_detections_pulls_and_classes(result, patch_file):
    m = result["methods"]["noisy"]
    n = patch_file[1]["n_true"]
    assert m["counts"]["tp"] >= 0.98 * n
    pulls = m["position_pulls"]
    assert pulls["n"] >= 300
    assert 0.8 < pulls["std"] < 1.2 and abs(pulls["mean"]) < 0.15
    for axis in ("east", "north"):
        assert 0.8 < pulls[axis]["std"] < 1.2
    assert pulls["fraction_within_r68"] == pytest.approx(0.68, abs=0.07)
    assert pulls["fraction_within_r95"] == pytest.approx(0.95, abs=0.04)
    assert SIGMA_RANGE[0] < pulls["median_sigma_deg"] < SIGMA_RANGE[1]
    # the localisation follows the injected noise: r68 of a 2-D Gaussian is 1.515 sigma
    loc = m["localisation"]
    assert 1.515 * SIGMA_RANGE[0] < loc["r68_deg"] < 1.515 * SIGMA_RANGE[1]
    assert loc["fraction_within_above"] > 0.9
    flux = m["flux"]
    assert 0.8 < flux["pulls"]["std"] < 1.2 and abs(flux["pulls"]["mean"]) < 0.15
    assert abs(flux["bias_median"]) < 0.05
    # 20% Gaussian errors are nearly log-normal ones: the log10 pulls are unit too
    assert 0.8 < flux["log_pulls"]["std"] < 1.25 and flux["log_pulls"]["n"] > 0.95 * n
    # the pairs above the flux threshold: every bright source matched (a dozen here)
    assert flux["pulls_above"]["n"] == m["counts"]["n_matched_true_above"] > 5
    assert 0.3 < flux["pulls_above"]["std"] < 1.7
    binned = [r for r in flux["pulls_per_bin"] if "std" in r]
    assert binned and sum(r["n"] for r in flux["pulls_per_bin"]) <= flux["pulls"]["n"]
    assert all(0.7 < r["std"] < 1.3 for r in binned if r["n"] >= 50)
    assert any(r["n"] >= 50 for r in binned)
    cls = m["classification"]
    mat = np.array(cls["source_class"]["matrix"])
    assert mat.shape == (2, 2) and mat.sum() == m["counts"]["tp"]
    assert cls["source_class"]["accuracy"] == pytest.approx(patch_file[1]["class_accuracy"],
                                                            abs=0.02)
    # a swap of two close sources by the matching is the only way to get one wrong
    assert cls["extension"]["accuracy"] > 0.97
    assert cls["point_vs_extended_accuracy"] > 0.97
    assert np.array(cls["extension"]["matrix"]).shape == (3, 3)


def test_classical_detection_scored(result):
    m = result["methods"]["sep"]
    assert m["ranking"] == "significance"
    assert m["counts"]["n_detections"] > 0 and 0.5 < m["purity"] <= 1.0
    assert m["localisation"]["offset_from"].startswith("great circle")
    assert m["localisation"]["r68_deg"] < 0.3
    curve = m["pr_curve"]
    assert curve["threshold"] == sorted(curve["threshold"], reverse=True)
    assert curve["n_detections"][-1] == m["counts"]["n_counted"]
    assert curve["purity"][-1] == pytest.approx(m["purity"])
    assert curve["recall"][-1] == pytest.approx(m["recall_above"])
    json.dumps(result, allow_nan=False)   # JSON-able, no NaN
    text = ev.table(result)
    assert text.count("\n") == 1 + len(result["methods"])
    assert "| sep |" in text and "| noisy |" in text


def test_evaluate_writes_outputs(patch_file, tmp_path):
    out = tmp_path / "eval"
    r = ev.evaluate(patch_file[0], out, names=["sep", "noisy"], flux_threshold=3e-10)
    assert set(r["methods"]) == {"sep", "noisy"}
    assert r["options"]["flux_threshold"] == 3e-10
    stored = json.loads((out / "evaluation.json").read_text())
    assert stored["methods"]["noisy"]["position_pulls"]["std"] == pytest.approx(
        r["methods"]["noisy"]["position_pulls"]["std"])
    names = {p.split("/")[-1] for p in r["plots"]}
    assert {"recall_vs_flux.png", "precision_recall.png", "localisation_vs_flux.png",
            "position_pulls.png", "flux_pulls.png", "confusion_class.png",
            "confusion_extension.png"} <= names
    assert any(n.startswith("patch_") for n in names)
    for p in r["plots"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "noisy" in html
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or "tmp" in p.name]


def test_bad_input(patch_file, tmp_path):
    path = patch_file[0]
    with pytest.raises(InputError, match="no reconstruction 'nope'.*stored: noisy"):
        scoring.score(path, ["sep", "nope"])
    for kw, needle in (({"match_radius_deg": 0}, "match_radius_deg"),
                       ({"match_radius_deg": float("nan")}, "match_radius_deg"),
                       ({"match_radius_deg": "wide"}, "match_radius_deg"),
                       ({"flux_threshold": -1e-10}, "flux_threshold"),
                       ({"purity_target": 1.5}, "purity_target"),
                       ({"flux_edges": [1e-9, 1e-10]}, "flux_edges")):
        with pytest.raises(InputError, match=needle) as err:
            scoring.score(path, **kw)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="match_radius_deg"):
        ev.evaluate(path, tmp_path / "never", match_radius_deg=-0.3)
    assert not (tmp_path / "never").exists()
    no_truth = tmp_path / "no_truth.h5"
    shutil.copy(path, no_truth)
    with h5py.File(no_truth, "a") as f:
        del f["truth_objects"]
    with pytest.raises(InputError, match="no_truth.h5: no truth sources"):
        scoring.score(no_truth)
    bare = tmp_path / "bare.h5"
    pipeline.simulate(bare, n_patches=1, seed=1, progress=False, **HIGH_B)
    with pytest.raises(InputError, match="bare.h5: no detections stored"):
        scoring.score(bare)
    with pytest.raises(InputError, match="missing.h5"):
        scoring.score(tmp_path / "missing.h5")


def test_matched_pairs_are_the_pairs_the_score_counts(result, patch_file):
    truth, det = scoring.matched_pairs(patch_file[0], "perfect")
    n = result["methods"]["perfect"]["counts"]["tp"]
    assert len(truth["flux"]) == len(det["x_pix"]) == n > 100
    # perfect detections sit on their true sources
    np.testing.assert_allclose(det["x_pix"], truth["x_pix"])
    np.testing.assert_array_equal(det["patch"], truth["patch"])
    assert np.all(truth["in_patch"])
    none, _ = scoring.matched_pairs(patch_file[0], "shifted")
    assert len(none["flux"]) == 0
    with pytest.raises(InputError, match="match_radius"):
        scoring.matched_pairs(patch_file[0], "perfect", match_radius_deg=-1.0)


def test_the_scoring_is_reachable_from_evaluate():
    """The scoring moved to its own module; the names stay where they were first."""
    for name in ("score", "score_tables", "matched_pairs", "sky_offsets", "FLUX_EDGES"):
        assert getattr(ev, name) is getattr(scoring, name)
