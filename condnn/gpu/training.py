"""The operations of a training step on the GPU besides the block-sparse product: ReLU,
dropout, the loss, the policy's probabilities, masks and gradient, and the optimizers'
updates, on PyCUDA ``GPUArray``s.

Each computes what the named NumPy code of the CPU layers computes (the tests compare them
through the host emulation of the kernels), with these conventions:

* every array must be C-contiguous and on the device: nothing is copied implicitly;
* float arrays of one call share one dtype, float32 or float64; masks are uint8 of 0/1,
  labels int64;
* functions ending in ``_`` work in place; the others write ``out`` when it is given (it may
  be one of the inputs where the docstring says so) or return a new array;
* random draws are the caller's: the uniforms of ``dropout`` and ``bernoulli_mask`` come
  from a generator of the caller's choice (on the device, or drawn on the host and uploaded
  so that a GPU run draws exactly the masks of a CPU run).
"""
from typing import Optional, Tuple

import numpy as np

from condnn._checks import mask_values_message
from condnn.gpu import _runtime
from condnn.gpu import _training_plans as plans
from condnn.gpu.sparse import check_layout

__all__ = ["relu", "relu_", "relu_grad", "add_scaled_", "sub_row", "dropout", "block_dropout",
           "adam_update_", "sgd_update_", "policy_prob_", "bernoulli_mask", "threshold_mask",
           "widen_mask", "routed_mask",
           "softmax_cross_entropy", "xent_grad", "policy_grad", "advantages",
           "learned_advantages", "clip_grad_norm_", "check_mask"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _number(name: str, value, low: float, high: Optional[float] = None,
            low_open: bool = False, high_open: bool = True) -> None:
    """Raises ValueError unless value is a number from low to high (no bound: None), each
    end excluded or not as ``low_open`` and ``high_open`` say."""
    fits = not isinstance(value, bool) and isinstance(value, (int, float)) \
        and (low < value if low_open else low <= value) \
        and (high is None or (value < high if high_open else value <= high))
    if not fits:
        what = f">= {low}" if high is None else \
            f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number {what}, got {value!r}")


def _fraction(name: str, value) -> None:
    """Raises ValueError unless value is a number in (0, 1]."""
    _number(name, value, 0, 1, low_open=True, high_open=False)


def _costs(rt, costs) -> np.dtype:
    """Checks the (n,) float costs of a batch and returns their dtype."""
    dtype = _float(rt, "costs", costs)
    if len(costs.shape) != 1:
        raise ValueError(f"costs must be 1-D (one per example), got shape {tuple(costs.shape)}")
    return dtype


def _check(rt, name: str, x, shape=None, dtype=None) -> None:
    if not isinstance(x, rt.kind.type):
        raise TypeError(f"{name} must be a {rt.kind.name}, got {type(x).__name__}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {x.dtype}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    check_layout(**{name: x})


def _float(rt, name: str, x, shape=None, dtype=None) -> np.dtype:
    """Checks x and returns its float dtype."""
    _check(rt, name, x, shape, dtype)
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    return x.dtype


def _result(rt, name: str, out, shape, dtype):
    if out is None:
        return rt.empty(shape, dtype)
    _check(rt, name, out, shape, dtype)
    return out


def relu(x, out=None):
    """``max(x, 0)``, NaN kept, as ``np.maximum(x, 0)`` (out may be x)."""
    rt = _runtime.runtime()
    dtype = _float(rt, "x", x)
    out = _result(rt, "out", out, x.shape, dtype)
    rt.run(plans.relu(x.size, dtype), {"x": x, "y": out})
    return out


def relu_(x):
    """``x = max(x, 0)`` in place; returns x."""
    return relu(x, out=x)


def relu_grad(dy, y, out=None):
    """``dy`` where ``y > 0``, else 0: the ReLU's backward from its output y (out may be dy)."""
    rt = _runtime.runtime()
    dtype = _float(rt, "dy", dy)
    _float(rt, "y", y, dy.shape, dtype)
    out = _result(rt, "out", out, dy.shape, dtype)
    rt.run(plans.relu_grad(dy.size, dtype), {"dy": dy, "y": y, "dx": out})
    return out


def add_scaled_(y, alpha: float, x):
    """``y += alpha * x`` in place (optim.kernels.add_scaled); returns y."""
    rt = _runtime.runtime()
    dtype = _float(rt, "y", y)
    _float(rt, "x", x, y.shape, dtype)
    rt.run(plans.add_scaled(y.size, dtype, float(alpha)), {"y": y, "x": x})
    return y


def sub_row(x, row, out=None):
    """``x - row``: the (m,) row subtracted from every row of the (n, m) x (a model's input
    centring).  out may be x."""
    rt = _runtime.runtime()
    dtype = _float(rt, "x", x)
    if len(x.shape) != 2:
        raise ValueError(f"x must be 2-D, got shape {tuple(x.shape)}")
    _float(rt, "row", row, (x.shape[1],), dtype)
    out = _result(rt, "out", out, x.shape, dtype)
    rt.run(plans.sub_row(x.shape[0], x.shape[1], dtype), {"x": x, "row": row, "out": out})
    return out


def dropout(x, uniform, rate: float, out=None):
    """Inverted dropout (layers.Dropout): ``x / (1 - rate)`` where ``uniform >= rate``, else
    0.  Called again with the same uniforms on dy, it is the backward pass.  out may be x."""
    _number("rate", rate, 0, 1)
    rt = _runtime.runtime()
    dtype = _float(rt, "x", x)
    _float(rt, "uniform", uniform, x.shape, dtype)
    out = _result(rt, "out", out, x.shape, dtype)
    rt.run(plans.dropout(x.size, dtype, float(rate)), {"x": x, "uniform": uniform, "y": out})
    return out


def block_dropout(x, mask, block_size: int, keep_rate: float, out=None):
    """Block dropout (layers.BlockDropout): ``x / keep_rate`` in the blocks of
    ``block_size`` units that the (n, units / block_size) uint8 mask keeps, else 0.
    Called again with the same mask on dy, it is the backward pass.  out may be x."""
    _fraction("keep_rate", keep_rate)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    rt = _runtime.runtime()
    dtype = _float(rt, "x", x)
    if len(x.shape) != 2 or x.shape[1] % block_size:
        raise ValueError(f"x must be 2-D with a width divisible by block_size {block_size}, "
                         f"got shape {tuple(x.shape)}")
    n, units = x.shape
    _check(rt, "mask", mask, (n, units // block_size), np.dtype(np.uint8))
    out = _result(rt, "out", out, x.shape, dtype)
    rt.run(plans.block_dropout(n, units, block_size, dtype, float(keep_rate)),
           {"x": x, "mask": mask, "y": out})
    return out


def _check_step(lr: float, t: int) -> None:
    _number("lr", lr, 0)
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"t must be the step number, an int >= 1, got {t!r}")


def adam_update_(param, grad, m, v, *, lr: float, t: int, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
    """Adam's step ``t`` (optim.Adam) on param, m and v, in place; grad is set to 0."""
    _check_step(lr, t)
    rt = _runtime.runtime()
    dtype = _float(rt, "param", param)
    for name, x in (("grad", grad), ("m", m), ("v", v)):
        _float(rt, name, x, param.shape, dtype)
    rt.run(plans.adam_update(param.size, dtype, beta1, beta2, eps, float(lr), t),
           {"param": param, "grad": grad, "m": m, "v": v})


def sgd_update_(param, grad, velocity=None, *, lr: float, momentum: float = 0.0,
                nesterov: bool = False) -> None:
    """SGD's step (optim.SGD) on param and the velocity (None without momentum), in place;
    grad is set to 0."""
    _check_step(lr, 1)
    if (velocity is None) != (momentum == 0):
        raise ValueError("velocity must be given exactly when momentum is not 0")
    rt = _runtime.runtime()
    dtype = _float(rt, "param", param)
    _float(rt, "grad", grad, param.shape, dtype)
    arrays = {"param": param, "grad": grad}
    if velocity is not None:
        _float(rt, "velocity", velocity, param.shape, dtype)
        arrays["velocity"] = velocity
    rt.run(plans.sgd_update(param.size, dtype, float(lr), float(momentum), bool(nesterov),
                            velocity is not None), arrays)


def policy_prob_(z, eps: float):
    """The policy's probabilities ``1/2 + (1/2 - eps) tanh(z / 2)`` from its logits, in
    place (layers.PolicyGate); returns z."""
    _number("eps", eps, 0, 0.5)
    rt = _runtime.runtime()
    dtype = _float(rt, "z", z)
    rt.run(plans.policy_prob(z.size, dtype, float(eps)), {"z": z})
    return z


def _mask_out(rt, out, shape):
    return _result(rt, "out", out, shape, np.dtype(np.uint8))


def bernoulli_mask(prob, uniform, out=None):
    """The sampled decisions ``uniform < prob`` as a uint8 mask."""
    rt = _runtime.runtime()
    dtype = _float(rt, "prob", prob)
    _float(rt, "uniform", uniform, prob.shape, dtype)
    out = _mask_out(rt, out, prob.shape)
    rt.run(plans.bernoulli_mask(prob.size, dtype), {"prob": prob, "uniform": uniform,
                                                    "mask": out})
    return out


def threshold_mask(prob, out=None, keep_a_block: bool = True):
    """``prob > 1/2`` as a uint8 mask, a row with none on keeping its most probable block
    unless not ``keep_a_block`` (layers.policy_gate.threshold_mask)."""
    rt = _runtime.runtime()
    dtype = _float(rt, "prob", prob)
    if len(prob.shape) != 2:
        raise ValueError(f"prob must be 2-D (examples, blocks), got shape {tuple(prob.shape)}")
    out = _mask_out(rt, out, prob.shape)
    n, nb = prob.shape
    rt.run(plans.threshold_mask(n, nb, dtype, keep_a_block), {"prob": prob, "mask": out})
    return out


def _check_shared(shared) -> None:
    if isinstance(shared, bool) or not isinstance(shared, (int, np.integer)) or shared < 0:
        raise ValueError(f"shared must be an int >= 0, got {shared!r}")


def _mask_of_width(rt, name: str, mask, more_than: int) -> Tuple[int, int]:
    _check(rt, name, mask, dtype=np.dtype(np.uint8))
    if len(mask.shape) != 2 or mask.shape[1] <= more_than:
        raise ValueError(f"{name} must be a 2-D mask with more than {more_than} columns, got "
                         f"shape {tuple(mask.shape)}")
    return mask.shape


def widen_mask(routed, shared: int):
    """The (n, shared + B) mask whose first ``shared`` columns are 1 and whose others are
    the (n, B) uint8 mask ``routed`` (models.conditional_mlp.with_shared_blocks)."""
    _check_shared(shared)
    rt = _runtime.runtime()
    n, width = _mask_of_width(rt, "routed", routed, 0)
    out = rt.empty((n, shared + width), np.dtype(np.uint8))
    rt.run(plans.mask_columns(n, width, 0, shared + width, shared, width, shared),
           {"src": routed, "dst": out})
    return out


def routed_mask(mask, shared: int):
    """A copy of all but the first ``shared`` columns of the (n, B) uint8 mask
    (models.conditional_mlp.routed_blocks)."""
    _check_shared(shared)
    rt = _runtime.runtime()
    n, width = _mask_of_width(rt, "mask", mask, shared)
    out = rt.empty((n, width - shared), np.dtype(np.uint8))
    rt.run(plans.mask_columns(n, width, shared, width - shared, 0, width - shared, 0),
           {"src": mask, "dst": out})
    return out


def _logits_and_labels(rt, logits, labels) -> Tuple[np.dtype, int, int]:
    dtype = _float(rt, "logits", logits)
    if len(logits.shape) != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits must be 2-D (batch, classes), got shape "
                         f"{tuple(logits.shape)}")
    n, classes = logits.shape
    _check(rt, "labels", labels, (n,), np.dtype(np.int64))
    return dtype, n, classes


def softmax_cross_entropy(logits, labels, check_labels: bool = True):
    """Per-example losses ``logsumexp(z_i) - z_i[y_i]`` and the softmax probabilities
    (layers.softmax_cross_entropy); returns ``(losses, probs)``.  A label outside
    ``[0, classes)`` raises ValueError, which reads a flag back from the device (a wait for
    the work queued before); ``check_labels=False`` skips that for labels checked already
    (a data set's), and such a label then gives a NaN loss."""
    rt = _runtime.runtime()
    dtype, n, classes = _logits_and_labels(rt, logits, labels)
    losses = rt.empty((n,), dtype)
    probs = rt.empty((n, classes), dtype)
    rt.run(plans.softmax_xent(n, classes, dtype, bool(check_labels)),
           {"logits": logits, "labels": labels, "losses": losses, "probs": probs})
    return losses, probs


def check_mask(name: str, mask) -> None:
    """Raises ValueError (naming ``name``) if the uint8 mask holds values other than 0 and
    1; reads a flag back from the device."""
    rt = _runtime.runtime()
    _check(rt, name, mask, dtype=np.dtype(np.uint8))
    try:
        rt.run(plans.check_mask(mask.size), {"mask": mask})
    except ValueError:
        raise ValueError(mask_values_message(name)) from None


def xent_grad(probs, labels, d_mean: float, d_losses=None, out=None):
    """The loss's gradient with respect to the logits,
    ``(probs - onehot(labels)) * (d_mean + d_losses)`` per row (d_mean = d_loss / n in
    softmax_cross_entropy's backprop).  out may be probs."""
    rt = _runtime.runtime()
    dtype, n, classes = _logits_and_labels(rt, probs, labels)
    arrays = {"probs": probs, "labels": labels}
    if d_losses is not None:
        _float(rt, "d_losses", d_losses, (n,), dtype)
        arrays["d_losses"] = d_losses
    arrays["dlogits"] = _result(rt, "out", out, (n, classes), dtype)
    rt.run(plans.xent_grad(n, classes, dtype, float(d_mean), d_losses is not None), arrays)
    return arrays["dlogits"]


def policy_grad(prob, mask, advantages=None, *, tau: float, eps: float,
                lambda_s: float = 0.0, lambda_v: float = 0.0, dprob=None, out=None):
    """The gradient, with respect to the policy's logits, of its REINFORCE term
    ``sum_i A_i log pi(u_i)`` (advantages A, None for none), of
    ``lambda_s (L_b + L_e) + lambda_v L_v`` at target tau, and of ``sum dprob * p`` (a
    caller's gradient with respect to the probabilities, None for none): PolicyGate's
    backprop, before the products with its input."""
    _number("tau", tau, 0, 1, low_open=True)
    _number("eps", eps, 0, 0.5)
    _number("lambda_s", lambda_s, 0)
    _number("lambda_v", lambda_v, 0)
    rt = _runtime.runtime()
    dtype = _float(rt, "prob", prob)
    if len(prob.shape) != 2:
        raise ValueError(f"prob must be 2-D (examples, blocks), got shape {tuple(prob.shape)}")
    n, nb = prob.shape
    _check(rt, "mask", mask, prob.shape, np.dtype(np.uint8))
    arrays = {"prob": prob, "mask": mask}
    if advantages is not None:
        _float(rt, "advantages", advantages, (n,), dtype)
        arrays["advantages"] = advantages
    if dprob is not None:
        _float(rt, "dprob", dprob, prob.shape, dtype)
        arrays["dprob"] = dprob
    arrays["dz"] = _result(rt, "out", out, prob.shape, dtype)
    rt.run(plans.policy_grad(n, nb, dtype, float(tau), float(eps), float(lambda_s),
                             float(lambda_v), advantages is not None, dprob is not None),
           arrays)
    return arrays["dz"]


def clip_grad_norm_(grads, max_norm: float):
    """Scales the gradients in place so that their global L2 norm is at most max_norm, as
    :func:`condnn.optim.clip_grad_norm` does, without reading anything back.  Returns a
    float64 array of 2 on the device: the norm before clipping, and the factor applied."""
    _number("max_norm", max_norm, 0, low_open=True)
    rt = _runtime.runtime()
    grads = list(grads)
    dtype = None
    for index, grad in enumerate(grads):
        dtype = _float(rt, f"grads[{index}]", grad, dtype=dtype)
    state = rt.empty((2,), np.dtype(np.float64))
    arrays = {f"g{index}": grad for index, grad in enumerate(grads)}
    arrays["state"] = state
    rt.run(plans.clip_grad_norm([g.size for g in grads], dtype or np.float32,
                                float(max_norm)), arrays)
    return state


def learned_advantages(costs, x, state, *, lr: float, normalize: bool = True, out=None):
    """The REINFORCE advantages ``(C_i - b_i) / n`` of the costs C (n) with a learned
    baseline (:class:`condnn.baselines.LearnedBaseline`), divided by their root mean square
    first when ``normalize``, and then the baseline's step on these costs.  ``state``: the
    float64 (1 + d,) array (c, w), updated in place; ``x``: the batch's (n, d) inputs, of
    the costs' dtype, for learned-linear, or None for learned-scalar (state of 1)."""
    _fraction("lr", lr)
    rt = _runtime.runtime()
    dtype = _costs(rt, costs)
    n = costs.shape[0]
    d = 0
    if x is not None:
        _float(rt, "x", x, dtype=dtype)
        if len(x.shape) != 2 or x.shape[0] != n:
            raise ValueError(f"x must have shape ({n}, d) to match costs, got "
                             f"{tuple(x.shape)}")
        d = x.shape[1]
    _check(rt, "state", state, (1 + d,), np.dtype(np.float64))
    out = _result(rt, "out", out, costs.shape, dtype)
    rt.run(plans.learned_advantages(n, d, dtype, float(lr), normalize),
           {"costs": costs, "x": x, "state": state, "out": out})
    return out


def advantages(costs, baseline: str, state, *, momentum: float = 0.9, normalize: bool = True,
               out=None):
    """The REINFORCE advantages ``(C_i - b_i) / n`` of the costs C (n), divided by their root
    mean square first when ``normalize`` (:class:`condnn.objective.ConditionalObjective`'s
    computation), with b from ``baseline``: "none", "batch-min" or "moving-average"
    (:mod:`condnn.baselines`).  ``state``: a float64 array of 2, the moving average and
    whether it holds a value (0 or 1), updated in place; the other baselines leave it."""
    if baseline not in plans.BASELINE_KINDS:
        raise ValueError(f"baseline must be one of {tuple(plans.BASELINE_KINDS)} on the GPU, "
                         f"got {baseline!r}")
    _number("momentum", momentum, 0, 1)
    rt = _runtime.runtime()
    dtype = _costs(rt, costs)
    _check(rt, "state", state, (2,), np.dtype(np.float64))
    out = _result(rt, "out", out, costs.shape, dtype)
    rt.run(plans.advantages(costs.shape[0], dtype, baseline, float(momentum), normalize),
           {"costs": costs, "state": state, "out": out})
    return out
