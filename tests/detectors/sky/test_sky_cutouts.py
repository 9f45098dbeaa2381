"""Cut-outs around source positions: window contents, sub-pixel offsets, the map's edge."""

import numpy as np
import pytest

from astroreco.detectors.sky.cutouts import cutouts
from astroreco.errors import InputError


def test_windows_offsets_and_edges():
    cube = np.arange(2 * 8 * 10, dtype=float).reshape(2, 8, 10)
    w, off = cutouts(cube, [4.3, 0.0, 9.6, 50.0], [3.7, 0.0, 7.0, -40.0], 5)
    assert w.shape == (4, 2, 5, 5)
    np.testing.assert_array_equal(w[0], cube[:, 2:7, 2:7])          # centre pixel (4, 4)
    np.testing.assert_allclose(off[0], [0.3, -0.3])
    np.testing.assert_array_equal(w[1][:, 2:, 2:], cube[:, :3, :3])  # corner: zero outside
    assert w[1][:, :2].sum() == 0 and w[1][:, :, :2].sum() == 0
    np.testing.assert_array_equal(w[2][:, :3, :2], cube[:, 5:8, 8:10])  # x = 9.6 -> 10
    assert w[2][:, 3:].sum() == 0 and w[2][:, :, 2:].sum() == 0
    assert w[3].sum() == 0                                            # far outside
    even, _ = cutouts(cube[0], [4.0], [4.0], 4)
    np.testing.assert_array_equal(even[0], cube[0, 2:6, 2:6])        # centre at size // 2


@pytest.mark.parametrize("args, needle", [
    ((np.ones(5), [1.0], [1.0], 3), "shape"),
    ((np.ones((4, 4)), [1.0], [1.0], 0), "size"),
    ((np.ones((4, 4)), [1.0, 2.0], [1.0], 3), "lengths"),
    ((np.ones((4, 4)), [np.nan], [1.0], 3), "NaN"),
])
def test_bad_input(args, needle):
    with pytest.raises(InputError, match=needle):
        cutouts(*args)
