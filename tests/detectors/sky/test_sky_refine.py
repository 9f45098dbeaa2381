"""Source-level training data (cut-outs around jittered true positions) and the deep-ensemble
position / flux refinement: indexing, reproducible validation jitter, a tiny training run,
the loaded model's predictions, input errors."""

import json

import numpy as np
import pytest
import torch

from astroreco.detectors.sky.pipeline import read_patches, read_truth, simulate
from astroreco.detectors.sky.photometry import band_fractions, classical_flux
from astroreco.detectors.sky.refine import RefineConfig, Refiner, train_refiner
from astroreco.detectors.sky.sources import (FLUX_UNIT, CutoutConfig, SourceRows,
                                             source_inputs)
from astroreco.errors import InputError
from astroreco.training import OptimConfig, TrainConfig

HIGH_B = dict(abs_b_range_deg=(40, 90))
TINY = dict(widths=(4, 8, 8), n_features=16, hidden=(16,))


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    d = tmp_path_factory.mktemp("sky_refine")
    simulate(d / "train.h5", n_patches=40, seed=3, progress=False, **HIGH_B)
    simulate(d / "val.h5", n_patches=8, seed=4, progress=False, **HIGH_B)
    return d


@pytest.fixture(scope="module")
def trained(patches):
    torch.set_num_threads(1)
    config = TrainConfig(max_epochs=2, batch_size=32, patience=2, progress=False, threads=1,
                         chunk_size=256, optim=OptimConfig(lr=2e-3, warmup_steps=4))
    cfg = RefineConfig(members=2, **TINY)
    summary = train_refiner(patches / "train.h5", patches / "run", cfg=cfg, config=config,
                            val_events=patches / "val.h5", command="pytest")
    return summary


def test_source_rows_follow_the_truth_selection(patches):
    path = patches / "train.h5"
    truth = read_truth(path, 10, 30)
    sel = truth["in_patch"] & (truth["flux"] >= 1e-10)
    src = SourceRows(path, 10, 30)
    assert src.n_events == sel.sum() > 20
    assert np.array_equal(src.patch, truth["patch"][sel])
    assert np.allclose(src.x_pix, truth["x_pix"][sel])
    assert np.allclose(src.log_flux, np.log10(truth["flux"][sel] / FLUX_UNIT))
    assert np.all(np.diff(src.patch) >= 0)
    brighter = SourceRows(path, 10, 30, CutoutConfig(min_flux=1e-9))
    assert brighter.n_events == (truth["in_patch"] & (truth["flux"] >= 1e-9)).sum()
    assert brighter.n_events < src.n_events


def test_rows_map_to_their_patches(patches):
    """A source range reads only its patches, and each cut-out is the one of its own
    patch, centred on the (jittered) starting position."""
    path = patches / "train.h5"
    src = SourceRows(path, 10, 30)
    a, b = 7, 19
    rows = np.array([0, 3, 11])
    got = src.load(a, b, rows, None)
    idx = a + rows
    start = src.starts(idx, None)
    for i, j in enumerate(idx):
        data = read_patches(path, 10 + src.patch[j], 11 + src.patch[j])
        want = source_inputs(data.counts[0], data.background[0], start[i:i + 1, 0],
                             start[i:i + 1, 1], 16)
        for key in ("image", "offset", "aperture"):
            assert np.allclose(got[key][i], want[key][0])
    truth_xy = np.stack([src.x_pix[idx], src.y_pix[idx]], 1)
    assert np.allclose(got["target"][:, :2], truth_xy - start, atol=1e-5)
    assert np.allclose(got["target"][:, 2], src.log_flux[idx], atol=1e-5)
    assert got["image"].shape == (3, 19, 16, 16) and got["image"].dtype == np.float32


def test_validation_jitter_is_reproducible(patches):
    path = patches / "train.h5"
    one, two = SourceRows(path, 0, 40), SourceRows(path, 0, 40)
    a = one.load(0, one.n_events)
    b = two.load(0, two.n_events)
    assert np.array_equal(a["target"], b["target"])
    assert np.array_equal(a["image"], b["image"])
    jit = -a["target"][:, :2]
    assert 0.4 < jit.std() < 0.6
    fresh = one.load(0, one.n_events, None, np.random.default_rng(1))
    assert not np.allclose(fresh["target"][:, :2], a["target"][:, :2])
    still = SourceRows(path, 0, 40, CutoutConfig(jitter_pix=0.0)).load(0, 10)
    assert np.allclose(still["target"][:, :2], 0.0, atol=1e-5)


def test_tiny_training_end_to_end(trained, patches):
    model = trained["model"]
    assert len(trained["members"]) == 2
    for k in range(2):
        assert (patches / "run" / f"member_{k}" / "model" / "weights.safetensors").is_file()
    cfg = json.loads(open(f"{model}/config.json").read())
    assert cfg["model"] == "sky-refine" and cfg["network"]["members"] == 2
    card = open(f"{model}/card.md").read()
    assert "pull" in card and "val.h5" in card and "classical flux" in card
    v = trained["validation"]
    assert v["n"] > 20 and np.isfinite(v["refined_rms_pix"]) and np.isfinite(v["pull_std_x"])
    assert np.isfinite(v["classical_log10_flux_rms"]) and v["classical_positive"] > 0.5

    r = Refiner(model)
    data = read_patches(patches / "val.h5", 0, 3)
    truth = read_truth(patches / "val.h5", 0, 3)
    first = truth["patch"] == 0
    out = r.predict(data.counts[0], data.background[0], truth["x_pix"][first],
                    truth["y_pix"][first])
    n = first.sum()
    for key in ("x_pix", "y_pix", "pos_sigma_pix", "pos_sigma_aleatoric_pix",
                "pos_sigma_epistemic_pix", "flux", "flux_err", "flux_err_aleatoric",
                "flux_err_epistemic"):
        assert out[key].shape == (n,) and np.all(np.isfinite(out[key])), key
    assert np.all(out["pos_sigma_pix"] > 0) and np.all(out["flux"] > 0)
    assert np.allclose(out["pos_sigma_pix"] ** 2, out["pos_sigma_aleatoric_pix"] ** 2
                       + out["pos_sigma_epistemic_pix"] ** 2)
    assert np.allclose(out["flux_err"], np.log(10) * out["flux"] * out["log10_flux_sigma"])
    batch = r.predict_batch(data.counts, data.background, truth["patch"], truth["x_pix"],
                            truth["y_pix"])
    assert np.allclose(batch["x_pix"][first], out["x_pix"])
    again = r.evaluate(patches / "val.h5")
    assert again["refined_rms_pix"] == pytest.approx(v["refined_rms_pix"], rel=1e-5)


