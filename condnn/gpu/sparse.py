"""The block-sparse product on the GPU: the same functions as :mod:`condnn.sparse`, on
PyCUDA ``GPUArray``s.

``sparse_dot(a, amask, b, omask, c, block_size)`` computes ``O = (dot(a * Am, b) + c) * Om``
with the semantics, argument checks and error messages of :func:`condnn.sparse_dot`:
inactive outputs are exactly 0 whatever the inputs hold (NaN included), entries of ``a`` in
inactive blocks are never read, results equal the float64 reference within float32 rounding,
and every call with the same inputs gives bitwise the same result (no float atomics).

What runs, by the masks given (``method="auto"``):

========  ==========  ===========  =========================================================
variant   ``amask``   ``omask``    work
========  ==========  ===========  =========================================================
``ss``    given       given        block-sparse kernel over the active block pairs
``sf``    given       None         masked copy of ``a``, cuBLAS GEMM, bias
``fs``    None        given        cuBLAS GEMM, then mask and bias
dense     None        None         cuBLAS GEMM, bias
========  ==========  ===========  =========================================================

``method="sparse"`` runs the block-sparse kernel for every variant and ``method="gemm"`` runs
cuBLAS for every variant; ``benchmarks/sparse_dot_gpu.py`` measures both, which is what the
``auto`` choice should follow.

Differences from the CPU functions, all from the arrays living on the device:

* every array (masks included) must be C-contiguous: the GPU backend never copies an
  argument implicitly;
* masks are checked for values other than 0 and 1 by a kernel, after the other checks; this
  reads one flag back from the device, which waits for the work queued before.  Pass
  ``check_masks=False`` to skip it; the kernels then treat any nonzero byte as on.
"""
from typing import Tuple

from condnn import _checks
from condnn.gpu import _plan
from condnn.gpu import _runtime

__all__ = ["sparse_dot", "sparse_dot_backward"]


def check_layout(**arrays) -> None:
    """Raises ValueError for any array given that is not C-contiguous."""
    for name, x in arrays.items():
        if x is not None and not x.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous (the GPU backend does not copy "
                             f"arguments), got strides {x.strides}; pass {name}.copy()")


def sparse_dot(a, amask, b, omask, c, block_size: int, out=None, *, method: str = "auto",
               check_masks: bool = True, relu: bool = False):
    """Block-sparse product ``(dot(a * Am, b) + c) * Om`` of GPUArrays (with ``relu``, its
    maximum with 0).

    Args:
        a: (n, k) float32 or float64 ``GPUArray``.
        amask: (n, k / block_size) block mask of ``a`` (bool, int8 or uint8 of 0/1), or None
            for all blocks on.
        b: (k, m), the dtype of ``a``.
        omask: (n, m / block_size) block mask of the output, or None.
        c: (m,) bias, added only where the output is active, or None.
        block_size: columns per block; must divide k if ``amask`` is given and m if
            ``omask`` is given.
        out: optional (n, m) GPUArray of a's dtype, fully overwritten.
        method: "auto", "sparse" (block-sparse kernel) or "gemm" (cuBLAS); see the module.
        check_masks: check on the device that masks hold only 0 and 1.
        relu: apply the ReLU to the result (a pass of :func:`condnn.gpu.training.relu_`).

    Returns:
        The (n, m) result, ``out`` if it was given.

    Raises:
        RuntimeError: the GPU backend is unavailable (see
            :func:`condnn.gpu.unavailable_reason`).
        TypeError, ValueError: as :func:`condnn.sparse_dot`, naming the argument.

    Example:
        >>> import numpy as np, pycuda.gpuarray as ga, condnn.gpu
        >>> a = ga.to_gpu(np.ones((2, 4), np.float32))
        >>> b = ga.to_gpu(np.ones((4, 4), np.float32))
        >>> m = ga.to_gpu(np.array([[1, 0], [0, 1]], np.uint8))
        >>> condnn.gpu.sparse_dot(a, m, b, m, None, 2).get()
        array([[2., 2., 0., 0.],
               [0., 0., 2., 2.]], dtype=float32)
    """
    rt = _runtime.runtime()
    kind = rt.kind
    n, k, m, bs = _checks.check_forward(a, amask, b, omask, c, block_size, out, kind)
    check_layout(a=a, amask=amask, b=b, omask=omask, c=c, out=out)
    plan = _plan.forward(n, k, m, bs, a.dtype, amask is not None, omask is not None,
                         c is not None, method, bool(check_masks))
    if out is None:
        out = rt.empty((n, m), a.dtype)
    rt.run(plan, {"a": a, "amask": amask, "b": b, "omask": omask, "c": c, "out": out})
    if relu:
        from condnn.gpu import training
        training.relu_(out)
    return out


def sparse_dot_backward(grad_out, a, amask, b, omask, block_size: int, *,
                        method: str = "auto", check_masks: bool = True) -> Tuple:
    """Gradients of :func:`sparse_dot` with respect to ``a``, ``b`` and ``c``, on GPUArrays.

    With G = grad_out masked by Om (entries of inactive blocks are never read):

    * ``da = (G @ b.T)`` masked by Am, shape (n, k): the ss product with input mask Om and
      output mask Am;
    * ``db = (a masked by Am).T @ G``, shape (k, m): each block pair summed over the rows
      where both blocks are on, in row order;
    * ``dc`` = the column sums of G, shape (m,), in a fixed order.

    The arguments are those given to :func:`sparse_dot`, with ``grad_out`` of shape (n, m);
    ``method`` and ``check_masks`` as there (``auto``: block-sparse kernels for ss, cuBLAS
    otherwise).

    Returns:
        ``(da, db, dc)``, new GPUArrays.
    """
    rt = _runtime.runtime()
    kind = rt.kind
    n, k, m, bs = _checks.check_backward(grad_out, a, amask, b, omask, block_size, kind)
    check_layout(grad_out=grad_out, a=a, amask=amask, b=b, omask=omask)
    plan = _plan.backward(n, k, m, bs, a.dtype, amask is not None, omask is not None,
                          method, bool(check_masks))
    da = rt.empty((n, k), a.dtype)
    db = rt.empty((k, m), a.dtype)
    dc = rt.empty((m,), a.dtype)
    rt.run(plan, {"grad_out": grad_out, "a": a, "amask": amask, "b": b, "omask": omask,
                  "da": da, "db": db, "dc": dc})
    return da, db, dc

