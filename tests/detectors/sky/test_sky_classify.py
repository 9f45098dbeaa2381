"""Per-source classifiers (extension C0/C1/C2 with a 2D CNN, AGN vs pulsar with a 3D CNN
over time x energy) and the class-weighted cross-entropy they train with."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from astroreco.detectors.sky.classify import (ClassifyConfig, Classifier, TimeEnergyConvNet,
                                              build_classifier, inverse_frequency_weights,
                                              train_classifier)
from astroreco.detectors.sky.pipeline import read_patches, read_truth, simulate
from astroreco.detectors.sky.sources import (CUTOUT_VIEWS, SourceRows, cutout_view,
                                             source_inputs, time_cutouts)
from astroreco.errors import InputError
from astroreco.losses import CrossEntropyLoss
from astroreco.training import OptimConfig, TrainConfig

#: low latitude (pulsars), many extended ones, 4 time bins
GALACTIC = dict(abs_b_range_deg=(0, 10), extension__fractions=(0.4, 0.35, 0.25),
                n_time_bins=4)
TINY = dict(widths=(4, 8, 8), n_features=16, hidden=(16,))


# --- the loss -------------------------------------------------------------------------------

def test_cross_entropy_matches_torch_value_and_gradient():
    torch.manual_seed(0)
    logits = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (20,))
    w = [0.5, 2.0, 4.0]
    ours = CrossEntropyLoss(w)(logits, target)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(w, dtype=torch.float64))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    (g,) = torch.autograd.grad(ours, logits)
    # closed form: w_y (softmax - onehot) / sum w_y
    p = torch.softmax(logits.detach(), 1)
    onehot = F.one_hot(target, 3).double()
    wy = torch.tensor(w, dtype=torch.float64)[target]
    assert torch.allclose(g, wy[:, None] * (p - onehot) / wy.sum())
    plain = CrossEntropyLoss()(logits, target)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    per = CrossEntropyLoss(reduction="none")(logits, target)
    assert per.shape == (20,)


def test_cross_entropy_is_finite_at_extreme_logits():
    logits = torch.tensor([[1e30, -1e30, 0.0], [-3e38, 3e38, 1.0]], requires_grad=True)
    target = torch.tensor([1, 0])
    loss = CrossEntropyLoss([1.0, 1.0, 1.0])(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(logits.grad))
    right = CrossEntropyLoss()(torch.tensor([[1e30, -1e30]]), torch.tensor([0]))
    assert right.item() == 0.0


def test_cross_entropy_bad_inputs():
    loss = CrossEntropyLoss([1.0, 2.0])
    with pytest.raises(InputError, match="classes expected in 0..1"):
        loss(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="2 class weights for 3 classes"):
        loss(torch.zeros(3, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="target has shape"):
        loss(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(InputError, match="class_weights"):
        CrossEntropyLoss([-1.0, 1.0])


# --- data, networks -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    d = tmp_path_factory.mktemp("sky_classify")
    simulate(d / "train.h5", n_patches=24, seed=5, progress=False, **GALACTIC)
    simulate(d / "val.h5", n_patches=6, seed=6, progress=False, **GALACTIC)
    return d


def _config():
    return TrainConfig(max_epochs=1, batch_size=32, patience=2, progress=False, threads=1,
                       chunk_size=256, optim=OptimConfig(lr=2e-3, warmup_steps=4))


def test_class_targets_and_time_cubes(patches):
    path = patches / "train.h5"
    truth = read_truth(path, 0, 24)
    sel = truth["in_patch"] & (truth["flux"] >= 1e-10)
    ext = SourceRows(path, 0, 24, task="extension").load(0, 50)
    assert np.array_equal(ext["target"], truth["ext_class"][sel][:50])
    cls = SourceRows(path, 0, 24, task="class").load(0, 50)
    assert np.array_equal(cls["target"], truth["cls"][sel][:50])
    assert cls["cube"].shape == (50, 4, 6, 16, 16)
    # without a background: log(1 + N_t), the time bins adding up to the counts
    data = read_patches(path, 0, 24)
    src = SourceRows(path, 0, 24, task="class")
    start = src.starts(np.arange(50), None)
    plain = time_cutouts(data.time_counts, src.patch[:50], start[:, 0], start[:, 1], 16)
    assert np.allclose(np.expm1(plain).sum(1), np.expm1(cls["image"][:, 1:18:3]), atol=1e-2)
    # with it: the excess significance per time bin, background spread evenly over time
    n_t = np.expm1(plain)
    b_t = np.expm1(cls["image"][:, 2:18:3])[:, None] / 4
    assert np.allclose(cls["cube"], np.arcsinh((n_t - b_t) / np.sqrt(b_t + 1)), atol=1e-3)
    with pytest.raises(InputError, match="background"):
        time_cutouts(data.time_counts, [0], [1.0], [1.0], 16, data.background[:, :3])


def _views_of_map(counts, background, x, y, size, g):
    """The inputs of the sources at (x, y) in the map seen in symmetry g (reflected about
    its own axes, then transposed): what ``cutout_view`` must reproduce from the cut-outs."""
    h, w = counts.shape[-2:]
    if g & 1:
        counts, background, x = counts[..., ::-1], background[..., ::-1], (w - 1) - x
    if g & 2:
        counts, background, y = counts[..., ::-1, :], background[..., ::-1, :], (h - 1) - y
    if g & 4:
        counts, background = np.swapaxes(counts, -1, -2), np.swapaxes(background, -1, -2)
        x, y = y, x
    return source_inputs(np.ascontiguousarray(counts), np.ascontiguousarray(background),
                         x, y, size)


@pytest.mark.parametrize("g", CUTOUT_VIEWS)
def test_dihedral_views_are_the_cut_outs_of_the_transformed_map(g):
    rng = np.random.default_rng(g)
    counts = rng.poisson(3.0, (2, 40, 48)).astype(float)
    background = rng.uniform(1.0, 4.0, (2, 40, 48))
    x, y = np.array([20.2, 5.4, 30.0]), np.array([17.7, 30.3, 3.1])   # two near a border
    inputs = source_inputs(counts, background, x, y, 16)
    inputs["target"] = np.array([[0.3, -0.2, 1.5], [0.0, 0.4, 2.0], [-0.1, 0.1, 0.5]],
                                np.float32)
    view = cutout_view(inputs, g)
    want = _views_of_map(counts, background, x, y, 16, g)
    cut = source_inputs(counts, background, x, y, 16)["image"]
    excess = np.expm1(cut[:, 1:6:3]) - np.expm1(cut[:, 2:6:3])
    want_aperture = np.arcsinh(excess[..., 1:, 1:].sum((-1, -2)))
    # the first row and column have their mirror outside the cut-out: blanked in every view
    assert np.allclose(view["image"][..., 1:, 1:], want["image"][..., 1:, 1:], atol=1e-6)
    assert not view["image"][..., 0, :].any() and not view["image"][..., :, 0].any()
    assert np.allclose(view["offset"], want["offset"], atol=1e-6)
    # the aperture sums lose the blanked row and column, the same in every view
    assert np.allclose(view["aperture"], want_aperture, atol=1e-4)
    # a position target moves with the map; the flux column does not
    t = inputs["target"]
    dx, dy = t[:, 0] * (-1 if g & 1 else 1), t[:, 1] * (-1 if g & 2 else 1)
    assert np.allclose(view["target"][:, :2], np.stack([dy, dx] if g & 4 else [dx, dy], 1))
    assert np.array_equal(view["target"][:, 2], t[:, 2])
    # the inputs themselves are not touched; a per-source k gives each source its own view
    assert not np.shares_memory(view["image"], inputs["image"])
    mixed = cutout_view(inputs, [0, g, 0])
    assert np.array_equal(mixed["image"][0, :, 1:, 1:], inputs["image"][0, :, 1:, 1:])
    assert np.array_equal(mixed["image"][1], view["image"][1])
    with pytest.raises(InputError, match="symmetries 0..7"):
        cutout_view(inputs, 8)
    with pytest.raises(InputError, match="one per source"):
        cutout_view(inputs, [0, 1])
    with pytest.raises(InputError, match="one per source"):
        cutout_view(inputs, 1.7)
    with pytest.raises(InputError, match="even cut-out size"):
        cutout_view(source_inputs(counts, background, x, y, 15), g)


def test_dihedral_training_and_symmetric_prediction(patches, tmp_path):
    """With ``dihedral`` the training rows come in random views, and the classifier's
    probabilities are the same for a source in any view of the map."""
    torch.set_num_threads(1)
    cfg = ClassifyConfig(task="extension", dihedral=True, **TINY)
    src = SourceRows(patches / "train.h5", 0, 24, cfg, task="extension")
    plain = src.load(0, 40)
    seen = src.load(0, 40, rng=np.random.default_rng(3))
    # the same jitter drawn again, no view: the augmentation is all that differs
    src.dihedral = False
    unturned = src.load(0, 40, rng=np.random.default_rng(3))
    # each row is one of the 8 views of the same cut-out, and more than one view is drawn
    views = np.stack([cutout_view(unturned, g)["image"] for g in CUTOUT_VIEWS])
    drawn = [[g for g in CUTOUT_VIEWS if np.array_equal(views[g, i], seen["image"][i])]
             for i in range(40)]
    assert all(drawn) and len({d[0] for d in drawn}) > 2
    assert np.array_equal(seen["target"], plain["target"])
    # validation rows: the identity view, with the edge blanked as in every training view
    assert np.array_equal(plain["image"], cutout_view(src.load(0, 40), 0)["image"])
    assert not plain["image"][..., 0, :].any()
    assert np.allclose(np.sort(np.abs(seen["offset"]), 1),
                       np.sort(np.abs(unturned["offset"]), 1))
    train_classifier(patches / "train.h5", tmp_path / "d", task="extension", cfg=cfg,
                     config=_config(), val_events=patches / "val.h5")
    c = Classifier(tmp_path / "d" / "model")
    assert c.config.dihedral
    assert "8 symmetric views" in (tmp_path / "d" / "model" / "card.md").read_text()
    data, truth = read_patches(patches / "val.h5", 0, 1), read_truth(patches / "val.h5", 0, 1)
    sel = truth["in_patch"] & (truth["patch"] == 0)
    x, y = truth["x_pix"][sel], truth["y_pix"][sel]
    p = c.predict(data.counts[0], data.background[0], x, y)
    h, w = data.counts.shape[-2:]
    q = c.predict(np.ascontiguousarray(data.counts[0][..., ::-1, :].swapaxes(-1, -2)),
                  np.ascontiguousarray(data.background[0][..., ::-1, :].swapaxes(-1, -2)),
                  (h - 1) - y, x)
    assert p.shape == q.shape and np.allclose(p, q, atol=1e-5)
    # the class network on the time cubes alone: the views still correct the aperture sums
    cfg = ClassifyConfig(task="class", n_time_bins=4, branches=("cube",), dihedral=True, **TINY)
    train_classifier(patches / "train.h5", tmp_path / "c", task="class", cfg=cfg,
                     config=_config(), val_events=patches / "val.h5")
    p = Classifier(tmp_path / "c" / "model").predict(data.counts[0], data.background[0], x, y,
                                                     data.time_counts[0])
    assert p.shape == (x.size, 2) and np.allclose(p.sum(1), 1.0)
    with pytest.raises(InputError, match="dihedral"):
        ClassifyConfig(dihedral="yes")
    from astroreco.detectors.sky.refine import RefineConfig
    with pytest.raises(InputError, match="dihedral: the refine ensemble"):
        RefineConfig(dihedral=True)


def test_time_energy_net_shapes_and_time_spread():
    torch.manual_seed(0)
    net = TimeEnergyConvNet(6, (4, 8, 8)).eval()
    x = torch.rand(3, 10, 6, 16, 16)
    with torch.no_grad():
        f = net(x)
        fewer = net(x[:, :4])
        steady = net(x[:, :1].expand(3, 10, 6, 16, 16))
        # a flare in the middle moves the mean and, above all, the spread over time
        flare = x[:, :1].repeat(1, 10, 1, 1, 1)
        flare[:, 5] *= 20.0
        flaring = net(flare)
    assert f.shape == fewer.shape == (3, 16)          # any number of time bins
    assert torch.all(flaring[:, 8:].sum(1) > steady[:, 8:].sum(1))
    with pytest.raises(InputError, match="TimeEnergyConvNet"):
        net(torch.rand(3, 10, 5, 16, 16))
    cube_only = build_classifier(ClassifyConfig(task="class", n_time_bins=10,
                                                branches=("cube",), **TINY))
    out = cube_only({"cube": x, "aperture": torch.rand(3, 6)})
    assert out["logits"].shape == (3, 2)
    both = build_classifier(ClassifyConfig(task="class", n_time_bins=10, **TINY))
    out = both({"cube": x, "aperture": torch.rand(3, 6), "image": torch.rand(3, 19, 16, 16),
                "offset": torch.rand(3, 2)})
    assert out["logits"].shape == (3, 2)


def test_inverse_frequency_weights():
    w = inverse_frequency_weights([0] * 90 + [1] * 9 + [2], 3, cap=20.0)
    assert w[0] == pytest.approx(100 / 270) and w[1] == pytest.approx(100 / 27)
    assert w[2] == 20.0


@pytest.mark.parametrize("task, branches", [("extension", ()), ("class", ()),
                                            ("class", ("cube",))])
def test_tiny_training_and_prediction(patches, tmp_path, task, branches):
    torch.set_num_threads(1)
    cfg = ClassifyConfig(task=task, n_time_bins=4, branches=branches, **TINY)
    s = train_classifier(patches / "train.h5", tmp_path / task, task=task, cfg=cfg,
                         config=_config(), val_events=patches / "val.h5")
    n_classes = 3 if task == "extension" else 2
    assert len(s["class_weights"]) == n_classes
    cfg = json.loads((tmp_path / task / "model" / "config.json").read_text())
    assert cfg["network"]["task"] == task and "validation" in cfg
    assert "Measured on the validation sources" in (tmp_path / task / "model" /
                                                    "card.md").read_text()
    c = Classifier(tmp_path / task / "model")
    data = read_patches(patches / "val.h5", 0, 2)
    truth = read_truth(patches / "val.h5", 0, 2)
    first = truth["patch"] == 0
    p = c.predict(data.counts[0], data.background[0], truth["x_pix"][first],
                  truth["y_pix"][first], data.time_counts[0])
    assert p.shape == (first.sum(), n_classes) and np.all(np.isfinite(p))
    assert np.allclose(p.sum(1), 1.0)
    pb = c.predict_batch(data.counts, data.background, truth["patch"], truth["x_pix"],
                         truth["y_pix"], data.time_counts)
    assert np.allclose(pb[first], p)
    fig = c.evaluate(patches / "val.h5")
    assert fig["n"] == s["validation"]["n"]
    # the figures per flux bin add up to the whole
    rows = fig["per_flux"]
    assert sum(r["n"] for r in rows) == fig["n"]
    assert sum(r["n"] * r["accuracy"] for r in rows) == pytest.approx(fig["accuracy"]
                                                                      * fig["n"])
    assert all(r["flux_lo"] < (r["flux_hi"] or np.inf) for r in rows)
    if task == "extension":
        assert sum(r["n"] * r["point_vs_extended_accuracy"] for r in rows) == \
            pytest.approx(fig["point_vs_extended_accuracy"] * fig["n"])
        assert "point vs extended" in (tmp_path / task / "model" / "card.md").read_text()
    else:
        assert "point_vs_extended_accuracy" not in fig
    if task == "class":
        with pytest.raises(InputError, match="time_counts"):
            c.predict(data.counts[0], data.background[0], [1.0], [1.0])


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="task"):
        ClassifyConfig(task="colour")
    with pytest.raises(InputError, match="n_time_bins"):
        ClassifyConfig(task="class", n_time_bins=0)
    assert ClassifyConfig(task="class").n_time_bins is None  # set from the training file
    assert ClassifyConfig(task="class", branches=["image"]).branches == ("image",)
    with pytest.raises(InputError, match="branches"):
        ClassifyConfig(task="extension", branches=("cube",))
    with pytest.raises(InputError, match="class_weights"):
        ClassifyConfig(class_weights=[1.0, 2.0])
    no_time = tmp_path / "flat.h5"
    simulate(no_time, n_patches=2, seed=1, progress=False, abs_b_range_deg=(40, 90))
    with pytest.raises(InputError, match="time bins"):
        train_classifier(no_time, tmp_path / "x", task="class", config=_config())
    with pytest.raises(InputError, match="task"):
        train_classifier(no_time, tmp_path / "x", task="spin", config=_config())


def test_public_api():
    from astroreco.detectors.sky import classify

    assert set(classify.__all__) == {
        "BRANCHES", "CLASS_NAMES", "TASKS", "ClassifyConfig", "Classifier",
        "CutoutClassifierNet", "TimeEnergyConvNet", "build_classifier", "build_loss",
        "classification_figures", "classifier_card", "inverse_frequency_weights",
        "source_figures", "train_classifier"}


def test_shipped_cta_extension_classifier(tmp_path):
    """The shipped classifier loads without code and scores CTA-like sources."""
    from astroreco.io.modeldir import shipped_model_dir

    path = tmp_path / "cta.h5"
    simulate(path, n_patches=3, preset="cta", seed=31, progress=False)
    c = Classifier(shipped_model_dir("sky") / "extension_cta")
    assert c.config.task == "extension" and c.config.size == 32
    fig = c.evaluate(path)
    assert fig["n"] > 0 and sum(fig["n_per_class"]) == fig["n"]
    assert 0.0 <= fig["point_vs_extended_accuracy"] <= 1.0
    data, truth = read_patches(path, 0, 1), read_truth(path, 0, 1)
    sel = truth["in_patch"] & (truth["flux"] >= 3e-10)
    p = c.predict(data.counts[0], data.background[0], truth["x_pix"][sel],
                  truth["y_pix"][sel])
    assert p.shape == (sel.sum(), 3) and np.allclose(p.sum(1), 1.0)
