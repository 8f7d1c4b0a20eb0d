"""The REINFORCE estimator is unbiased: its expectation over every mask, computed exactly
by enumeration, equals the gradient of the expected cost (by finite differences)."""
import itertools

import numpy as np
import pytest

from condnn import check_gradients
from condnn.layers import PolicyGate, softmax_cross_entropy
from condnn.models import ConditionalMLP


pytestmark = pytest.mark.usefixtures("one_thread")


def all_masks(n_blocks):
    return [np.array([bits], np.uint8) for bits in itertools.product([0, 1], repeat=n_blocks)]


@pytest.mark.parametrize("baseline", [0.0, 0.7])
def test_gate_estimator_expectation_is_the_gradient_of_the_expected_cost(baseline):
    # One example, three blocks, a fixed cost for each of the 8 masks.
    gate = PolicyGate(4, 3, tau=0.4, rng=0, dtype=np.float64, init_scale=3.0)
    h = np.random.default_rng(1).standard_normal((1, 4))
    masks = all_masks(3)
    costs = np.random.default_rng(2).uniform(0, 2, len(masks))

    def probability(mask):
        out, _ = gate.forward(h, True, mask=mask)
        return float(np.prod(np.where(mask == 1, out.prob, 1 - out.prob)))

    def expected_cost():
        return sum(probability(m) * c for m, c in zip(masks, costs))

    # E_u[(C(u) - b) grad log pi(u)]: each mask's term weighted by its probability; the
    # gate's backprop adds them up.
    gate.zero_grads()
    for mask, cost in zip(masks, costs):
        weight = probability(mask) * (cost - baseline)
        _, backprop = gate.forward(h, True, mask=mask)
        backprop(np.array([weight]))
    estimate = {name: grad.copy() for name, grad in gate.grads.items()}
    assert np.abs(estimate["Z"]).max() > 1e-3          # not trivially zero
    check_gradients(expected_cost, gate.params, estimate)


def test_network_estimator_expectation_matches_the_exact_gradient():
    # A conditional MLP with two gated layers of two blocks: 16 joint masks.  The second
    # policy sees the first layer's masked output, so the joint probability is a product
    # of policies along the way.
    model = ConditionalMLP(n_in=5, n_classes=3, hidden=[[2, 2], [2, 2]], tau=0.5,
                           policy_init_scale=3.0, seed=0, dtype="float64")
    x = np.random.default_rng(3).standard_normal((1, 5))
    y = np.array([1])
    joint = [(a, b) for a in all_masks(2) for b in all_masks(2)]

    def probability_and_cost(masks):
        trace = model.trace(x, True, masks=list(masks))
        p = 1.0
        for mask, prob in zip(trace.masks, trace.probs):
            p *= float(np.prod(np.where(mask == 1, prob, 1 - prob)))
        return p, softmax_cross_entropy(trace.logits, y).loss, trace

    def expected_cost():
        return sum(p * c for p, c, _ in map(probability_and_cost, joint))

    model.zero_grads()
    for masks in joint:
        p, cost, trace = probability_and_cost(masks)
        # Zero logit gradient: only the policy's term, advantage p * C(u).
        trace.backprop(np.zeros_like(trace.logits), advantages=np.array([p * cost]))
    policy = {k: v for k, v in model.named_params().items() if k.startswith("policy")}
    estimate = {k: v.copy() for k, v in model.named_grads().items() if k in policy}
    assert all(np.abs(g).max() > 1e-4 for g in estimate.values())
    check_gradients(expected_cost, policy, estimate)
