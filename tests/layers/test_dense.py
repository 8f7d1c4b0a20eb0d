import numpy as np
import pytest

from condnn import check_layer, he_normal
from condnn.layers import Dense


def make_input(n=5, d=4, seed=1):
    return np.random.default_rng(seed).standard_normal((n, d))


def test_forward_is_affine_map():
    fc = Dense(4, 3, rng=0, dtype=np.float64)
    fc.params["b"][:] = [1.0, -2.0, 0.5]
    x = make_input()
    y, _ = fc.forward(x, train=True)
    expected = np.array([[sum(x[i, k] * fc.params["W"][k, j] for k in range(4))
                          + fc.params["b"][j] for j in range(3)] for i in range(5)])
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_gradients_match_finite_differences():
    fc = Dense(4, 3, rng=0, dtype=np.float64)
    fc.params["b"][:] = np.random.default_rng(2).standard_normal(3)
    report = check_layer(fc, make_input())
    assert set(report.arrays) == {"x", "W", "b"}


def test_large_layer_is_checked_along_random_directions():
    fc = Dense(40, 30, rng=0, dtype=np.float64)
    report = check_layer(fc, make_input(6, 40))
    assert report.arrays["W"].mode.endswith("random directions")
    assert report.arrays["x"].mode == "elementwise"


def test_backprop_adds_into_grads():
    fc = Dense(4, 3, rng=0, dtype=np.float64)
    x = make_input()
    y, backprop = fc.forward(x, True)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    backprop(dy)
    once = {k: v.copy() for k, v in fc.grads.items()}
    backprop(dy)
    for name in once:
        np.testing.assert_allclose(fc.grads[name], 2 * once[name], rtol=1e-12)
    np.testing.assert_allclose(once["W"], x.T @ dy, rtol=1e-12)
    np.testing.assert_allclose(once["b"], dy.sum(axis=0), rtol=1e-12)


def test_two_calls_in_one_pass_keep_their_own_inputs():
    fc = Dense(4, 3, rng=0, dtype=np.float64)
    x1, x2 = make_input(seed=1), make_input(seed=2)
    y1, backprop1 = fc.forward(x1, True)
    y2, backprop2 = fc.forward(x2, True)
    dy1, dy2 = np.ones_like(y1), 2 * np.ones_like(y2)
    dx2 = backprop2(dy2)
    dx1 = backprop1(dy1)
    np.testing.assert_allclose(fc.grads["W"], x1.T @ dy1 + x2.T @ dy2, rtol=1e-12)
    np.testing.assert_allclose(dx1, dy1 @ fc.params["W"].T, rtol=1e-12)
    np.testing.assert_allclose(dx2, dy2 @ fc.params["W"].T, rtol=1e-12)


def test_input_grad_false_skips_dx_but_not_parameter_grads():
    fc = Dense(4, 3, rng=0, dtype=np.float64, input_grad=False)
    x = make_input()
    y, backprop = fc.forward(x, True)
    assert backprop(np.ones_like(y)) is None
    np.testing.assert_allclose(fc.grads["W"], x.T @ np.ones_like(y))
    report = check_layer(fc, x)
    assert "x" not in report.arrays


def test_dtype_and_seeded_init():
    assert Dense(3, 2, rng=0).params["W"].dtype == np.float32
    assert Dense(3, 2, rng=0, dtype=np.float64).grads["b"].dtype == np.float64
    np.testing.assert_array_equal(Dense(3, 2, rng=7).params["W"], Dense(3, 2, rng=7).params["W"])
    assert not np.array_equal(Dense(3, 2, rng=7).params["W"], Dense(3, 2, rng=8).params["W"])
    w = Dense(500, 400, init=he_normal, rng=0).params["W"]
    assert abs(w.std() - np.sqrt(2 / 500)) < 0.01 * np.sqrt(2 / 500) * 5


@pytest.mark.parametrize("n_in, n_out, error, match", [
    (0, 3, ValueError, "n_in must be at least 1"),
    (3, -1, ValueError, "n_out must be at least 1"),
    (2.5, 3, TypeError, "n_in must be an int"),
])
def test_rejects_bad_sizes(n_in, n_out, error, match):
    with pytest.raises(error, match=match):
        Dense(n_in, n_out)


def test_rejects_bad_dtype():
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        Dense(3, 2, dtype=np.int32)


@pytest.mark.parametrize("x, error, match", [
    (np.ones((5, 3), np.float32), ValueError, "x must have 4 columns"),
    (np.ones(4, np.float32), ValueError, "x must be 2-D"),
    (np.ones((5, 4), np.float64), TypeError, "x must have dtype float32"),
    ([[1.0] * 4], TypeError, "x must be a numpy.ndarray"),
])
def test_rejects_bad_input(x, error, match):
    with pytest.raises(error, match=match):
        Dense(4, 3, rng=0).forward(x, True)


def test_rejects_gradient_of_wrong_shape():
    y, backprop = Dense(4, 3, rng=0).forward(np.ones((5, 4), np.float32), True)
    with pytest.raises(ValueError, match=r"dy must have shape \(5, 3\)"):
        backprop(np.ones((5, 2), np.float32))
