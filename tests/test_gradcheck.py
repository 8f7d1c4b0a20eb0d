import numpy as np
import pytest

from condnn import GradcheckError, check_gradients, check_layer
from condnn.layers import Dense


class DenseWithWrongWeightGradient(Dense):
    """dW off by 1%: the kind of slip a gradient check exists to catch."""

    def forward(self, x, train):
        y, backprop = super().forward(x, train)

        def wrong_backprop(dy):
            dx = backprop(dy)
            self.grads["W"] += 0.01 * (x.T @ dy)
            return dx

        return y, wrong_backprop


class DenseWithTransposedInputGradient(Dense):
    def forward(self, x, train):
        y, backprop = super().forward(x, train)
        return y, lambda dy: (backprop(dy), (dy @ self.params["W"].T)[::-1])[1]


def test_detects_wrong_parameter_gradient_elementwise():
    x = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(GradcheckError) as failure:
        check_layer(DenseWithWrongWeightGradient(3, 2, rng=0, dtype=np.float64), x)
    message = str(failure.value)
    assert "FAILED" in message and "W (3, 2) (elementwise)" in message
    assert "relative error" in message


def test_detects_wrong_gradient_along_random_directions():
    x = np.random.default_rng(0).standard_normal((4, 30))
    report = check_layer(DenseWithWrongWeightGradient(30, 20, rng=0, dtype=np.float64), x,
                         raise_on_failure=False)
    assert not report.passed
    assert report.arrays["W"].failed == report.arrays["W"].checked == 8
    assert report.arrays["b"].failed == 0
    assert report.worst.array == "W"
    assert report.worst.relative_error == pytest.approx(0.01 / 1.01, rel=1e-3)


def test_detects_wrong_input_gradient():
    x = np.random.default_rng(1).standard_normal((4, 3))
    report = check_layer(DenseWithTransposedInputGradient(3, 2, rng=0, dtype=np.float64), x,
                         raise_on_failure=False)
    assert report.arrays["x"].failed > 0 and report.arrays["W"].failed == 0


def test_passes_correct_gradient_and_restores_arrays_exactly():
    a = np.random.default_rng(2).standard_normal((3, 4))
    before = a.copy()
    report = check_gradients(lambda: float(np.sum(np.sin(a))), {"a": a}, {"a": np.cos(a)})
    assert report.passed and report.arrays["a"].checked == 12
    np.testing.assert_array_equal(a, before)
    assert report.worst.relative_error < 1e-6


def test_kinks_are_skipped_by_slopes_or_by_predicate():
    a = np.array([0.0, 1.0, -2.0, 0.5])
    grad = (a > 0).astype(float)

    def f():
        return float(np.maximum(a, 0).sum())

    report = check_gradients(f, {"a": a}, {"a": grad})
    assert report.arrays["a"].skipped == 1 and report.arrays["a"].checked == 3
    with pytest.raises(GradcheckError):
        check_gradients(f, {"a": a}, {"a": grad}, kink_tol=np.inf)
    report = check_gradients(f, {"a": a}, {"a": grad}, kink_tol=np.inf,
                             near_kink=lambda name, d: bool(np.any(np.abs(a[d != 0]) < 1e-3)))
    assert report.arrays["a"].skipped == 1 and report.passed


def test_too_many_kinks_is_a_failure_not_a_pass():
    a = np.zeros(5)
    with pytest.raises(GradcheckError, match="5 of 5 probes lay at kinks"):
        check_gradients(lambda: float(np.abs(a).sum()), {"a": a}, {"a": np.zeros(5)})


def test_rejects_float32_and_mismatched_shapes():
    a = np.ones(3, np.float32)
    with pytest.raises(TypeError, match="gradient checks need float64 arrays"):
        check_gradients(lambda: float(a.sum()), {"a": a}, {"a": np.ones(3)})
    b = np.ones(3)
    with pytest.raises(ValueError, match=r"grads\['b'\] must have shape \(3,\)"):
        check_gradients(lambda: float(b.sum()), {"b": b}, {"b": np.ones(2)})
