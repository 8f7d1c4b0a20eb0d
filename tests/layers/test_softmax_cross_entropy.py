import numpy as np
import pytest

from condnn import check_gradients, softmax_cross_entropy


def test_matches_direct_formula():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    loss, losses, _ = softmax_cross_entropy(logits, labels)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.log(probabilities[np.arange(6), labels])
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    assert loss == pytest.approx(expected.mean(), rel=1e-12)


def test_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4 + 2]], np.float32)
    loss, losses, backprop = softmax_cross_entropy(logits, np.array([1, 2]))
    np.testing.assert_allclose(losses, [1e4, np.log(1 + np.exp(-1) + np.exp(-2))], rtol=1e-5)
    assert np.isfinite(loss) and np.all(np.isfinite(backprop()))


def test_gradient_of_mean_and_of_weighted_losses():
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    weights = rng.standard_normal(4)
    result = softmax_cross_entropy(logits, labels)
    check_gradients(lambda: softmax_cross_entropy(logits, labels).loss, {"logits": logits},
                    {"logits": result.backprop()})
    check_gradients(lambda: 0.5 * softmax_cross_entropy(logits, labels).loss
                    + float(weights @ softmax_cross_entropy(logits, labels).losses),
                    {"logits": logits}, {"logits": result.backprop(0.5, weights)})


@pytest.mark.parametrize("logits, labels, error, match", [
    (np.zeros((2, 3)), np.array([0, 3]), ValueError, r"labels must lie in \[0, 3\)"),
    (np.zeros((2, 3)), np.array([0, -1]), ValueError, r"labels must lie in \[0, 3\)"),
    (np.zeros((2, 3)), np.array([0.0, 1.0]), TypeError, "labels must be an integer"),
    (np.zeros((2, 3)), np.array([0, 1, 2]), ValueError, r"labels must have shape \(2,\)"),
    (np.zeros(3), np.array([0]), ValueError, "logits must be 2-D"),
    (np.zeros((2, 3), np.int32), np.array([0, 1]), TypeError, "logits must be a float32"),
])
def test_rejects_bad_input(logits, labels, error, match):
    with pytest.raises(error, match=match):
        softmax_cross_entropy(logits, labels)
