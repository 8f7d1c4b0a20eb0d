import numpy as np
import pytest

from condnn.layers import Dense
from condnn.optim import Adam


def reference_adam(p, grads, lr, beta1, beta2, eps, decay=0.0, decoupled=False):
    """Adam as written in Kingma & Ba's Algorithm 1, in float64, one scalar at a time."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * decay)
        else:
            g = g + decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
    return p


@pytest.mark.parametrize("decay, decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_matches_reference(decay, decoupled):
    fc = Dense(2, 2, rng=0, dtype=np.float64)
    start = fc.params["W"].copy()
    grads = np.random.default_rng(0).standard_normal((6, 2, 2))
    optimizer = Adam(fc, lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=decay,
                     decoupled=decoupled)
    for g in grads:
        fc.grads["W"][...] = g
        optimizer.step()
    for index in np.ndindex(2, 2):
        expected = reference_adam(start[index], grads[(slice(None),) + index], 0.01, 0.8, 0.99,
                                  1e-6, decay, decoupled)
        assert fc.params["W"][index] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_first_step_moves_by_lr_whatever_the_gradient_scale():
    fc = Dense(2, 2, rng=0)
    start = fc.params["W"].copy()
    fc.grads["W"][...] = [[1e-3, -5.0], [200.0, -1e-2]]
    Adam(fc, lr=0.01).step()
    np.testing.assert_allclose(start - fc.params["W"], 0.01 * np.sign([[1, -1], [1, -1]]),
                               rtol=1e-3)


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match=r"beta2 must be a number in \[0, 1\)"):
        Adam(Dense(2, 2), lr=0.1, beta2=1.0)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        Adam(Dense(2, 2), lr=0.1, eps=0)
