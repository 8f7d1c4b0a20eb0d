"""PolicyGate: probabilities, masks in each mode, and float64 gradient checks."""
import numpy as np
import pytest

from condnn import check_gradients
from condnn.layers import PolicyGate, PolicyPenalty
from condnn.layers.policy_gate import threshold_mask
from condnn.layers.policy_regularizers import log_likelihood


pytestmark = pytest.mark.usefixtures("one_thread")

N, N_IN, BLOCKS = 6, 8, 4


def make_gate(**kwargs):
    options = dict(tau=0.3, rng=0, dtype=np.float64, init_scale=2.0)
    options.update(kwargs)
    return PolicyGate(N_IN, BLOCKS, **options)


def inputs(seed=1):
    return np.random.default_rng(seed).standard_normal((N, N_IN))


def test_probabilities_are_squashed_sigmoids():
    gate = make_gate(eps=0.05)
    h = inputs()
    out, _ = gate.forward(h, train=False)
    z = h @ gate.params["Z"] + gate.params["d"]
    np.testing.assert_allclose(out.prob, 0.05 + 0.9 / (1 + np.exp(-z)))
    assert out.prob.min() >= 0.05 and out.prob.max() <= 0.95
    assert out.mask.dtype == np.uint8 and out.mask.shape == (N, BLOCKS)


def test_initial_probabilities_are_near_tau():
    gate = PolicyGate(N_IN, BLOCKS, tau=0.2, rng=0, dtype=np.float64, init_scale=0.0)
    out, _ = gate.forward(inputs(), train=False)
    np.testing.assert_allclose(out.prob, 0.01 + 0.98 * 0.2)


def test_threshold_mode_is_deterministic_and_thresholds_at_one_half():
    gate = make_gate(mode="threshold")
    h = inputs()
    first, _ = gate.forward(h, train=False)
    second, _ = gate.forward(h, train=False)
    rows = (first.prob > 0.5).any(axis=1)            # rows that need no fallback
    assert rows.any()
    np.testing.assert_array_equal(first.mask[rows], first.prob[rows] > 0.5)
    np.testing.assert_array_equal(first.mask, second.mask)


def test_threshold_keeps_the_most_probable_block_of_an_empty_row():
    prob = np.array([[0.2, 0.4, 0.1], [0.7, 0.2, 0.9]])
    np.testing.assert_array_equal(threshold_mask(prob), [[0, 1, 0], [1, 0, 1]])


def test_training_and_sample_mode_draw_bernoulli_masks_from_the_seeded_generator():
    h = np.zeros((4000, N_IN))
    gate = make_gate(mode="sample")
    out, _ = gate.forward(h, train=False)
    # Every row has the same p: the empirical rate matches it.
    np.testing.assert_allclose(out.mask.mean(axis=0), out.prob[0], atol=0.03)
    again, _ = make_gate(mode="sample").forward(h, train=True)
    np.testing.assert_array_equal(out.mask, again.mask)       # same seed, same masks
    assert "rng" in make_gate().named_rngs()                   # saved in checkpoints


def test_mode_can_be_overridden_per_call():
    gate = make_gate(mode="threshold")
    h = inputs()
    sampled = [gate.forward(h, train=False, mode="sample")[0].mask for _ in range(5)]
    assert any(not np.array_equal(sampled[0], s) for s in sampled[1:])


def test_given_mask_is_used():
    gate = make_gate()
    mask = np.ones((N, BLOCKS), np.uint8)
    out, _ = gate.forward(inputs(), train=True, mask=mask)
    assert out.mask is mask


def test_masked_input_gives_the_dense_result():
    gate = PolicyGate(N_IN, BLOCKS, tau=0.3, rng=0, dtype=np.float64, input_block_size=2)
    h = inputs()
    amask = (np.random.default_rng(2).random((N, N_IN // 2)) < 0.5).astype(np.uint8)
    h_masked = h * np.repeat(amask, 2, axis=1)
    sparse, _ = gate.forward(h_masked, train=False, amask=amask)
    dense, _ = gate.forward(h_masked, train=False)
    np.testing.assert_allclose(sparse.prob, dense.prob, rtol=1e-12)


def objective_and_grads(gate, h, mask, advantages, penalty, dprob, amask=None):
    """The scalar the gate's backprop differentiates, and the gradients it gives."""
    def f():
        out, _ = gate.forward(h, True, amask=amask, mask=mask)
        value = float(advantages @ log_likelihood(out.prob, mask)[0])
        value += penalty.value_and_grad(out.prob, gate.tau)[0]
        value += penalty.lambda_l2 * float((gate.params["Z"] ** 2).sum())
        return value + float((dprob * out.prob).sum())

    gate.zero_grads()
    _, backprop = gate.forward(h, True, amask=amask, mask=mask)
    dh = backprop(advantages, penalty, dprob)
    return f, dict(gate.grads), dh


@pytest.mark.parametrize("penalty", [PolicyPenalty(), PolicyPenalty(1.5, 0.7, 0.01)],
                         ids=["reinforce only", "with regularizers"])
def test_backprop_matches_finite_differences(penalty):
    gate = make_gate()
    rng = np.random.default_rng(3)
    h = inputs()
    mask = (rng.random((N, BLOCKS)) < 0.5).astype(np.uint8)
    f, grads, dh = objective_and_grads(gate, h, mask, rng.standard_normal(N), penalty,
                                       rng.standard_normal((N, BLOCKS)))
    assert dh is None                          # stop-gradient: nothing flows into h
    check_gradients(f, gate.params, grads)


def test_input_gradient_when_asked_for():
    gate = PolicyGate(N_IN, BLOCKS, tau=0.3, rng=0, dtype=np.float64, input_block_size=2,
                      input_grad=True, init_scale=2.0)
    rng = np.random.default_rng(4)
    amask = (rng.random((N, N_IN // 2)) < 0.6).astype(np.uint8)
    h = inputs() * np.repeat(amask, 2, axis=1)
    mask = (rng.random((N, BLOCKS)) < 0.5).astype(np.uint8)
    f, _, dh = objective_and_grads(gate, h, mask, rng.standard_normal(N), PolicyPenalty(1, 1),
                                   np.zeros((N, BLOCKS)), amask=amask)
    assert not dh[np.repeat(amask, 2, axis=1) == 0].any()   # masked-off inputs get nothing
    check_gradients(f, {"h": h}, {"h": dh})


def test_backprop_adds_into_the_gradients():
    gate = make_gate()
    h = inputs()
    _, backprop = gate.forward(h, True)
    backprop(np.ones(N))
    once = gate.grads["Z"].copy()
    backprop(np.ones(N))
    np.testing.assert_allclose(gate.grads["Z"], 2 * once)


@pytest.mark.parametrize("kwargs, match", [
    ({"tau": 0.0}, "tau"), ({"tau": 1.5}, "tau"), ({"tau": 0.2, "eps": 0.5}, "eps"),
    ({"tau": 0.2, "mode": "argmax"}, "mode"), ({"tau": 0.2, "input_block_size": 3}, "divide")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PolicyGate(N_IN, BLOCKS, **kwargs)


def test_bad_advantages_shape_is_an_error():
    _, backprop = make_gate().forward(inputs(), True)
    with pytest.raises(ValueError, match="advantages"):
        backprop(np.ones(N + 1))


def test_amask_needs_an_input_block_size():
    with pytest.raises(ValueError, match="input_block_size"):
        make_gate().forward(inputs(), True, amask=np.ones((N, 4), np.uint8))
