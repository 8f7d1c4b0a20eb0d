import numpy as np
import pytest

from condnn import glorot_uniform, he_normal


def test_glorot_uniform_bounds_and_variance():
    w = glorot_uniform((300, 200), rng=0)
    limit = np.sqrt(6 / 500)
    assert w.dtype == np.float32 and w.shape == (300, 200)
    assert np.abs(w).max() <= limit
    # U(-a, a) has variance a^2 / 3; 60,000 draws estimate it within a few percent.
    assert w.var() == pytest.approx(limit ** 2 / 3, rel=0.03)


def test_he_normal_std():
    w = he_normal((400, 300), rng=1, dtype=np.float64)
    assert w.dtype == np.float64
    assert w.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert abs(w.mean()) < 5 * np.sqrt(2 / 400) / np.sqrt(w.size)


@pytest.mark.parametrize("init", [glorot_uniform, he_normal])
def test_seeded(init):
    np.testing.assert_array_equal(init((5, 4), rng=3), init((5, 4), rng=3))
    np.testing.assert_array_equal(init((5, 4), rng=np.random.default_rng(3)), init((5, 4), rng=3))
    assert not np.array_equal(init((5, 4), rng=3), init((5, 4), rng=4))


@pytest.mark.parametrize("init", [glorot_uniform, he_normal])
def test_rejects_bad_shapes(init):
    with pytest.raises(ValueError, match=r"shape must be \(n_in, n_out\)"):
        init((3,), rng=0)
    with pytest.raises(ValueError, match=r"shape must be \(n_in, n_out\)"):
        init((0, 3), rng=0)
