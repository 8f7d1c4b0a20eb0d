"""The training kernels of condnn/gpu/training.cu, through their plans on the host emulation,
against the NumPy code of the CPU layers and optimizers they mirror."""
import _emulator
import numpy as np
import pytest

from condnn.gpu import _training_plans as plans
from condnn.layers import Dense
from condnn.layers.policy_gate import threshold_mask
from condnn.layers.policy_regularizers import PolicyPenalty, log_likelihood
from condnn.layers.softmax_cross_entropy import softmax_cross_entropy
from condnn.optim import SGD, Adam

reason = _emulator.unavailable_reason()
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")

DTYPES = [np.float32, np.float64]
# Sizes around the thread-block width and past the flat kernels' grid, so the stride loops run.
SIZES = [1, 255, 257, 256 * 4096 + 3]


def _tol(dtype):
    return {"rtol": 2e-6 if dtype == np.float32 else 1e-13, "atol": 1e-7}


def _run(plan, **arrays):
    return _emulator.run(plan, arrays)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES[:3])
def test_relu_and_its_gradient(dtype, size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(dtype)
    x[0] = np.nan                                  # kept, as np.maximum keeps it
    expected = np.maximum(x, 0)
    y = np.full(size, np.inf, dtype)
    _run(plans.relu(size, dtype), x=x, y=y)
    np.testing.assert_array_equal(y, expected)
    _run(plans.relu(size, dtype), x=x, y=x)        # in place
    np.testing.assert_array_equal(x, expected)
    x[0] = 0
    dy = rng.standard_normal(size).astype(dtype)
    dx = np.full(size, np.nan, dtype)
    _run(plans.relu_grad(size, dtype), dy=dy, y=x, dx=dx)
    np.testing.assert_array_equal(dx, dy * (x > 0))


def test_flat_kernels_stride_past_their_grid():
    size = SIZES[-1]
    y = np.zeros(size, np.float32)
    x = np.arange(size, dtype=np.float32)
    _run(plans.add_scaled(size, np.float32, 0.5), y=y, x=x)
    np.testing.assert_array_equal(y, 0.5 * x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_subtraction(dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((37, 29)).astype(dtype)
    row = rng.standard_normal(29).astype(dtype)
    out = np.full_like(x, np.nan)
    _run(plans.sub_row(37, 29, dtype), x=x, row=row, out=out)
    np.testing.assert_array_equal(out, x - row)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_matches_the_layer_and_reuses_its_uniforms(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1000).astype(dtype)
    uniform = rng.random(1000, dtype=dtype)
    y = np.empty_like(x)
    _run(plans.dropout(1000, dtype, 0.3), x=x, uniform=uniform, y=y)
    factor = (uniform >= 0.3) * dtype(1 / 0.7)       # layers.Dropout's factor
    np.testing.assert_allclose(y, x * factor, **_tol(dtype))
    assert np.all(y[uniform < 0.3] == 0)


def _cpu_update(optimizer, param, grad, slots, t, lr):
    group = optimizer.groups[-1]
    optimizer.update(param, grad, slots, group.hyper, lr, t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_matches_the_cpu_optimizer(dtype):
    rng = np.random.default_rng(2)
    adam = Adam(Dense(3, 2, rng=0, dtype=dtype), lr=0.01)
    hyper = adam.groups[-1].hyper
    param = rng.standard_normal(700).astype(dtype)
    m, v = np.zeros_like(param), np.zeros_like(param)
    p_cpu, m_cpu, v_cpu = param.copy(), m.copy(), v.copy()
    for t in (1, 2, 3):
        grad = rng.standard_normal(700).astype(dtype)
        _run(plans.adam_update(700, dtype, hyper["beta1"], hyper["beta2"], hyper["eps"], 0.01,
                               t), param=param, grad=grad.copy(), m=m, v=v)
        _cpu_update(adam, p_cpu, grad.copy(), {"m": m_cpu, "v": v_cpu}, t, 0.01)
    for got, expected in ((param, p_cpu), (m, m_cpu), (v, v_cpu)):
        np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 0)


def test_adam_zeroes_the_gradient():
    grad = np.ones(10, np.float32)
    _run(plans.adam_update(10, np.float32, 0.9, 0.999, 1e-8, 0.1, 1),
         param=np.zeros(10, np.float32), grad=grad, m=np.zeros(10, np.float32),
         v=np.zeros(10, np.float32))
    assert not grad.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_the_cpu_optimizer(dtype, momentum, nesterov):
    rng = np.random.default_rng(3)
    sgd = SGD(Dense(3, 2, rng=0, dtype=dtype), lr=0.1, momentum=momentum, nesterov=nesterov)
    param = rng.standard_normal(300).astype(dtype)
    velocity = np.zeros_like(param)
    p_cpu, v_cpu = param.copy(), velocity.copy()
    for t in (1, 2):
        grad = rng.standard_normal(300).astype(dtype)
        _run(plans.sgd_update(300, dtype, 0.1, momentum, nesterov, bool(momentum)),
             param=param, grad=grad.copy(), **({"velocity": velocity} if momentum else {}))
        _cpu_update(sgd, p_cpu, grad.copy(), {"momentum": v_cpu} if momentum else {}, t, 0.1)
    np.testing.assert_allclose(param, p_cpu, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_policy_probabilities_and_sampled_masks(dtype):
    rng = np.random.default_rng(4)
    z = (5 * rng.standard_normal((33, 12))).astype(dtype)
    expected = 0.5 + (0.5 - 0.01) * np.tanh(z.astype(np.float64) / 2)
    prob = z.copy()
    _run(plans.policy_prob(prob.size, dtype, 0.01), z=prob)
    np.testing.assert_allclose(prob, expected, rtol=1e-5 if dtype == np.float32 else 1e-14)
    uniform = rng.random(prob.shape, dtype=dtype)
    mask = np.full(prob.shape, 7, np.uint8)
    _run(plans.bernoulli_mask(prob.size, dtype), prob=prob, uniform=uniform, mask=mask)
    np.testing.assert_array_equal(mask, (uniform < prob).view(np.uint8))   # PolicyGate's draw


@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_masks_keep_a_block_in_every_row(dtype):
    rng = np.random.default_rng(5)
    prob = rng.random((300, 9)).astype(dtype)
    prob[::3] *= 0.5                   # rows with nothing above 1/2
    prob[1, :] = 0.25                  # ties: the first block is kept
    mask = np.full(prob.shape, 7, np.uint8)
    _run(plans.threshold_mask(300, 9, dtype), prob=prob, mask=mask)
    np.testing.assert_array_equal(mask, threshold_mask(prob))
    assert mask[1].tolist() == [1] + [0] * 8


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_d_losses", [False, True])
def test_softmax_cross_entropy_and_its_gradient(dtype, with_d_losses):
    rng = np.random.default_rng(6)
    n, classes = 130, 10
    logits = (3 * rng.standard_normal((n, classes))).astype(dtype)
    logits[0, 3] = 1e4 if dtype == np.float64 else 80    # large logits stay finite
    labels = rng.integers(0, classes, n)
    losses = np.full(n, np.nan, dtype)
    probs = np.full((n, classes), np.nan, dtype)
    _run(plans.softmax_xent(n, classes, dtype), logits=logits, labels=labels, losses=losses,
         probs=probs)
    cpu = softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(losses, cpu.losses, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6)
    d_losses = rng.standard_normal(n).astype(dtype) if with_d_losses else None
    dlogits = probs                                   # the gradient may overwrite probs
    arrays = {"probs": probs, "labels": labels, "dlogits": dlogits}
    if with_d_losses:
        arrays["d_losses"] = d_losses
    _run(plans.xent_grad(n, classes, dtype, 0.5 / n, with_d_losses), **arrays)
    np.testing.assert_allclose(dlogits, cpu.backprop(0.5, d_losses),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-7)


def test_an_out_of_range_label_is_an_error():
    logits = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, classes\)"):
        _run(plans.softmax_xent(4, 3, np.float32), logits=logits,
             labels=np.array([0, 1, 3, 2]), losses=np.zeros(4, np.float32),
             probs=np.zeros((4, 3), np.float32))


def _cpu_policy_dz(prob, mask, advantages, penalty, tau, eps, dprob=None):
    """PolicyGate's backprop before the products with h, in float64."""
    prob64 = prob.astype(np.float64)
    total = np.zeros_like(prob64) if dprob is None else dprob.astype(np.float64)
    if advantages is not None:
        total += advantages[:, None] * log_likelihood(prob64, mask)[1]
    total += penalty.value_and_grad(prob64, tau)[1]
    t = (prob64 - 0.5) / (0.5 - eps)
    return total * (1 - t * t) * ((0.5 - eps) / 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lambda_s, lambda_v, with_advantages, with_dprob", [
    (80.0, 80.0, True, False), (0.0, 0.0, True, False), (3.0, 0.0, False, False),
    (0.0, 2.0, True, False), (80.0, 80.0, True, True), (0.0, 0.0, False, True)])
def test_policy_gradient_matches_the_gate(dtype, lambda_s, lambda_v, with_advantages,
                                          with_dprob):
    rng = np.random.default_rng(7)
    n, nb, tau, eps = 150, 24, 0.2, 0.01
    prob = (0.5 + (0.5 - eps) * np.tanh(2 * rng.standard_normal((n, nb)))).astype(dtype)
    mask = (rng.random((n, nb)) < prob).view(np.uint8)
    advantages = rng.standard_normal(n).astype(dtype) / n if with_advantages else None
    dprob = rng.standard_normal((n, nb)).astype(dtype) if with_dprob else None
    dz = np.full((n, nb), np.nan, dtype)
    arrays = {"prob": prob, "mask": mask, "dz": dz}
    if with_advantages:
        arrays["advantages"] = advantages
    if with_dprob:
        arrays["dprob"] = dprob
    _run(plans.policy_grad(n, nb, dtype, tau, eps, lambda_s, lambda_v, with_advantages,
                           with_dprob), **arrays)
    expected = _cpu_policy_dz(prob, mask, advantages, PolicyPenalty(lambda_s, lambda_v), tau,
                              eps, dprob)
    scale = np.abs(expected).max() + 1e-30
    np.testing.assert_allclose(dz / scale, expected / scale,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_empty_calls_launch_nothing():
    for plan in (plans.relu(0, np.float32), plans.softmax_xent(0, 10, np.float32),
                 plans.policy_grad(0, 4, np.float32, 0.5, 0.01, 1.0, 1.0, True),
                 plans.threshold_mask(0, 4, np.float64)):
        assert plan.steps == ()


def _expected_advantages(baseline, x, costs, normalize):
    """ConditionalObjective's advantages from a CPU baseline (which then learns from them)."""
    expected = baseline.advantages(x, costs)
    if normalize:
        expected = expected / (np.sqrt(np.mean(expected * expected)) + 1e-12)
    return expected / len(costs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["none", "batch-min", "moving-average"])
@pytest.mark.parametrize("normalize", [True, False])
def test_advantages_match_the_objectives_baselines(dtype, name, normalize):
    from condnn.baselines import make_baseline
    rng = np.random.default_rng(10)
    baseline = make_baseline(name, 4, momentum=0.8)
    state = np.zeros(2)
    for n in (1, 300, 129):                       # one thread block strides past 256
        costs = rng.random(n).astype(dtype) * 3
        expected = _expected_advantages(baseline, None, costs, normalize)
        out = np.full(n, np.nan, dtype)
        _run(plans.advantages(n, dtype, name, 0.8, normalize), costs=costs, state=state,
             out=out)
        np.testing.assert_allclose(out, expected, **_tol(dtype))
        if name == "moving-average":
            assert state[1] == 1 and state[0] == pytest.approx(baseline.value, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["learned-linear", "learned-scalar"])
@pytest.mark.parametrize("normalize", [True, False])
def test_learned_advantages_match_the_objectives_baselines(dtype, name, normalize):
    from condnn.baselines import make_baseline
    rng = np.random.default_rng(11)
    d = 300 if name == "learned-linear" else 0      # features: one thread block strides
    baseline = make_baseline(name, max(d, 1), lr=0.3)
    state = np.zeros(1 + d)
    for n in (1, 300, 129):                         # examples: the same
        costs = rng.random(n).astype(dtype) * 3
        x = rng.random((n, d)).astype(dtype) if d else None
        expected = _expected_advantages(baseline, x, costs, normalize)
        out = np.full(n, np.nan, dtype)
        _run(plans.learned_advantages(n, d, dtype, 0.3, normalize), costs=costs, x=x,
             state=state, out=out)
        np.testing.assert_allclose(out, expected, **_tol(dtype))
        # The state learned from these costs, for the next batch, as the baseline's.
        np.testing.assert_allclose(state[0], baseline.c, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(state[1:], baseline.w, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.01, 1e6])              # clipping, and not
def test_gradient_clipping_matches_the_optimizers(dtype, max_norm):
    from condnn.optim import clip_grad_norm
    rng = np.random.default_rng(12)
    # Past a grid of 3 blocks of 256, so that the sums' stride loop runs; one empty.
    sizes = [7, 256 * 3 * 2 + 5, 0, 300]
    grads = [rng.standard_normal(size).astype(dtype) * 1e-3 for size in sizes]
    expected = [g.copy() for g in grads]
    norm = clip_grad_norm(expected, max_norm)
    state = np.full(2, np.nan)
    _run(plans.clip_grad_norm(sizes, dtype, max_norm, max_blocks=3), state=state,
         **{f"g{i}": g for i, g in enumerate(grads)})
    assert state[0] == pytest.approx(norm, rel=1e-6 if dtype == np.float32 else 1e-12)
    assert (norm > max_norm) == (max_norm == 0.01)
    assert state[1] == pytest.approx(min(1.0, max_norm / norm), rel=1e-6)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got, want, **_tol(dtype))
