"""Plans of the training step's GPU operations besides the block-sparse product (the kernels
of ``training.cu``), in the terms of :mod:`condnn.gpu._plan`.

Each function takes the sizes and scalars of one call and returns a :class:`_plan.Plan`
whose buffers are named after the arguments of the matching function of
:mod:`condnn.gpu.training`.  Plans hold the call's scalars (a learning rate, say), so they
are built per call, not cached: each is one to three launches.
"""
from typing import Optional

import numpy as np

from condnn.gpu._plan import Buf, Plan, Zero, RaiseIfFlagged, _Builder, _cdiv, _i32, _i64

__all__ = ["relu", "relu_grad", "add_scaled", "sub_row", "dropout", "block_dropout",
           "adam_update", "sgd_update",
           "policy_prob", "bernoulli_mask", "threshold_mask", "mask_columns", "softmax_xent",
           "xent_grad",
           "policy_grad", "advantages", "learned_advantages", "clip_grad_norm", "check_mask",
           "BASELINE_KINDS", "LABEL_MESSAGE"]

_THREADS = 256
_MAX_BLOCKS = 4096      # flat kernels stride over their elements beyond this many blocks
_SUM_BLOCKS = 1024      # the sums of squares stride beyond this many blocks
LABEL_MESSAGE = "labels must lie in [0, classes)"
#: The baselines the advantages kernel computes, by its ``kind`` argument.
BASELINE_KINDS = {"none": 0, "batch-min": 1, "moving-average": 2}


def _flat(bld: _Builder, kernel: str, size: int, *args) -> None:
    """A launch of the flat kernel ``<kernel>_<f32|f64>`` over ``size`` elements."""
    if size:
        blocks = min(_cdiv(size, _THREADS), _MAX_BLOCKS)
        bld.launch(f"{kernel}_{bld.suffix}", (blocks, 1, 1), (_THREADS, 1, 1), *args)


def _single(kernel: str, dtype, size: int, *args) -> Plan:
    bld = _Builder(dtype)
    _flat(bld, kernel, size, *args)
    return bld.plan()


def _scalar(dtype, value: float) -> np.number:
    return np.dtype(dtype).type(value)


def relu(size: int, dtype) -> Plan:
    """y = max(x, 0) (y may be x)."""
    return _single("relu", dtype, size, Buf("x"), Buf("y"), _i64(size))


def relu_grad(size: int, dtype) -> Plan:
    """dx = dy where y > 0, else 0."""
    return _single("relu_grad", dtype, size, Buf("dy"), Buf("y"), Buf("dx"), _i64(size))


def add_scaled(size: int, dtype, alpha: float) -> Plan:
    """y += alpha x."""
    return _single("add_scaled", dtype, size, Buf("y"), _scalar(dtype, alpha), Buf("x"),
                   _i64(size))


def sub_row(n: int, m: int, dtype) -> Plan:
    """out = x - row, for every row of x (n, m)."""
    return _single("sub_row", dtype, n * m, Buf("x"), Buf("row"), _i64(max(m, 1)), Buf("out"),
                   _i64(n * m))


def dropout(size: int, dtype, rate: float) -> Plan:
    """y = x / (1 - rate) where uniform >= rate, else 0."""
    return _single("dropout", dtype, size, Buf("x"), Buf("uniform"), _scalar(dtype, rate),
                   _scalar(dtype, 1 / (1 - rate)), Buf("y"), _i64(size))


def block_dropout(n: int, units: int, block_size: int, dtype, keep_rate: float) -> Plan:
    """y = x / keep_rate in the blocks the mask keeps, else 0 (x: n rows of units)."""
    return _single("block_dropout", dtype, n * units, Buf("x"), Buf("mask"),
                   _i64(max(units, 1)), _i32(block_size), _scalar(dtype, 1 / keep_rate),
                   Buf("y"), _i64(n * units))


