"""What a forward pass of a block model records, and how its products are laid out.

Every model of :mod:`condnn.models` has ``trace(x, train, ...) -> Trace``: the logits, the
block mask and the policy's probabilities of each gated layer, and one backprop for the
classification loss and the policy's terms together.  ``products()`` lists the model's
matrix products with the masks that gate them, from which :mod:`condnn.flops` counts the
work a pass executed.
"""
from typing import Callable, List, NamedTuple, Optional

import numpy as np

from condnn.device import on_gpu

#: How a pass computes its products:
#: ``sparse``: block-sparse kernels, inactive blocks skipped;
#: ``dense``: the same function (same masks, same outputs) with dense BLAS products and the
#: masks multiplied in afterwards: the network "run densely";
#: ``all_on``: every block on and the policy not evaluated, dense BLAS products.
EXECUTIONS = ("sparse", "dense", "all_on")

# backprop(dlogits, advantages=None, penalty=None) -> None (the input is data: no dx).
TraceBackprop = Callable[..., None]


class Trace(NamedTuple):
    """One forward pass of a block model.

    Attributes:
        logits: (n, classes).
        masks: per gated layer, its (n, B) uint8 block mask, or None (all blocks on).
        probs: per gated layer, the policy's probabilities, or None (no policy): (n, B),
            or (n, B - S) for a layer whose first S blocks are shared (on for every example).
        backprop: ``backprop(dlogits, advantages=None, penalty=None)`` adds the gradient of
            the loss whose gradient for the logits is ``dlogits`` into the network's
            parameters and, for a conditional model, the policy terms of
            :class:`condnn.layers.PolicyGate` (advantages (n,), a ``PolicyPenalty``) into
            the policy's.  Models without a policy ignore the last two.
    """

    logits: np.ndarray
    masks: List[Optional[np.ndarray]]
    probs: List[Optional[np.ndarray]]
    backprop: TraceBackprop


class Product(NamedTuple):
    """One matrix product ``(n, n_in) @ (n_in, n_out)`` of a model.

    ``in_mask`` / ``out_mask``: the index in ``Trace.masks`` of the mask that gates the
    product's input / output blocks of ``block_size`` units, or None (ungated).
    ``policy``: True for a policy's product, which a dense network does not have.
    """

    name: str
    n_in: int
    n_out: int
    block_size: int
    in_mask: Optional[int]
    out_mask: Optional[int]
    policy: bool = False


def check_execution(execution: str, x=None) -> str:
    """``execution`` checked to be one of :data:`EXECUTIONS`, and not "dense" for an input
    x on the GPU (the dense execution multiplies masks in with NumPy, for timing)."""
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
    if execution == "dense" and x is not None and on_gpu(x):
        raise ValueError('execution "dense" runs on the CPU only; on the GPU use '
                         '"sparse" or "all_on"')
    return execution


def apply_block_mask(y: np.ndarray, mask: np.ndarray, block_size: int) -> np.ndarray:
    """Zeroes, in place, the blocks of y (n, B * block_size) that mask (n, B) switches off."""
    n = y.shape[0]
    y.reshape(n, -1, block_size)[...] *= mask[:, :, None]
    return y


def hidden_layer(fc, h: np.ndarray, train: bool, prev_mask: Optional[np.ndarray],
                 mask: Optional[np.ndarray], sparse: bool):
    """``relu(((h * prev_mask) W + b) * mask)`` of a block-sparse hidden layer, computed with
    the block-sparse product, or (``sparse`` False) densely with the mask multiplied in.

    Returns ``(y, fc_backprop)``: ``fc_backprop`` is the product's, and the caller applies
    the relu's derivative, read from y.  The block-sparse product applies the relu itself;
    the dense one has it applied in place (its backprop keeps h, not y).
    """
    if sparse:
        # The masks are the model's own (its policies' 0/1 decisions, or given ones that
        # the policies checked).
        return fc(h, train, amask=prev_mask, omask=mask, masks_checked=True, relu=True)
    y, fc_backprop = fc(h, train)
    if mask is not None:
        apply_block_mask(y, mask, fc.block_size)
    relu_(y)
    return y, fc_backprop


def relu_(y):
    """``y = max(y, 0)`` in place, on y's device."""
    if on_gpu(y):
        from condnn.gpu import training
        return training.relu_(y)
    return np.maximum(y, 0, out=y)


def relu_grad(dy, y):
    """``dy`` where ``y > 0``, else 0 (ReLU's derivative read from its output y)."""
    if on_gpu(y):
        from condnn.gpu import training
        return training.relu_grad(dy, y)
    return dy * (y > 0)


def frozen_backprop(model_name: str) -> TraceBackprop:
    """The backprop of a frozen copy's evaluation trace: an error, as training the copy
    would be (its weights are a read-only snapshot)."""
    def refuse(*args, **kwargs) -> None:
        raise RuntimeError(f"{model_name}: this model is a frozen copy for evaluation "
                           f"(for_inference); train the model it was copied from")
    return refuse


def plain_input(x, n_in: int, dtype) -> bool:
    """Whether x is a NumPy (n, n_in) array of ``dtype``: the input a frozen copy's lean
    evaluation pass takes without checks (any other goes through the general pass, whose
    layers say what is wrong with it)."""
    return isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == n_in \
        and x.dtype == dtype