def test_config_round_trip():
    cfg = RefineConfig(members=3, size=12, max_flux=1e-8, **TINY)
    back = RefineConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert RefineConfig.from_dict(RefineConfig().to_dict()).max_flux == float("inf")


def test_bad_inputs(patches, trained):
    path = patches / "train.h5"
    with pytest.raises(InputError, match="patches 30:50"):
        SourceRows(path, 30, 50)
    with pytest.raises(InputError, match="task"):
        SourceRows(path, 0, 10, task="spin")
    with pytest.raises(InputError, match="time bins"):
        SourceRows(path, 0, 10, task="class")
    assert "cube" not in SourceRows(path, 0, 10, task="class", cube=False).load(0, 2)
    with pytest.raises(InputError, match="source rows"):
        SourceRows(path, 0, 10).load(0, 10_000)
    with pytest.raises(InputError, match="multiple of 4"):
        RefineConfig(size=10)
    with pytest.raises(InputError, match="jitter_pix"):
        CutoutConfig(jitter_pix=-1)
    with pytest.raises(InputError, match="unknown entries"):
        RefineConfig.from_dict({"colour": 1})
    with pytest.raises(InputError, match="background"):
        source_inputs(np.zeros((6, 8, 8)), np.zeros((6, 8, 9)), [1.0], [1.0], 4)
    r = Refiner(trained["model"])
    with pytest.raises(InputError, match="energy bins"):
        r.predict(np.zeros((3, 64, 64)), np.zeros((3, 64, 64)), [1.0], [2.0])
    with pytest.raises(InputError, match="model directory not found"):
        Refiner(patches / "nowhere")
    member = patches / "run" / "member_0" / "model"
    with pytest.raises(InputError, match="expected a 'sky-refine'"):
        Refiner(member)


def test_public_api():
    from astroreco.detectors.sky import refine, sources

    assert set(sources.__all__) == {"CUTOUT_VIEWS", "CutoutConfig", "FLUX_UNIT", "SOURCE_TASKS",
                                    "SourceRows", "batch_inputs", "cutout_view",
                                    "source_inputs", "time_cutouts"}
    assert set(refine.__all__) == {"MODEL_KIND", "RefineConfig", "Refiner", "build_loss",
                                   "build_member", "build_ensemble", "refine_card",
                                   "refine_figures", "train_refiner"}


def test_band_fractions():
    f = band_fractions([0.5, 2.0, 50.0, 200.0], index=2.0)
    # E^-2: photons in [a, b] ~ 1/a - 1/b
    assert f[0] == pytest.approx((1 / 1.0 - 1 / 2.0) / (1 / 0.5 - 1 / 2.0))
    assert f[1] == 1.0
    assert f[2] == pytest.approx((1 / 50.0 - 1 / 100.0) / (1 / 50.0 - 1 / 200.0))
    assert band_fractions([100.0, 300.0])[0] == 0.0
    # E^-1 (the power-law integral's logarithmic case): photons in [a, b] ~ ln(b / a)
    f1 = band_fractions([0.5, 2.0, 50.0, 200.0], index=1.0)
    assert f1[0] == pytest.approx(np.log(2.0) / np.log(4.0))
    assert f1[2] == pytest.approx(np.log(2.0) / np.log(4.0))
    assert np.all(np.isfinite(band_fractions([0.5, 2.0], index=1.0 + 1e-13)))


def test_classical_flux_recovers_a_noiseless_source():
    """Background + npred x kernel at a pixel centre: the amplitude is npred exactly."""
    rng = np.random.default_rng(0)
    kernels = []
    for h in (3, 2):
        g = np.exp(-0.5 * (np.arange(-h, h + 1) ** 2)[:, None] / 1.5 ** 2
                   - 0.5 * (np.arange(-h, h + 1) ** 2)[None, :] / 1.5 ** 2)
        kernels.append(0.95 * g / g.sum())
    bkg = rng.uniform(1.0, 3.0, (2, 2, 20, 20))
    counts = bkg.copy()
    npred = np.array([[40.0, 10.0], [5.0, 80.0]])
    for p, (x, y) in enumerate([(7, 9), (12, 4)]):
        for e, k in enumerate(kernels):
            h = k.shape[0] // 2
            counts[p, e, y - h:y + h + 1, x - h:x + h + 1] += npred[p, e] * k
    exposure, edges = np.array([2.0, 4.0]), np.array([1.0, 10.0, 100.0])
    got = classical_flux(counts, bkg, [0, 1], [7.0, 12.0], [9.0, 4.0], kernels, exposure, edges)
    assert np.allclose(got["npred"], npred)
    assert np.allclose(got["flux"], (npred / exposure).sum(1))
    with pytest.raises(InputError, match="energy bins"):
        classical_flux(counts, bkg, [0], [7.0], [9.0], kernels[:1], exposure, edges)
