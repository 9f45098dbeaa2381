"""Source centres from probability maps: LoG and k-means on synthetic blob maps."""

import numpy as np
import pytest

from astroreco.detectors.sky import localize
from astroreco.detectors.sky.localize import centres_kmeans, centres_log
from astroreco.errors import InputError
from astroreco.stats.matching import match_sources

SIGMA = 1.2
#: (x, y) pixels: isolated blobs at sub-pixel positions, two of them 1.6 px from an edge
ISOLATED = np.array([[10.3, 12.7], [40.6, 9.2], [25.45, 40.1], [50.2, 50.8],
                     [1.6, 30.4], [62.4, 25.3]])
#: a blended pair 3.57 px apart
PAIR = np.array([[44.0, 36.0], [47.4, 37.1]])
#: a blob centred on the first row: half of it is off the map
ON_EDGE = np.array([[30.2, 0.3]])


def blob_map(xy, shape=(64, 64), sigma=SIGMA):
    """Probability map: the probability that any of the Gaussian blobs covers a pixel."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    miss = np.ones(shape)
    for x0, y0 in xy:
        miss *= 1 - np.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / sigma ** 2)
    return 1 - miss


@pytest.fixture(scope="module")
def prob_map():
    return blob_map(np.concatenate([ISOLATED, PAIR, ON_EDGE]))


def nearest(found, xy):
    """Distance from each true position to the nearest found centre, and its index."""
    d = np.hypot(xy[:, None, 0] - found["x_pix"][None], xy[:, None, 1] - found["y_pix"][None])
    return d.min(axis=1), d.argmin(axis=1)


def test_public_api():
    assert set(localize.__all__) == {"centres_kmeans", "centres_log"}


@pytest.mark.parametrize("method", [centres_log, centres_kmeans])
def test_isolated_blobs_within_0p3_pixel(prob_map, method):
    found = method(prob_map)
    dist, _ = nearest(found, ISOLATED)
    assert np.all(dist < 0.3), dist
    edge, _ = nearest(found, ON_EDGE)  # biased inward: half the blob is missing
    assert edge[0] < 1.0
    assert np.all(np.diff(found["score"]) <= 0)
    assert set(found) >= {"x_pix", "y_pix", "score"}
    assert all(v.shape == found["x_pix"].shape for v in found.values())


def test_random_subpixel_positions():
    rng = np.random.default_rng(7)
    for _ in range(5):
        xy = np.array([[8 + 16 * i, 8 + 16 * j] for i in range(4) for j in range(4)], float)
        xy += rng.uniform(-1, 1, xy.shape)
        p = blob_map(xy, sigma=rng.uniform(1.0, 2.0))
        for method in (centres_log, centres_kmeans):
            found = method(p)
            assert len(found["x_pix"]) == len(xy)
            assert nearest(found, xy)[0].max() < 0.3


def test_kmeans_separates_the_blended_pair(prob_map):
    found = centres_kmeans(prob_map)
    assert len(found["x_pix"]) == len(ISOLATED) + len(PAIR) + len(ON_EDGE)
    dist, idx = nearest(found, PAIR)
    assert idx[0] != idx[1] and np.all(dist < 0.5), dist
    assert found["component"][idx[0]] == found["component"][idx[1]]  # one component, split
    single = np.setdiff1d(np.arange(len(found["x_pix"])), idx)
    assert len(np.unique(found["component"][single])) == len(single)
    assert np.all(found["n_pixels"] > 0)
    np.testing.assert_allclose(found["score"][idx], found["score"][idx].mean(), rtol=0.1)


def test_kmeans_is_reproducible_and_rule_for_the_number_of_sources(prob_map):
    a = centres_kmeans(prob_map, seed=3)
    b = centres_kmeans(prob_map, seed=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # k = max(1, round(mass / source_mass)): a template mass twice too large merges the
    # pair, one three times too small splits a single blob in three
    p = blob_map(ISOLATED[:1])
    m1 = (p[p > 0.5] - 0.5).sum()
    merged = centres_kmeans(prob_map, source_mass=2.2 * m1)
    assert len(merged["x_pix"]) == len(ISOLATED) + 1 + len(ON_EDGE)
    split = centres_kmeans(blob_map(ISOLATED[:1]), source_mass=m1 / 3.0)
    assert len(split["x_pix"]) == 3


def test_kmeans_max_sources_keeps_the_highest_scores(prob_map):
    everything = centres_kmeans(prob_map)
    top = centres_kmeans(prob_map, max_sources=3)
    assert len(top["x_pix"]) == 3
    np.testing.assert_allclose(top["score"], everything["score"][:3])


def test_log_scale_follows_the_blob_width():
    for sigma in (1.0, 2.0, 3.0):
        found = centres_log(blob_map([[32.3, 31.6]], sigma=sigma), sigmas=(1, 1.5, 2, 3))
        assert len(found["x_pix"]) == 1 and found["scale_pix"][0] == sigma
        assert found["score"][0] == pytest.approx(blob_map([[32.3, 31.6]], sigma=sigma)[32, 32])
        assert found["integrated"][0] > 0


@pytest.mark.parametrize("method", [centres_log, centres_kmeans])
def test_empty_and_flat_maps_give_nothing(method):
    found = method(np.zeros((32, 48)))
    assert set(found) >= {"x_pix", "y_pix", "score"}
    assert all(v.shape == (0,) for v in found.values())
    below = method(np.full((16, 16), 0.05))
    assert len(below["x_pix"]) == 0


@pytest.mark.parametrize("method", [centres_log, centres_kmeans])
@pytest.mark.parametrize("bad, needle", [
    (np.full((8, 8), np.nan), "NaN"),
    (np.zeros((2, 8, 8)), "2-D"),
    (np.full((8, 8), 1.5), "[0, 1]"),
    (np.zeros((0, 8)), "2-D"),
])
def test_bad_map_raises_input_error(method, bad, needle):
    with pytest.raises(InputError, match="prob_map") as err:
        method(bad)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(threshold=-0.1), "threshold"), (dict(threshold=1.0), "threshold"),
    (dict(threshold="high"), "threshold"), (dict(sigmas=()), "sigmas"),
    (dict(sigmas=(1, -2)), "sigmas"), (dict(min_separation_pix=0), "min_separation_pix"),
])
def test_log_bad_arguments(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        centres_log(np.zeros((8, 8)), **kwargs)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(threshold=-0.5), "threshold"), (dict(max_sources=0), "max_sources"),
    (dict(max_sources=2.5), "max_sources"), (dict(source_mass=0.0), "source_mass"),
    (dict(n_init=0), "n_init"),
])
def test_kmeans_bad_arguments(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        centres_kmeans(np.zeros((8, 8)), **kwargs)


def test_detections_scored_by_matching(prob_map):
    truth = np.concatenate([ISOLATED, PAIR, ON_EDGE])
    found = centres_kmeans(prob_map)
    m = match_sources(truth[:, 0], truth[:, 1], found["x_pix"], found["y_pix"], max_dist=1.0)
    assert len(m["true_index"]) == len(truth) and m["unmatched_det"].size == 0
