"""condnn.gpu.training's functions end to end: on the host emulation (PyCUDA aside) and, where
PyCUDA and a GPU are present, on the device; results against the CPU code, in-place and
``out=`` conventions, and argument checks."""
import _emulator
import numpy as np
import pytest

import condnn.gpu
from condnn.gpu import _runtime
from condnn.gpu import training as ops
from condnn.layers.policy_gate import threshold_mask
from condnn.layers.policy_regularizers import PolicyPenalty, log_likelihood
from condnn.layers.softmax_cross_entropy import softmax_cross_entropy

RNG = np.random.default_rng(0)


class Emulated:
    """Host arrays, plans run by the kernel emulator."""

    @staticmethod
    def put(x):
        return np.ascontiguousarray(x)

    @staticmethod
    def get(x):
        return x


class Device:
    """GPUArrays on the real device."""

    @staticmethod
    def put(x):
        import pycuda.gpuarray as ga
        return ga.to_gpu(np.ascontiguousarray(x))

    @staticmethod
    def get(x):
        return x.get()


@pytest.fixture
def emulated(monkeypatch):
    reason = _emulator.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    monkeypatch.setattr(_runtime, "runtime", lambda: _emulator.HostRuntime)
    return Emulated


@pytest.fixture(params=["emulated", "device"])
def dev(request):
    if request.param == "emulated":
        return request.getfixturevalue("emulated")
    if not condnn.gpu.available():
        pytest.skip(condnn.gpu.unavailable_reason())
    return Device


def test_relu_forward_and_backward(dev):
    x = RNG.standard_normal((6, 5)).astype(np.float32)
    y = ops.relu_(dev.put(x))
    np.testing.assert_array_equal(dev.get(y), np.maximum(x, 0))
    dy = RNG.standard_normal((6, 5)).astype(np.float32)
    dy_dev = dev.put(dy)
    np.testing.assert_array_equal(dev.get(ops.relu_grad(dy_dev, y)), dy * (dev.get(y) > 0))
    same = ops.relu_grad(dy_dev, y, out=dy_dev)
    assert same is dy_dev


