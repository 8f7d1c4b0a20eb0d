import numpy as np
import pytest

from condnn.layers import Dense
from condnn.optim import SGD


def layer_of_ones():
    fc = Dense(2, 3, rng=0, dtype=np.float64)
    fc.params["W"][...] = 1.0
    return fc


def run(optimizer, fc, grads):
    for g in grads:
        fc.grads["W"][...] = g
        optimizer.step()
    return fc.params["W"][0, 0]


def test_plain_sgd_and_zeroed_grads():
    fc = layer_of_ones()
    optimizer = SGD(fc, lr=0.5)
    fc.grads["W"][...] = 2.0
    optimizer.step()
    np.testing.assert_array_equal(fc.params["W"], np.zeros((2, 3)))
    assert np.all(fc.grads["W"] == 0) and np.all(fc.grads["b"] == 0)
    assert optimizer.state_dict()["slots"] == {}


def test_momentum_by_hand():
    fc = layer_of_ones()
    # v1 = 1, p = 1 - 0.1; v2 = 0.9 + 2 = 2.9, p = 0.9 - 0.29; v3 = 2.61 - 1, p -= 0.161
    value = run(SGD(fc, lr=0.1, momentum=0.9), fc, [1.0, 2.0, -1.0])
    assert value == pytest.approx(1 - 0.1 - 0.29 - 0.161, rel=1e-12)


def test_nesterov_by_hand():
    fc = layer_of_ones()
    # v1 = 1, step g + 0.9 v = 1.9; v2 = 0.9 + 2 = 2.9, step 2 + 2.61 = 4.61
    value = run(SGD(fc, lr=0.1, momentum=0.9, nesterov=True), fc, [1.0, 2.0])
    assert value == pytest.approx(1 - 0.19 - 0.461, rel=1e-12)


def test_converges_on_a_quadratic():
    fc = Dense(3, 1, rng=0, dtype=np.float64)
    target = np.array([[1.0], [-2.0], [0.5]])
    optimizer = SGD(fc, lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(200):
        fc.grads["W"][...] = fc.params["W"] - target       # gradient of |W - target|^2 / 2
        optimizer.step()
    np.testing.assert_allclose(fc.params["W"], target, atol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lr": -1.0}, ValueError, "lr of group 'default' must be a positive number"),
    ({"lr": 0.1, "momentum": 1.0}, ValueError, r"momentum must be a number in \[0, 1\)"),
    ({"lr": 0.1, "nesterov": True}, ValueError, "nesterov=True needs momentum > 0"),
    ({"lr": 0.1, "betas": (0.9, 0.9)}, TypeError, r"SGD has no hyperparameter \['betas'\]"),
])
def test_rejects_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        SGD(Dense(2, 2), **kwargs)
