import numpy as np
import pytest

from condnn import check_layer
from condnn.layers import Dense, Dropout, ReLU, Sequential, Tanh


def test_chains_forward_and_backward():
    first, second = Dense(3, 4, rng=0, dtype=np.float64), Dense(4, 2, rng=1, dtype=np.float64)
    net = Sequential(first, Tanh(), second)
    x = np.random.default_rng(0).standard_normal((5, 3))
    y, backprop = net.forward(x, True)
    h = np.tanh(x @ first.params["W"] + first.params["b"])
    np.testing.assert_allclose(y, h @ second.params["W"] + second.params["b"], rtol=1e-12)
    dx = backprop(np.ones_like(y))
    expected = ((np.ones_like(y) @ second.params["W"].T) * (1 - h ** 2)) @ first.params["W"].T
    np.testing.assert_allclose(dx, expected, rtol=1e-12)


def test_names_make_parameter_paths():
    net = Sequential(fc1=Dense(3, 4, rng=0), act=ReLU(), fc2=Dense(4, 2, rng=0))
    assert list(net.named_params()) == ["fc1/W", "fc1/b", "fc2/W", "fc2/b"]
    assert list(Sequential(Dense(3, 4), ReLU(), Dense(4, 2)).named_params())[2] == "2/W"
    assert net["act"] is net[1]
    with pytest.raises(KeyError, match="no layer named 'fc3'"):
        net["fc3"]


def test_gradients_match_finite_differences():
    net = Sequential(Dense(4, 6, rng=0, dtype=np.float64), Tanh(), Dropout(0.3, rng=1),
                     Dense(6, 3, rng=2, dtype=np.float64))
    check_layer(net, np.random.default_rng(3).standard_normal((5, 4)))


def test_input_grad_false_only_allowed_first():
    net = Sequential(Dense(3, 4, rng=0, input_grad=False), ReLU(), Dense(4, 2, rng=0))
    y, backprop = net.forward(np.ones((2, 3), np.float32), True)
    assert backprop(np.ones_like(y)) is None
    net = Sequential(Dense(3, 4, rng=0), Dense(4, 2, rng=0, input_grad=False))
    y, backprop = net.forward(np.ones((2, 3), np.float32), True)
    with pytest.raises(ValueError, match="layer '1' computes no input gradient"):
        backprop(np.ones_like(y))


def test_rejects_bad_members():
    with pytest.raises(TypeError, match="layer '1' must be a condnn Layer"):
        Sequential(Dense(2, 2), np.tanh)
    with pytest.raises(TypeError, match="either all positionally or all by name"):
        Sequential(Dense(2, 2), act=ReLU())
