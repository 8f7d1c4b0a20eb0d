"""The compiled probabilities and masks of a policy (condnn._policy.decide) against the
NumPy operations they replace, bit for bit."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from condnn import _policy
from condnn.layers.policy_gate import threshold_mask


def _numpy_decide(t, half_minus_eps, uniform, leading, keep_a_block):
    prob = t * t.dtype.type(half_minus_eps)
    prob += t.dtype.type(0.5)
    routed = (uniform < prob).view(np.uint8) if uniform is not None \
        else threshold_mask(prob, keep_a_block)
    mask = np.ones((len(t), leading + t.shape[1]), np.uint8)
    mask[:, leading:] = routed
    return prob, mask


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 9), nb=st.integers(1, 12), leading=st.integers(0, 5),
       dtype=st.sampled_from([np.float32, np.float64]), sampled=st.booleans(),
       keep_a_block=st.booleans(), eps=st.sampled_from([0.0, 0.01, 0.25]),
       seed=st.integers(0, 2 ** 16))
def test_decide_is_the_numpy_formula(n, nb, leading, dtype, sampled, keep_a_block, eps, seed):
    rng = np.random.default_rng(seed)
    # Mostly negative z, so that some rows have no block above 0.5; ties and exact zeros.
    t = np.tanh(rng.normal(-1.0, 1.5, (n, nb))).astype(dtype)
    t[rng.random((n, nb)) < 0.1] = 0.0
    if n and nb > 1:
        t[0, :] = t[0, 0]                      # a row of equal probabilities
    uniform = rng.random((n, nb), dtype=dtype) if sampled else None
    prob, mask = _policy.decide(t, 0.5 - eps, uniform, leading, keep_a_block)
    want_prob, want_mask = _numpy_decide(t, 0.5 - eps, uniform, leading, keep_a_block)
    assert prob.dtype == dtype and mask.dtype == np.uint8
    assert prob.shape == (n, nb) and mask.shape == (n, leading + nb)
    assert np.array_equal(prob, want_prob)
    assert np.array_equal(mask, want_mask)


def test_a_row_without_blocks_keeps_its_first_most_probable_or_its_nan():
    t = np.array([[-0.5, -0.2, -0.2, -0.9],
                  [-0.5, np.nan, -0.1, np.nan],
                  [0.3, -0.1, 0.5, -1.0]], np.float32)
    for keep in (True, False):
        _, mask = _policy.decide(t, 0.49, None, 1, keep)
        _, want = _numpy_decide(t, 0.49, None, 1, keep)
        assert np.array_equal(mask, want)
    _, mask = _policy.decide(t, 0.49, None, 0, True)
    assert mask.tolist() == [[0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0]]


@pytest.mark.parametrize("t, uniform, leading, error", [
    (np.zeros((2, 3), np.float16), None, 0, TypeError),
    (np.zeros(3, np.float32), None, 0, TypeError),
    (np.zeros((3, 2), np.float32).T, None, 0, TypeError),
    (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float64), 0, ValueError),
    (np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32), 0, ValueError),
    (np.zeros((2, 3), np.float32), None, -1, ValueError),
])
def test_bad_arguments_are_refused(t, uniform, leading, error):
    with pytest.raises(error):
        _policy.decide(t, 0.49, uniform, leading, True)
