"""Subnormal numbers stored as 0: the helper, Adam's updates (compiled and NumPy) and the
frozen copies for inference."""
import numpy as np
import pytest

from condnn.layers import Dense
from condnn.models import ConditionalMLP, for_inference
from condnn.objective import ConditionalObjective
from condnn.optim import SGD, Adam, _kernels
from condnn.optim.kernels import add_scaled
from condnn.subnormals import flush_subnormals


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flush_zeroes_exactly_the_subnormals(dtype):
    tiny = np.finfo(dtype).tiny
    x = np.array([tiny, tiny / 2, -tiny / 4, tiny / 2 ** 20, 0.0, -0.0, 1.0, -tiny, np.inf,
                  np.nan], dtype)
    kept = x.copy()
    assert flush_subnormals(x) == 3
    np.testing.assert_array_equal(x[1:4], 0)
    np.testing.assert_array_equal(x[[0, 4, 5, 6, 7, 8]], kept[[0, 4, 5, 6, 7, 8]])
    assert np.isnan(x[9])


def test_flush_leaves_other_arrays_alone():
    ints = np.arange(4)
    assert flush_subnormals(ints) == 0 and flush_subnormals([1e-40]) == 0
    np.testing.assert_array_equal(ints, np.arange(4))


def adam_arrays(dtype):
    """A parameter, gradient and moments whose update leaves subnormals in every one of
    p, m and v at the even places, normal numbers at the odd ones."""
    tiny = np.finfo(dtype).tiny
    p = np.array([tiny / 8, 1.0, tiny / 2, 0.5], dtype)
    g = np.zeros(4, dtype)
    m = np.array([tiny, 1e-3, tiny, 1e-3], dtype)
    v = np.array([tiny, 1e-2, tiny, 1e-2], dtype)
    return p, g, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_adam_stores_no_subnormal(dtype):
    p, g, m, v = adam_arrays(dtype)
    # A step of 0 keeps p where it is: the subnormal p stays subnormal unless flushed.
    _kernels.adam_update(p, g, m, v, 0.9, 0.999, 1e-8, 0.0, 1.0, 1)
    for x in (p, m, v):
        np.testing.assert_array_equal(x[[0, 2]], 0)
        assert np.all(np.abs(x[[1, 3]]) >= np.finfo(dtype).tiny)
    assert p[1] == 1.0 and p[3] == 0.5


def test_numpy_adam_stores_no_subnormal():
    fc = Dense(2, 2, rng=0, dtype=np.float64)
    optimizer = Adam(fc, lr=0.01)
    p, g, m, v = adam_arrays(np.float64)
    slots = {"m": m, "v": v}
    strided = np.zeros((4, 2))[:, 0]          # the NumPy path: the kernel takes no strides
    assert not _kernels.applies(p, strided)
    optimizer.update(p, strided, slots, optimizer.groups[-1].hyper, 0.0, 1)
    for x in (p, m, v):
        np.testing.assert_array_equal(x[[0, 2]], 0)
    assert p[1] == 1.0 and p[3] == 0.5


