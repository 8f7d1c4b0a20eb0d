import warnings

import numpy as np
import pytest

from condnn import GradcheckError, check_layer
from condnn.layers import ReLU, Sigmoid, Tanh


def make_input(seed=0):
    return np.random.default_rng(seed).standard_normal((6, 7)) * 2


@pytest.mark.parametrize("layer, formula", [
    (ReLU(), lambda x: np.where(x > 0, x, 0.0)),
    (Tanh(), lambda x: (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))),
    (Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
])
def test_forward_matches_formula(layer, formula):
    x = make_input()
    y, _ = layer.forward(x, True)
    np.testing.assert_allclose(y, formula(x), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("layer", [ReLU(), Tanh(), Sigmoid()])
def test_gradients_match_finite_differences(layer):
    check_layer(layer, make_input(1))


def test_relu_at_its_kink_is_skipped_not_failed():
    x = make_input(2)
    x[0, :3] = 0.0            # exactly at the kink: the one-sided slopes differ
    report = check_layer(ReLU(), x)
    assert report.arrays["x"].skipped == 3
    with pytest.raises(GradcheckError):
        check_layer(ReLU(), x, kink_tol=np.inf)   # without kink detection these fail


def test_sigmoid_does_not_overflow():
    x = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, backprop = Sigmoid().forward(x, True)
        dx = backprop(np.ones_like(y))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("layer", [ReLU(), Tanh(), Sigmoid()])
def test_keeps_dtype_and_rejects_bad_input(layer):
    y, backprop = layer.forward(np.ones((2, 3), np.float32), True)
    assert y.dtype == np.float32 and backprop(np.ones_like(y)).dtype == np.float32
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        layer.forward(np.ones((2, 3), np.int64), True)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        layer.forward([1.0, 2.0], True)
    with pytest.raises(ValueError, match="dy must have shape"):
        backprop(np.ones((3, 2), np.float32))