def test_one_training_step_of_a_policy_gate_and_softmax_layer(dev):
    """A gate's probabilities, sampled mask and gradient, and a loss, chained as a training
    step chains them, against the CPU code."""
    n, nb, classes, tau, eps = 64, 8, 10, 0.25, 0.01
    z = RNG.standard_normal((n, nb)).astype(np.float32) * 3
    prob_dev = ops.policy_prob_(dev.put(z), eps)
    uniform = RNG.random((n, nb), dtype=np.float32)
    mask_dev = ops.bernoulli_mask(prob_dev, dev.put(uniform))
    prob, mask = dev.get(prob_dev), dev.get(mask_dev)
    np.testing.assert_array_equal(mask, (uniform < prob).view(np.uint8))
    logits = RNG.standard_normal((n, classes)).astype(np.float32)
    labels = RNG.integers(0, classes, n)
    labels_dev = dev.put(labels)
    losses_dev, probs_dev = ops.softmax_cross_entropy(dev.put(logits), labels_dev)
    losses = dev.get(losses_dev)
    cpu = softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(losses, cpu.losses, rtol=1e-5)
    advantages = ((losses - losses.mean()) / n).astype(np.float32)
    dz = dev.get(ops.policy_grad(prob_dev, mask_dev, dev.put(advantages), tau=tau, eps=eps,
                                 lambda_s=80.0, lambda_v=80.0))
    p64 = prob.astype(np.float64)
    total = advantages[:, None] * log_likelihood(p64, mask)[1] \
        + PolicyPenalty(80.0, 80.0).value_and_grad(p64, tau)[1]
    t = (p64 - 0.5) / (0.5 - eps)
    expected = total * (1 - t * t) * ((0.5 - eps) / 2)
    np.testing.assert_allclose(dz, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    dlogits = ops.xent_grad(probs_dev, labels_dev, 1.0 / n, out=probs_dev)
    assert dlogits is probs_dev
    np.testing.assert_allclose(dev.get(dlogits), cpu.backprop(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(dev.get(ops.threshold_mask(prob_dev)), threshold_mask(prob))


def test_masks_widen_to_shared_blocks_and_narrow_back(dev):
    from condnn.models.conditional_mlp import routed_blocks, with_shared_blocks
    routed = (RNG.random((37, 5)) < 0.5).astype(np.uint8)
    full = dev.get(ops.widen_mask(dev.put(routed), 3))
    np.testing.assert_array_equal(full, with_shared_blocks(routed, 3))
    np.testing.assert_array_equal(full[:, :3], 1)
    mask = (RNG.random((37, 9)) < 0.5).astype(np.uint8)
    np.testing.assert_array_equal(dev.get(ops.routed_mask(dev.put(mask), 4)),
                                  routed_blocks(mask, 4, "mask"))
    prob = RNG.random((50, 3)).astype(np.float32) * 0.7
    np.testing.assert_array_equal(dev.get(ops.threshold_mask(dev.put(prob),
                                                             keep_a_block=False)),
                                  (prob > 0.5).astype(np.uint8))


def test_optimizer_steps_change_parameters_and_clear_gradients(dev):
    param = dev.put(np.ones(10, np.float32))
    grad = dev.put(np.full(10, 2.0, np.float32))
    m, v = dev.put(np.zeros(10, np.float32)), dev.put(np.zeros(10, np.float32))
    ops.adam_update_(param, grad, m, v, lr=0.1, t=1)
    # Adam's first step is lr * sign(g).
    np.testing.assert_allclose(dev.get(param), 0.9, rtol=1e-5)
    assert not dev.get(grad).any()
    grad = dev.put(np.ones(10, np.float32))
    velocity = dev.put(np.zeros(10, np.float32))
    ops.sgd_update_(param, grad, velocity, lr=0.5, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(dev.get(param), 0.9 - 0.5 * 1.9, atol=1e-6)
    ops.add_scaled_(param, 2.0, dev.put(np.ones(10, np.float32)))
    np.testing.assert_allclose(dev.get(param), 2.9 - 0.95, atol=1e-6)


def test_dropout_forward_and_backward_share_their_uniforms(dev):
    x = RNG.standard_normal(100).astype(np.float64)
    uniform = dev.put(RNG.random(100))
    y = dev.get(ops.dropout(dev.put(x), uniform, 0.5))
    dx = dev.get(ops.dropout(dev.put(np.ones(100)), uniform, 0.5))
    np.testing.assert_allclose(y, x * dx)
    assert set(np.unique(dx)) <= {0.0, 2.0}


F32 = np.zeros((4, 3), np.float32)


@pytest.mark.parametrize("call, error, match", [
    (lambda: ops.relu_([1.0, 2.0]), TypeError, "^x must be a numpy.ndarray, got list"),
    (lambda: ops.relu_(np.zeros(3, np.int32)), TypeError, "x must be float32 or float64"),
    (lambda: ops.relu_(F32.T), ValueError, "^x must be C-contiguous"),
    (lambda: ops.relu_grad(F32, np.zeros((4, 3))), TypeError, "^y must have dtype float32"),
    (lambda: ops.relu_grad(F32, np.zeros((3, 4), np.float32)), ValueError,
     r"^y must have shape \(4, 3\), got \(3, 4\)"),
    (lambda: ops.relu_grad(F32, F32, out=np.zeros((4, 3))), TypeError,
     "^out must have dtype float32"),
    (lambda: ops.dropout(F32, F32, 1.0), ValueError, r"rate must be a number in \[0, 1\)"),
    (lambda: ops.adam_update_(F32, F32, F32, F32, lr=0.1, t=0), ValueError,
     "t must be the step number"),
    (lambda: ops.adam_update_(F32, F32, F32, np.zeros(12, np.float32), lr=0.1, t=1),
     ValueError, r"^v must have shape \(4, 3\)"),
    (lambda: ops.sgd_update_(F32, F32, lr=0.1, momentum=0.9), ValueError,
     "velocity must be given exactly when momentum is not 0"),
    (lambda: ops.policy_prob_(F32, 0.5), ValueError, r"eps must be a number in \[0, 0.5\)"),
    (lambda: ops.bernoulli_mask(F32, F32, out=np.zeros((4, 3), bool)), TypeError,
     "^out must have dtype uint8"),
    (lambda: ops.threshold_mask(np.zeros(3, np.float32)), ValueError, "prob must be 2-D"),
    (lambda: ops.widen_mask(np.zeros((4, 3), np.uint8), -1), ValueError,
     "shared must be an int >= 0"),
    (lambda: ops.widen_mask(np.zeros((4, 3), bool), 2), TypeError,
     "^routed must have dtype uint8"),
    (lambda: ops.routed_mask(np.zeros((4, 3), np.uint8), 3), ValueError,
     r"^mask must be a 2-D mask with more than 3 columns, got shape \(4, 3\)"),
    (lambda: ops.softmax_cross_entropy(F32, np.zeros(4, np.int32)), TypeError,
     "^labels must have dtype int64"),
    (lambda: ops.softmax_cross_entropy(F32, np.array([0, 1, 2, 3])), ValueError,
     r"labels must lie in \[0, classes\)"),
    (lambda: ops.xent_grad(F32, np.zeros(4, np.int64), 0.25, d_losses=np.zeros(3, np.float32)),
     ValueError, r"^d_losses must have shape \(4,\)"),
    (lambda: ops.policy_grad(F32, np.zeros((4, 3), np.uint8), tau=1.0, eps=0.01), ValueError,
     r"tau must be a number in \(0, 1\)"),
    (lambda: ops.policy_grad(F32, np.zeros((4, 3), np.int8), tau=0.5, eps=0.01), TypeError,
     "^mask must have dtype uint8"),
    (lambda: ops.policy_grad(F32, np.zeros((4, 3), np.uint8), tau=0.5, eps=0.01,
                             lambda_s=-1.0), ValueError, "lambda_s must be a number >= 0"),
    (lambda: ops.learned_advantages(np.zeros(4, np.float32), F32, np.zeros(3), lr=0.1),
     ValueError, r"^state must have shape \(4,\), got \(3,\)"),
    (lambda: ops.learned_advantages(np.zeros(4, np.float32), None, np.zeros(1), lr=0.0),
     ValueError, r"lr must be a number in \(0, 1\]"),
    (lambda: ops.learned_advantages(np.zeros(5, np.float32), F32, np.zeros(4), lr=0.1),
     ValueError, r"x must have shape \(5, d\) to match costs, got \(4, 3\)"),
    (lambda: ops.learned_advantages(np.zeros(4, np.float32), np.zeros((4, 3)), np.zeros(4),
                                    lr=0.1), TypeError, "^x must have dtype float32"),
])
def test_bad_arguments_are_named(emulated, call, error, match):
    with pytest.raises(error, match=match):
        call()
