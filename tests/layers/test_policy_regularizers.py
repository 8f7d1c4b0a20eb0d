"""The policy's regularizers and log-likelihood: values and float64 gradient checks."""
import numpy as np
import pytest

from condnn import check_gradients
from condnn.layers.policy_regularizers import (PolicyPenalty, balance_penalty,
                                               example_penalty, log_likelihood,
                                               variance_penalty)

TAU = 0.3


def probs(seed=0, shape=(7, 5)):
    # Away from the kinks of |.|: no column or row mean within 0.02 of tau.
    rng = np.random.default_rng(seed)
    while True:
        p = rng.uniform(0.05, 0.95, shape)
        if (np.abs(p.mean(0) - TAU).min() > 0.02 and np.abs(p.mean(1) - TAU).min() > 0.02):
            return p


def test_values_match_their_definitions():
    p = probs()
    assert balance_penalty(p, TAU)[0] == pytest.approx(np.abs(p.mean(0) - TAU).sum())
    assert example_penalty(p, TAU)[0] == pytest.approx(np.abs(p.mean(1) - TAU).mean())
    assert variance_penalty(p)[0] == pytest.approx(-p.var(axis=0).sum())
    u = (np.random.default_rng(1).random(p.shape) < 0.5).astype(np.uint8)
    expected = (u * np.log(p) + (1 - u) * np.log(1 - p)).sum(axis=1)
    np.testing.assert_allclose(log_likelihood(p, u)[0], expected)


@pytest.mark.parametrize("term", [lambda p: balance_penalty(p, TAU),
                                  lambda p: example_penalty(p, TAU),
                                  variance_penalty],
                         ids=["L_b", "L_e", "L_v"])
def test_regularizer_gradients(term):
    p = probs(2)
    _, grad = term(p)
    check_gradients(lambda: term(p)[0], {"p": p}, {"p": grad})


def test_log_likelihood_gradient_for_fixed_mask():
    p = probs(3)
    u = (np.random.default_rng(4).random(p.shape) < 0.5).astype(np.uint8)
    weights = np.random.default_rng(5).standard_normal(p.shape[0])
    _, dlog_pi = log_likelihood(p, u)
    check_gradients(lambda: float(weights @ log_likelihood(p, u)[0]), {"p": p},
                    {"p": weights[:, None] * dlog_pi})


def test_penalty_combines_the_terms_with_their_weights():
    p = probs(6)
    penalty = PolicyPenalty(lambda_s=2.0, lambda_v=3.0)
    value, grad = penalty.value_and_grad(p, TAU)
    expected = 2 * (balance_penalty(p, TAU)[0] + example_penalty(p, TAU)[0]) \
        + 3 * variance_penalty(p)[0]
    assert value == pytest.approx(expected)
    check_gradients(lambda: penalty.value_and_grad(p, TAU)[0], {"p": p}, {"p": grad})


def test_balance_gradient_is_zero_at_the_kink():
    p = np.full((4, 2), TAU)
    assert not balance_penalty(p, TAU)[1].any()


@pytest.mark.parametrize("name", ["lambda_s", "lambda_v", "lambda_l2"])
def test_penalty_rejects_negative_weights(name):
    with pytest.raises(ValueError, match=name):
        PolicyPenalty(**{name: -1.0})


def test_bad_prob_shape_is_an_error():
    with pytest.raises(TypeError, match="prob"):
        balance_penalty(np.ones(3), TAU)
    with pytest.raises(ValueError, match="mask"):
        log_likelihood(np.full((2, 2), 0.5), np.ones((2, 3), np.uint8))
