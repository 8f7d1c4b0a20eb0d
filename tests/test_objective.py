"""One step of the objective: the gradients it adds and the values it reports."""
import numpy as np
import pytest

from condnn.baselines import NoBaseline
from condnn.layers import PolicyPenalty, softmax_cross_entropy
from condnn.models import ConditionalMLP, DenseMLP
from condnn.objective import ConditionalObjective


pytestmark = pytest.mark.usefixtures("one_thread")


def model_and_batch(seed=0):
    model = ConditionalMLP(n_in=6, n_classes=3, hidden=[[3, 2], [2, 2]], tau=0.5, seed=seed,
                           policy_init_scale=2.0, dtype="float64")
    rng = np.random.default_rng(seed + 1)
    return model, rng.standard_normal((8, 6)), rng.integers(0, 3, 8)


def test_step_adds_the_gradients_of_the_objective():
    model, x, y = model_and_batch()
    objective = ConditionalObjective(lambda_s=1.5, lambda_v=0.5, lambda_l2=1e-2,
                                     baseline=NoBaseline(), normalize_advantages=False)
    # The same pass by hand: the gates draw from their generators, so replay them.
    states = {k: g.bit_generator.state for k, g in model.named_rngs().items()}
    result = objective.step(model, x, y)
    got = {k: v.copy() for k, v in model.named_grads().items()}
    model.zero_grads()
    for k, g in model.named_rngs().items():
        g.bit_generator.state = states[k]
    trace = model.trace(x, True)
    loss = softmax_cross_entropy(trace.logits, y)
    trace.backprop(loss.backprop(), advantages=loss.losses / len(y),
                   penalty=PolicyPenalty(1.5, 0.5, 1e-2))
    expected = model.named_grads()
    for path, value in model.named_params().items():
        if path.endswith("/W"):
            expected[path] += 2e-2 * value
        np.testing.assert_allclose(got[path], expected[path], rtol=1e-12, atol=1e-15,
                                   err_msg=path)
    assert result.nll == pytest.approx(loss.loss)
    l2 = 1e-2 * sum(float((v ** 2).sum()) for k, v in model.named_params().items()
                    if k.endswith(("/W", "/Z")))
    penalty = sum(PolicyPenalty(1.5, 0.5).value_and_grad(p, 0.5)[0] for p in trace.probs)
    assert result.l2 == pytest.approx(l2)
    assert result.policy_penalty == pytest.approx(penalty)
    assert result.objective == pytest.approx(loss.loss + penalty + l2)
    assert result.activation == [float(m.mean()) for m in trace.masks]


def test_normalized_advantages_have_unit_root_mean_square():
    model, x, y = model_and_batch(1)
    seen = {}
    gate = model.gates[0]
    original = gate.forward

    def spy(*args, **kwargs):
        out, backprop = original(*args, **kwargs)

        def wrapped(advantages=None, penalty=None, dprob=None):
            seen["advantages"] = advantages
            return backprop(advantages, penalty, dprob)
        return out, wrapped

    gate.forward = spy
    ConditionalObjective(baseline=NoBaseline()).step(model, x, y)
    a = seen["advantages"] * len(y)
    assert np.sqrt(np.mean(a ** 2)) == pytest.approx(1.0)


def test_models_without_policy_take_the_same_step():
    model = DenseMLP(n_in=6, n_classes=3, hidden=[4], dropout=0.0, dtype="float64")
    rng = np.random.default_rng(2)
    result = ConditionalObjective(lambda_s=1.0, lambda_v=1.0).step(
        model, rng.standard_normal((5, 6)), rng.integers(0, 3, 5))
    assert result.policy_penalty == 0 and result.activation == [] and result.flops_fraction == 1


def test_policy_descent_lowers_the_expected_cost():
    # Masks that switch on block 0 give a lower cost: REINFORCE steps must make that
    # block's probability rise.
    model, x, y = model_and_batch(3)
    gate = model.gates[0]
    before = gate.forward(x, False)[0].prob[:, 0].mean()
    for _ in range(200):
        out, backprop = gate.forward(x, True)
        costs = 1.0 - out.mask[:, 0]
        backprop((costs - costs.mean()) / len(x))
        gate.params["Z"] -= 0.5 * gate.grads["Z"]
        gate.params["d"] -= 0.5 * gate.grads["d"]
        gate.zero_grads()
    after = gate.forward(x, False)[0].prob[:, 0].mean()
    assert after > before + 0.2
