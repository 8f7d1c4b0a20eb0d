"""The REINFORCE baselines: their values, updates, saved state and unbiasedness."""
import json

import numpy as np
import pytest

from condnn.baselines import (BASELINES, BatchMinBaseline, LearnedBaseline,
                              MovingAverageBaseline, NoBaseline, make_baseline)

X = np.random.default_rng(0).random((8, 5))
COSTS = np.random.default_rng(1).uniform(0, 3, 8)


def test_none_subtracts_nothing():
    np.testing.assert_array_equal(NoBaseline().advantages(X, COSTS), COSTS)


def test_batch_min_makes_the_best_example_zero():
    advantages = BatchMinBaseline().advantages(X, COSTS)
    assert advantages.min() == 0 and np.all(advantages >= 0)
    np.testing.assert_allclose(advantages, COSTS - COSTS.min())


def test_moving_average_starts_at_the_first_batch_mean_then_lags():
    baseline = MovingAverageBaseline(momentum=0.5)
    np.testing.assert_allclose(baseline.advantages(X, COSTS), COSTS - COSTS.mean())
    assert baseline.value == pytest.approx(COSTS.mean())
    # The second batch sees the average of the first, not its own costs.
    second = COSTS + 1.0
    np.testing.assert_allclose(baseline.values(X, second), COSTS.mean())
    baseline.update(X, second)
    assert baseline.value == pytest.approx(0.5 * COSTS.mean() + 0.5 * second.mean())


@pytest.mark.parametrize("linear", [True, False])
def test_learned_baseline_fits_the_costs(linear):
    rng = np.random.default_rng(2)
    w_true = rng.standard_normal(5)
    baseline = LearnedBaseline(5, linear=linear, lr=0.5)
    for _ in range(3000):
        x = rng.random((16, 5))
        baseline.update(x, x @ w_true + 2.0)
    x = rng.random((200, 5))
    residual = baseline.values(x, np.zeros(200)) - (x @ w_true + 2.0)
    spread = np.std(x @ w_true)
    if linear:
        assert np.sqrt(np.mean(residual ** 2)) < 0.1 * spread
    else:  # a constant can only fit the mean
        assert abs(residual.mean()) < 0.1 * spread


@pytest.mark.parametrize("name", BASELINES)
def test_state_round_trips_through_json(name):
    baseline = make_baseline(name, 5)
    baseline.advantages(X, COSTS)
    baseline.advantages(X, COSTS * 2)
    restored = make_baseline(name, 5)
    restored.load_state_dict(json.loads(json.dumps(baseline.state_dict())))
    np.testing.assert_array_equal(restored.values(X, COSTS), baseline.values(X, COSTS))


@pytest.mark.parametrize("name", ["moving-average", "learned-linear", "learned-scalar"])
def test_baseline_does_not_depend_on_the_batch_it_scores(name):
    # b_i must not depend on the sampled masks, i.e. on this batch's own costs.
    baseline = make_baseline(name, 5)
    baseline.advantages(X, COSTS)
    first = baseline.values(X, COSTS)
    np.testing.assert_array_equal(baseline.values(X, COSTS * 10), first)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="baseline must be one of"):
        make_baseline("median", 5)
    with pytest.raises(ValueError, match="momentum"):
        MovingAverageBaseline(1.0)
    with pytest.raises(ValueError, match="lr"):
        LearnedBaseline(5, lr=0.0)
    with pytest.raises(ValueError, match="costs"):
        NoBaseline().advantages(X, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="x must have shape"):
        LearnedBaseline(5).values(np.zeros((8, 4)), COSTS)
    with pytest.raises(ValueError, match="moving-average"):
        NoBaseline().load_state_dict(MovingAverageBaseline().state_dict())
