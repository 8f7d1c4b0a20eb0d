import numpy as np
import pytest

from condnn import check_layer
from condnn.layers import Dropout


def test_evaluation_is_identity():
    x = np.random.default_rng(0).standard_normal((4, 5))
    y, backprop = Dropout(0.5, rng=0).forward(x, train=False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(backprop(x), x)


def test_training_drops_at_rate_and_rescales():
    x = np.ones((400, 250), np.float32)
    y, backprop = Dropout(0.3, rng=0).forward(x, True)
    kept = y != 0
    # 100,000 Bernoulli(0.7) draws: the kept fraction is within 5 standard deviations.
    assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.7 * 0.3 / x.size)
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    dy = np.full_like(x, 2.0)
    np.testing.assert_array_equal(backprop(dy), y * 2)


def test_same_seed_same_masks_and_rng_is_exposed():
    x = np.ones((10, 10))
    first, second = Dropout(0.5, rng=3), Dropout(0.5, rng=3)
    np.testing.assert_array_equal(first.forward(x, True)[0], second.forward(x, True)[0])
    assert not np.array_equal(first.forward(x, True)[0], first.forward(x, True)[0])
    assert first.named_rngs() == {"rng": first.rng}


def test_gradients_match_finite_differences():
    report = check_layer(Dropout(0.4, rng=0), np.random.default_rng(1).standard_normal((5, 6)))
    assert report.arrays["x"].checked == 30


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rejects_rate_outside_unit_interval(rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        Dropout(rate)


def test_rejects_bad_rng():
    with pytest.raises(TypeError, match="rng must be None, an int seed or a numpy.random"):
        Dropout(0.5, rng="seed")
