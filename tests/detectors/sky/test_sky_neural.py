"""Sky neural detector: target masks, symmetries, input checks, a tiny training end to end
(patch file -> model directory -> detections in the file and in a FITS catalog)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astroreco.detectors.sky import cubes, pipeline
from astroreco.detectors.sky.catalog import read_catalog
from astroreco.detectors.sky.neural import (NeuralDetector, SkyNetConfig, check_counts,
                                            dihedral, source_masks)
from astroreco.detectors.sky.train import PatchSource, train
from astroreco.errors import InputError
from astroreco.training import OptimConfig, TrainConfig


def _truth(rows):
    keys = ("patch", "x_pix", "y_pix", "in_patch", "flux")
    return {k: np.array([r[i] for r in rows]) for i, k in enumerate(keys)}


def test_source_masks_are_discs_of_the_labelled_sources():
    cfg = SkyNetConfig(mask_radius_pix=1.5, label_min_flux=1e-10)
    truth = _truth([(0, 10.3, 20.7, True, 5e-10),    # labelled
                    (0, 40.0, 40.0, True, 5e-11),    # too faint
                    (1, 0.2, 63.4, True, 1e-9),      # at a corner: clipped
                    (1, 30.0, 30.0, False, 1e-8)])   # outside the patch (margin)
    m = source_masks(truth, 2, (64, 64), cfg)
    assert m.shape == (2, 1, 64, 64) and m.dtype == np.float32
    yy, xx = np.mgrid[:64, :64]
    disc = ((xx - 10.3) ** 2 + (yy - 20.7) ** 2 <= 1.5 ** 2).astype(np.float32)
    np.testing.assert_array_equal(m[0, 0], disc)
    corner = ((xx - 0.2) ** 2 + (yy - 63.4) ** 2 <= 1.5 ** 2).astype(np.float32)
    np.testing.assert_array_equal(m[1, 0], corner)
    assert m[1, 0, 30, 30] == 0


def test_dihedral_applies_one_symmetry_to_inputs_and_targets_alike():
    rng = np.random.default_rng(3)
    x = rng.random((64, 2, 8, 8)).astype(np.float32)
    y = x[:, :1] * 2.0  # the target is a function of the input: it must stay so
    ax, ay = dihedral([x, y], np.random.default_rng(0))
    np.testing.assert_array_equal(ay, ax[:, :1] * 2.0)
    seen = set()
    for a, b in zip(x, ax):
        sym = [np.rot90(a, k, axes=(-2, -1)) for k in range(4)]
        sym += [s[..., ::-1] for s in sym]
        matches = [i for i, s in enumerate(sym) if np.array_equal(s, b)]
        assert matches, "not a symmetry of the square"
        seen.add(matches[0])
    assert len(seen) == 8  # all eight occur in 64 draws
    assert not np.shares_memory(ax, x)


@pytest.mark.parametrize("counts, needle", [
    (np.full((1, 6, 8, 8), np.nan), "NaN"),
    (-np.ones((1, 6, 8, 8)), "negative"),
    (np.ones((6, 8)), "shape"),
    (np.ones((1, 5, 8, 8)), "5 energy bins"),
])
def test_check_counts_rejects_bad_maps(counts, needle):
    with pytest.raises(InputError, match=needle):
        check_counts(counts, SkyNetConfig())


def test_config_checks():
    with pytest.raises(InputError, match="centres"):
        SkyNetConfig(centres="dbscan")
    with pytest.raises(InputError, match="multiple"):
        SkyNetConfig(n_pix=60)
    with pytest.raises(InputError, match="threshold"):
        SkyNetConfig(threshold=1.0)
    assert SkyNetConfig(scale="paper").widths() == {"branch_width": 16, "width": 64,
                                                     "depth": 4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("skynn")
    train_file, val_file = d / "train.h5", d / "val.h5"
    kw = dict(progress=False, abs_b_range_deg=(40.0, 90.0))
    pipeline.simulate(train_file, n_patches=48, seed=11, **kw)
    pipeline.simulate(val_file, n_patches=8, seed=12, **kw)
    net = SkyNetConfig(branch_width=2, width=4, depth=2, threshold=0.2)
    cfg = TrainConfig(max_epochs=4, batch_size=8, patience=10, seed=0, progress=False,
                      chunk_size=64, optim=OptimConfig(lr=1e-2, warmup_steps=5))
    summary = train(train_file, d / "run", net=net, config=cfg, val_events=val_file)
    return d, summary, val_file


def test_training_writes_a_model_that_learned(trained):
    d, summary, _ = trained
    assert summary["n_train"] == 48 and summary["n_val"] == 8
    history = json.loads((d / "run" / "history.json").read_text())
    losses = [h["train_loss"] for h in history]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    card = (d / "run" / "model" / "card.md").read_text()
    assert "U-Net" in card and "48 training" in card


def test_patch_source_targets_follow_the_truth(trained):
    _, _, val_file = trained
    src = PatchSource(val_file, 2, 6, SkyNetConfig())
    batch = src.load(0, 4)
    truth = pipeline.read_truth(val_file, 2, 6)
    assert batch["counts"].shape == (4, 6, 64, 64)
    expect = source_masks(truth, 4, (64, 64), SkyNetConfig())
    np.testing.assert_array_equal(batch["mask"], expect)
    np.testing.assert_allclose(batch["counts"],
                               np.log1p(pipeline.read_patches(val_file, 2, 6).counts))
    with pytest.raises(InputError, match="rows 0:99"):
        PatchSource(val_file, 0, 99, SkyNetConfig())


def test_detections_are_stored_and_written_as_a_catalog(trained, tmp_path):
    d, summary, val_file = trained
    s = pipeline.detect_neural(val_file, model=summary["model"], name="nn_test",
                               progress=False)
    det = pipeline.read_detections(val_file, "nn_test")
    assert s["n_detections"] == len(det["x_pix"])
    assert set(det) >= {"x_pix", "y_pix", "l_deg", "b_deg", "score"}
    if len(det["score"]):
        assert np.all((det["score"] > 0.2) & (det["score"] <= 1))
        assert np.all((det["x_pix"] > -1) & (det["x_pix"] < 64))
    detector = NeuralDetector(summary["model"])
    p = detector.probability(pipeline.read_patches(val_file, 0, 2).counts)
    assert p.shape == (2, 64, 64) and np.all((p >= 0) & (p <= 1))
    # the same detector on a FITS counts cube of patch 0 gives the same sources
    cube, cat = tmp_path / "cube.fits", tmp_path / "cat.fits"
    cubes.export_cube(val_file, 0, cube)
    r = cubes.detect_cube(cube, method="nn", model=summary["model"], out_catalog=cat)
    first = det["patch"] == 0
    assert r["n_sources"] == int(first.sum())
    cols = read_catalog(cat).columns
    np.testing.assert_allclose(np.sort(cols["GLON"]), np.sort(det["l_deg"][first]),
                               atol=1e-6)


def test_neural_detector_bad_input(trained, tmp_path):
    _, summary, _ = trained
    detector = NeuralDetector(summary["model"])
    with pytest.raises(InputError, match="multiples of 4"):
        detector.probability(np.ones((1, 6, 30, 30)))
    with pytest.raises(InputError, match="model directory not found"):
        NeuralDetector(tmp_path / "none")
    from astroreco.io.modeldir import load_model_dir

    with pytest.raises(InputError, match="'sky', expected one for 'ecal'"):
        load_model_dir(summary["model"], detector="ecal")


@pytest.fixture(scope="module")
def per_source(trained):
    """A one-member position/flux ensemble and an extension classifier, tiny."""
    from astroreco.detectors.sky.classify import ClassifyConfig, train_classifier
    from astroreco.detectors.sky.refine import RefineConfig, train_refiner

    d, _, val_file = trained
    tiny = dict(widths=(4, 8, 8), n_features=16, hidden=(16,))
    cfg = TrainConfig(max_epochs=1, batch_size=32, patience=2, progress=False, threads=1,
                      chunk_size=256, optim=OptimConfig(lr=2e-3, warmup_steps=4))
    ref = train_refiner(d / "train.h5", d / "refine", cfg=RefineConfig(members=1, **tiny),
                        config=cfg, val_events=val_file)
    ext = train_classifier(d / "train.h5", d / "extension", task="extension",
                           cfg=ClassifyConfig(task="extension", **tiny), config=cfg,
                           val_events=val_file)
    return ref["model"], ext["model"]


def test_per_source_networks_add_errors_fluxes_and_extension(trained, per_source, tmp_path):
    from astroreco.detectors.sky.scoring import score

    _, summary, val_file = trained
    refiner, extension = per_source
    pipeline.detect_neural(val_file, model=summary["model"], name="nn_plain", progress=False)
    s = pipeline.detect_neural(val_file, model=summary["model"], name="nn_full",
                               refiner=refiner, extension=extension, progress=False)
    plain = pipeline.read_detections(val_file, "nn_plain")
    det = pipeline.read_detections(val_file, "nn_full")
    assert s["n_detections"] == len(plain["x_pix"]) == len(det["x_pix"]) > 0
    assert np.all(np.abs(det["x_pix"] - plain["x_pix"]) < 16)   # refined, not replaced
    assert np.all(det["pos_sigma_deg"] > 0) and np.all(det["flux"] > 0)
    assert np.all(np.isfinite(det["flux_err"]))
    p = np.stack([det[f"p_ext{k}"] for k in range(3)], 1)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(det["ext_class"], p.argmax(1))
    r = score(val_file, ["nn_full"])["methods"]["nn_full"]
    assert r["position_pulls"] is not None and r["flux"] is not None
    assert r["classification"]["extension"]["n"] > 0
    # a FITS cube with its background: the catalog carries errors, fluxes, extension
    cube, bkg, cat = tmp_path / "c.fits", tmp_path / "b.fits", tmp_path / "cat.fits"
    cubes.export_cube(val_file, 0, cube, bkg)
    with pytest.raises(InputError, match="--background"):
        cubes.detect_cube(cube, method="nn", model=summary["model"], refiner=refiner,
                             out_catalog=cat)
    cubes.detect_cube(cube, background=bkg, method="nn", model=summary["model"],
                         refiner=refiner, extension=extension, out_catalog=cat,
                         out_regions=tmp_path / "r.reg")
    cols = read_catalog(cat).columns
    first = det["patch"] == 0
    np.testing.assert_allclose(np.sort(cols["FLUX"]), np.sort(det["flux"][first]), rtol=1e-5)
    np.testing.assert_allclose(np.sort(cols["POS_ERR_95"] / cols["POS_ERR"]),
                               2.448 / 1.510, rtol=1e-3)
    assert set(np.unique(cols["EXT_CLASS"])) <= {0, 1, 2}


def test_agn_pulsar_classifier_on_time_binned_patches(trained, tmp_path):
    """The shipped AGN/pulsar classifier joins the detection on patches with time bins."""
    from astroreco.detectors.sky.neural import default_class_dir

    _, summary, val_file = trained
    timed = tmp_path / "timed.h5"
    pipeline.simulate(timed, n_patches=4, seed=21, n_time_bins=10, progress=False,
                      abs_b_range_deg=(0.0, 10.0))
    s = pipeline.detect_neural(timed, model=summary["model"], name="nn_cls",
                               source_class=default_class_dir(), progress=False)
    det = pipeline.read_detections(timed, "nn_cls")
    assert s["n_detections"] == len(det["p_agn"]) > 0
    np.testing.assert_allclose(det["p_agn"] + det["p_psr"], 1.0, atol=1e-5)
    with pytest.raises(InputError, match="time bins"):
        pipeline.detect_neural(val_file, model=summary["model"], name="nn_cls",
                               source_class=default_class_dir(), progress=False)