def adam_update(size: int, dtype, beta1: float, beta2: float, eps: float, lr: float,
                t: int) -> Plan:
    """Adam's step t (from 1) on param, grad (zeroed), m and v."""
    return _single("adam_update", dtype, size, Buf("param"), Buf("grad"), Buf("m"), Buf("v"),
                   _i64(size), _scalar(dtype, beta1), _scalar(dtype, beta2),
                   _scalar(dtype, eps), _scalar(dtype, lr / (1 - beta1 ** t)),
                   _scalar(dtype, 1 / np.sqrt(1 - beta2 ** t)))


def sgd_update(size: int, dtype, lr: float, momentum: float, nesterov: bool,
               has_velocity: bool) -> Plan:
    """SGD's step on param, grad (zeroed) and the velocity (if any)."""
    return _single("sgd_update", dtype, size, Buf("param"), Buf("grad"),
                   Buf("velocity") if has_velocity else None, _i64(size), _scalar(dtype, lr),
                   _scalar(dtype, momentum), np.int32(bool(nesterov)))


def policy_prob(size: int, dtype, eps: float) -> Plan:
    """z = 1/2 + (1/2 - eps) tanh(z / 2), in place."""
    return _single("policy_prob", dtype, size, Buf("z"), _i64(size), _scalar(dtype, 0.5 - eps))


def bernoulli_mask(size: int, dtype) -> Plan:
    """mask = uniform < prob."""
    return _single("bernoulli_mask", dtype, size, Buf("prob"), Buf("uniform"), Buf("mask"),
                   _i64(size))


def threshold_mask(n: int, nb: int, dtype, keep_a_block: bool = True) -> Plan:
    """mask = prob > 1/2, each empty row keeping its most probable block (if keep_a_block)."""
    return _single("threshold_mask", dtype, n, Buf("prob"), Buf("mask"), _i32(n), _i32(nb),
                   _i32(int(bool(keep_a_block))))


def mask_columns(n: int, src_width: int, src_first: int, dst_width: int, dst_first: int,
                 count: int, ones: int) -> Plan:
    """dst (n, dst_width): its first ``ones`` columns 1, and columns dst_first onwards the
    ``count`` columns of src (n, src_width) from src_first (other columns are left)."""
    bld = _Builder(np.float32)     # masks are bytes whatever the float type
    size = n * dst_width
    if size:
        bld.launch("mask_columns", (min(_cdiv(size, _THREADS), _MAX_BLOCKS), 1, 1),
                   (_THREADS, 1, 1), Buf("src"), _i32(src_width), _i32(src_first), Buf("dst"),
                   _i32(dst_width), _i32(dst_first), _i32(count), _i32(ones), _i64(size))
    return bld.plan()


def softmax_xent(n: int, classes: int, dtype, check_labels: bool = True) -> Plan:
    """losses and probs of logits and labels; with ``check_labels``, raises ValueError for
    a label out of range (reading a flag back from the device)."""
    bld = _Builder(dtype)
    if n == 0:
        return bld.plan()
    flag = bld.temp("label_flag", 4)
    bld.steps.append(Zero(flag, 4))
    _flat(bld, "softmax_xent", n, Buf("logits"), Buf("labels"), _i32(n), _i32(classes),
          Buf("losses"), Buf("probs"), flag)
    if check_labels:
        bld.steps.append(RaiseIfFlagged(flag, ((1, LABEL_MESSAGE),)))
    return bld.plan()


def check_mask(size: int) -> Plan:
    """Raises ValueError if the ``size`` bytes of ``mask`` hold other values than 0 and 1."""
    bld = _Builder(np.float32)
    bld.check_mask_values([("mask", size)])
    return bld.plan()


def xent_grad(n: int, classes: int, dtype, d_mean: float, has_d_losses: bool) -> Plan:
    """dlogits = (probs - onehot(labels)) (d_mean + d_losses)."""
    return _single("xent_grad", dtype, n * classes, Buf("probs"), Buf("labels"), _i32(n),
                   _i32(classes), _scalar(dtype, d_mean),
                   Buf("d_losses") if has_d_losses else None, Buf("dlogits"))