def test_frozen_copy_has_no_subnormal_and_leaves_the_model_alone():
    model = ConditionalMLP(n_in=8, n_classes=3, hidden=[[4, 4]], tau=0.5, seed=0)
    weights = [w for _, layer in model.walk() for w in layer.params.values()]
    for w in weights:
        w.flat[0] = np.finfo(w.dtype).tiny / 4
    frozen = for_inference(model)
    for w in weights:
        assert w.flat[0] == np.finfo(w.dtype).tiny / 4
    copies = [w for _, layer in frozen.walk() for w in layer.params.values()]
    assert len(copies) == len(weights)
    for w in copies:
        assert w.flat[0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_compiled_sgd_matches_numpy_bit_for_bit(dtype, momentum, nesterov):
    gradients = np.random.default_rng(2).standard_normal((4, 6, 8)).astype(dtype)
    results = []
    for strided in (False, True):
        fc = Dense(6, 4, rng=0, dtype=dtype)
        optimizer = SGD(fc, lr=0.05, momentum=momentum, nesterov=nesterov)
        for t, g in enumerate(gradients, start=1):
            grad = g[:, ::2] if strided else np.ascontiguousarray(g[:, ::2])
            assert _kernels.applies(fc.params["W"], grad) is not strided
            zeroed = optimizer.update(fc.params["W"], grad, optimizer.slots.get("W", {}),
                                      optimizer.groups[-1].hyper, 0.05, t)
            assert zeroed is not strided
            if zeroed:
                assert not grad.any()
        results.append(fc.params["W"].copy())
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("strided", [False, True])
def test_sgd_stores_no_subnormal(strided):
    tiny = np.finfo(np.float32).tiny
    fc = Dense(2, 2, rng=0)
    optimizer = SGD(fc, lr=0.01, momentum=0.5)
    p = np.array([tiny / 8, 1.0, tiny / 2, 0.5], np.float32)
    velocity = np.array([tiny, 1e-3, tiny, 1e-3], np.float32)
    grad = np.zeros((4, 2), np.float32)[:, 0] if strided else np.zeros(4, np.float32)
    optimizer.update(p, grad, {"momentum": velocity}, optimizer.groups[-1].hyper, 0.0, 1)
    for x in (p, velocity):
        np.testing.assert_array_equal(x[[0, 2]], 0)
        assert np.all(np.abs(x[[1, 3]]) >= tiny)


def has_subnormal(x):
    return bool(np.any((x != 0) & (np.abs(x) < np.finfo(x.dtype).tiny)))


def add_scaled_arrays(dtype):
    """y, x and alpha = 1e-4 such that the terms alpha x[i] are subnormal at 0 and 3, the
    sums subnormal at 1 (a normal term cancelling most of y), and normal elsewhere."""
    tiny = np.finfo(dtype).tiny
    x = np.array([tiny * 100, -tiny * 2e4, 1.0, -tiny * 5e3, np.nan, np.inf, 3.0, tiny * 2e4],
                 dtype)
    y = np.array([0.0, tiny * 2.5, 1.0, tiny * 4, 0.0, 0.0, -0.0, 0.0], dtype)
    return y, x, 1e-4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strided", [False, True])
def test_add_scaled_drops_subnormal_terms_and_results(dtype, strided):
    tiny = np.finfo(dtype).tiny
    y, x, alpha = add_scaled_arrays(dtype)
    expected = y.astype(np.float64) + alpha * x.astype(np.float64)
    if strided:            # the NumPy path
        y = np.repeat(y[:, None], 2, axis=1)[:, 0]
        assert not _kernels.applies(y, x)
    else:
        assert _kernels.applies(y, x)
    add_scaled(y, alpha, x)
    assert y[0] == 0                        # a subnormal term alone
    assert y[1] == 0                        # a subnormal sum of normal numbers
    assert y[3] == np.float64(tiny * 4)     # y kept, the subnormal term dropped
    assert np.isnan(y[4]) and y[5] == np.inf
    np.testing.assert_allclose(y[[2, 6, 7]], expected[[2, 6, 7]], rtol=1e-6)
    assert np.all(np.abs(y[[2, 6, 7]]) >= tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_scaled_paths_agree_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    tiny = np.finfo(dtype).tiny
    # Magnitudes from far below to far above tiny / alpha.
    x = (rng.standard_normal(4000) * np.exp(rng.uniform(-20, 20, 4000)) * tiny * 1e4)
    x = x.astype(dtype)
    y = (rng.standard_normal(4000) * tiny * rng.uniform(0, 4, 4000)).astype(dtype)
    results = []
    for strided in (False, True):
        yy = np.repeat(y[:, None], 2, axis=1)[:, 0] if strided else y.copy()
        assert _kernels.applies(yy, x) is not strided
        add_scaled(yy, 1e-4, x)
        results.append(np.array(yy))
    np.testing.assert_array_equal(results[0], results[1])
    for result in results:
        assert not has_subnormal(result)


def test_l2_gradient_of_tiny_weights_has_no_subnormal():
    model = ConditionalMLP(n_in=8, n_classes=3, hidden=[[4, 4], [4, 4]], tau=0.5, seed=0)
    # Scattered weights that the L2 penalty has decayed to where 2 lambda w is subnormal.
    rng = np.random.default_rng(1)
    for path, w in model.named_params().items():
        if path.rsplit("/", 1)[-1] in ("W", "Z"):
            w[rng.random(w.shape) < 0.2] = np.finfo(w.dtype).tiny * 50
    x = np.random.default_rng(0).random((16, 8), dtype=np.float32)
    y = np.arange(16) % 3
    ConditionalObjective(1.0, 1.0, 5e-5).step(model, x, y)
    for path, grad in model.named_grads().items():
        assert not has_subnormal(grad), path
