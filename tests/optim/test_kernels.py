"""The fused elementwise kernels against the NumPy formulas they replace."""
import numpy as np
import pytest

from condnn.optim import _kernels
from condnn.optim.adam import Adam
from condnn.optim.kernels import add_scaled
from condnn.layers import Dense

SIZES = [1, 7, 1000, (1 << 18) + 3]       # the last one runs on a team of threads


def _numpy_adam(p, g, m, v, beta1, beta2, eps, step, scale):
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    p[...] = p - step * (m / (np.sqrt(v) * scale + eps))


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("size", SIZES)
def test_adam_update_matches_numpy(dtype, rtol, size):
    rng = np.random.default_rng(size)
    p, g, m = (rng.standard_normal(size).astype(dtype) for _ in range(3))
    v = rng.random(size).astype(dtype)
    expected = [x.astype(np.float64) for x in (p, g, m, v)]
    _numpy_adam(*expected, 0.9, 0.999, 1e-8, 0.01, 1.3)
    _kernels.adam_update(p, g, m, v, 0.9, 0.999, 1e-8, 0.01, 1.3, 2)
    for got, want in zip((p, m, v), (expected[0], expected[2], expected[3])):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    assert not g.any(), "the gradient is set to 0"


def test_results_do_not_depend_on_the_threads():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(SIZES[-1]).astype(np.float32) for _ in range(4)]
    arrays[3] = np.abs(arrays[3])
    one = [a.copy() for a in arrays]
    two = [a.copy() for a in arrays]
    _kernels.adam_update(*one, 0.9, 0.999, 1e-8, 0.01, 1.0, 1)
    _kernels.adam_update(*two, 0.9, 0.999, 1e-8, 0.01, 1.0, 2)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)


def test_adam_uses_numpy_for_arrays_the_kernel_does_not_take():
    # The same steps through the kernel and through the NumPy path, which a strided
    # gradient forces.
    gradients = np.random.default_rng(1).standard_normal((3, 6, 8))
    results = []
    for strided in (False, True):
        fc = Dense(6, 4, rng=0, dtype=np.float64)
        optimizer = Adam(fc, lr=0.01)
        for t, g in enumerate(gradients, start=1):
            grad = g[:, ::2] if strided else np.ascontiguousarray(g[:, ::2])
            assert _kernels.applies(fc.params["W"], grad) is not strided
            zeroed = optimizer.update(fc.params["W"], grad, optimizer.slots["W"],
                                      optimizer.groups[-1].hyper, 0.01, t)
            assert zeroed is not strided
        results.append(fc.params["W"].copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-13)


@pytest.mark.parametrize("arrays, problem", [
    (lambda: [np.zeros(4, np.float32)] * 3 + [np.zeros(4, np.float64)], "mixed dtypes"),
    (lambda: [np.zeros(4, np.int32)] * 4, "integers"),
    (lambda: [np.zeros(4, np.float32)] * 3 + [np.zeros(5, np.float32)], "sizes"),
    (lambda: [np.zeros(8, np.float32)[::2]] + [np.zeros(4, np.float32)] * 3, "strided"),
    (lambda: [np.zeros(4, np.float32)] * 3 + [[0.0] * 4], "a list"),
])
def test_adam_update_refuses_arrays_it_cannot_take(arrays, problem):
    arrays = arrays()
    assert not _kernels.applies(*arrays), problem
    if all(isinstance(a, np.ndarray) for a in arrays):
        with pytest.raises(ValueError, match="C-contiguous, writeable"):
            _kernels.adam_update(*arrays, 0.9, 0.999, 1e-8, 0.01, 1.0)


def test_read_only_arrays_are_refused():
    p = np.zeros(4, np.float32)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _kernels.adam_update(p, *(np.zeros(4, np.float32) for _ in range(3)), 0.9, 0.999,
                             1e-8, 0.01, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", SIZES)
def test_add_scaled(dtype, size):
    rng = np.random.default_rng(size)
    x, y = (rng.standard_normal(size).astype(dtype) for _ in range(2))
    expected = y.astype(np.float64) + 0.37 * x.astype(np.float64)
    add_scaled(y, 0.37, x)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)


def test_add_scaled_falls_back_to_numpy_for_strided_arrays():
    x = np.arange(12.0).reshape(3, 4)[:, ::2]
    y = np.ones((3, 2))
    add_scaled(y, 2.0, x)
    np.testing.assert_array_equal(y, 1 + 2 * x)
    with pytest.raises(ValueError, match="add_scaled needs"):
        _kernels.add_scaled(y, 2.0, x)