def policy_grad(n: int, nb: int, dtype, tau: float, eps: float, lambda_s: float,
                lambda_v: float, has_advantages: bool, has_dprob: bool = False) -> Plan:
    """dz of the policy's terms from prob, mask, advantages and dprob (see training.cu)."""
    bld = _Builder(dtype)
    if n == 0 or nb == 0:
        return bld.plan()
    colsum: Optional[Buf] = None
    rowmean: Optional[Buf] = None
    if lambda_s or lambda_v:
        colsum = bld.temp("prob_colsum", nb * bld.itemsize)
        bld.colsum(Buf("prob"), None, n, nb, 1, colsum)
    if lambda_s:
        rowmean = bld.temp("prob_rowmean", n * bld.itemsize)
        _flat(bld, "row_mean", n, Buf("prob"), _i32(n), _i32(nb), rowmean)
    _flat(bld, "policy_grad", n * nb, Buf("prob"), Buf("mask"),
          Buf("advantages") if has_advantages else None, colsum, rowmean,
          Buf("dprob") if has_dprob else None, _i32(n), _i32(nb),
          _scalar(dtype, tau), _scalar(dtype, lambda_s), _scalar(dtype, lambda_v),
          _scalar(dtype, 0.5 - eps), Buf("dz"))
    return bld.plan()


def clip_grad_norm(sizes, dtype, max_norm: float, max_blocks: int = _SUM_BLOCKS) -> Plan:
    """Scales the arrays ``g0``, ``g1``, ... (of ``sizes`` entries) so that their global
    L2 norm is at most max_norm, and leaves that norm (before clipping) in ``state[0]``
    (``state``: 2 float64).  Each sum of squares runs on at most ``max_blocks`` thread
    blocks, which stride over longer arrays."""
    bld = _Builder(dtype)
    state = Buf("state")
    bld.steps.append(Zero(state, 16))
    blocks = [min(_cdiv(size, _THREADS), max_blocks) for size in sizes]
    # One buffer of partial sums serves every array: the launches run in order.
    partial = bld.temp("partial", 8 * max(blocks, default=1))
    for index, (size, count) in enumerate(zip(sizes, blocks)):
        if size:
            bld.launch(f"sum_squares_{bld.suffix}", (count, 1, 1), (_THREADS, 1, 1),
                       Buf(f"g{index}"), _i64(size), partial)
            bld.launch("add_partials", (1, 1, 1), (_THREADS, 1, 1), partial, _i32(count),
                       state)
    bld.launch("clip_factor", (1, 1, 1), (1, 1, 1), state, np.float64(max_norm))
    for index, size in enumerate(sizes):
        _flat(bld, "scale_by", size, Buf(f"g{index}"), _i64(size), state)
    return bld.plan()


def learned_advantages(n: int, d: int, dtype, lr: float, normalize: bool) -> Plan:
    """out = the REINFORCE advantages of the costs, divided by n, from the learned baseline
    whose float64 ``state`` (c, w) it also updates, with x (n, d) the batch's inputs (d = 0
    and no x for learned-scalar).  One thread block."""
    bld = _Builder(dtype)
    if n:
        residual = bld.temp("residual", 8 * n)
        bld.launch(f"learned_advantages_{bld.suffix}", (1, 1, 1), (_THREADS, 1, 1),
                   Buf("costs"), Buf("x") if d else None, _i32(n), _i32(d), np.float64(lr),
                   np.int32(bool(normalize)), Buf("state"), residual, Buf("out"))
    return bld.plan()


def advantages(n: int, dtype, baseline: str, momentum: float, normalize: bool) -> Plan:
    """out = the REINFORCE advantages of the costs, divided by n, from ``baseline``
    ("none", "batch-min" or "moving-average", whose float64 (value, has_value) ``state``
    it also updates); one thread block."""
    bld = _Builder(dtype)
    if n:
        bld.launch(f"advantages_{bld.suffix}", (1, 1, 1), (_THREADS, 1, 1), Buf("costs"),
                   _i32(n), np.int32(BASELINE_KINDS[baseline]), Buf("state"),
                   np.float64(momentum), np.int32(bool(normalize)), Buf("out"))
    return bld.plan()
