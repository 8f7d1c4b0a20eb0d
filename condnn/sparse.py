"""The block-sparse product and its backward pass: validation and dispatch.

``sparse_dot`` computes ``O = (dot(a * Am, b) + c) * Om`` where ``Am`` and ``Om`` are block
masks: entry (i, j) of a mask switches the ``block_size`` consecutive columns
``j * block_size .. (j + 1) * block_size - 1`` of row i on (1) or off (0).  Blocks that are off
are never read: they contribute nothing, and inactive outputs are exactly 0 even where the
inputs hold NaN or inf.

Every argument is checked here; the compiled kernels in :mod:`condnn._sparse` run without bounds
checks and rely on it.  Which kernel runs depends on the masks given:

========  ==========  ===========  ===========================================
variant   ``amask``   ``omask``    kernel
========  ==========  ===========  ===========================================
``ss``    given       given        block-sparse in and out
``sf``    given       None         block-sparse input, every output computed
``fs``    None        given        only active output blocks computed
dense     None        None         BLAS (``numpy.matmul``)
========  ==========  ===========  ===========================================
"""
from numbers import Integral
from typing import Optional, Tuple

import numpy as np

from condnn import _checks, _sparse
from condnn.block_weights import BlockWeights
from condnn.device import on_gpu

__all__ = ["sparse_dot", "sparse_dot_backward", "set_num_threads", "get_num_threads", "variant"]

# Each thread gets its own scratch memory: a bound keeps a typo from exhausting memory.
MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Sets the number of threads the block-sparse kernels use (1 = single core).

    The default is OpenMP's (``OMP_NUM_THREADS``, else the number of cores), or
    ``CONDNN_NUM_THREADS`` when that variable is set.
    """
    if isinstance(n, bool) or not isinstance(n, Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n must be between 1 and {MAX_THREADS}, got {n}")
    _sparse.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads the block-sparse kernels use."""
    return _sparse.get_num_threads()


def variant(amask, omask) -> str:
    """The kernel variant the given masks select: 'ss', 'sf', 'fs' or 'dense'."""
    if amask is None and omask is None:
        return "dense"
    return ("s" if amask is not None else "f") + ("s" if omask is not None else "f")


def _as_plain(x):
    """A subclass of ndarray (np.matrix, say) as a plain ndarray; anything else unchanged,
    for the checks to accept or refuse (a masked array is refused: its mask would be
    ignored)."""
    if type(x) is np.ndarray or not isinstance(x, np.ndarray) \
            or isinstance(x, np.ma.MaskedArray):
        return x
    return np.asarray(x)


def _binary_mask(name: str, mask: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """A checked mask as the kernels read it: C-contiguous uint8 holding only 0 and 1."""
    if mask is None:
        return None
    if not mask.flags.c_contiguous:
        mask = np.ascontiguousarray(mask)
    mask = mask.view(np.uint8)
    if not _sparse.is_binary(mask):
        raise ValueError(_checks.mask_values_message(name))
    return mask


def _check_db_into(db_into, shape: Tuple[int, int], dtype: np.dtype, **inputs) -> None:
    """Raises unless db_into can take the weight gradient in place."""
    _checks.check_out("db_into", db_into, _checks.NUMPY, shape, dtype, inputs)
    if not db_into.flags.c_contiguous:
        raise ValueError(f"db_into must be C-contiguous, got strides {db_into.strides}")


def _kernel_operand(x: np.ndarray) -> np.ndarray:
    """x itself if its rows are unit-stride with a non-negative row stride, else a copy."""
    if x.strides[1] == x.itemsize and x.strides[0] >= 0:
        return x
    return np.ascontiguousarray(x)


def sparse_dot(a: np.ndarray, amask: Optional[np.ndarray], b: np.ndarray,
               omask: Optional[np.ndarray], c: Optional[np.ndarray], block_size: int,
               out: Optional[np.ndarray] = None, *, relu: bool = False) -> np.ndarray:
    """Block-sparse product ``(dot(a * Am, b) + c) * Om``, or with ``relu``
    ``max(dot(a * Am, b) + c, 0) * Om``.

    Args:
        a: (n, k) float32 or float64.
        amask: (n, k / block_size) block mask of ``a`` (bool, int8 or uint8 of 0/1), or None
            for all blocks on.
        b: (k, m), the dtype of ``a``.
        omask: (n, m / block_size) block mask of the output, or None.
        c: (m,) bias, added only where the output is active, or None.
        block_size: columns per block; must divide k if ``amask`` is given and m if
            ``omask`` is given.
        out: optional (n, m) array of a's dtype, fully overwritten.
        relu: apply the ReLU to the result, inside the kernels while each output block is
            in the caches (NaN stays NaN, as with ``numpy.maximum``).

    Returns:
        The (n, m) result, ``out`` if it was given.

    Arrays on the GPU (see :mod:`condnn.device`) go to :func:`condnn.gpu.sparse_dot`.

    Example:
        >>> import numpy as np, condnn
        >>> a = np.ones((2, 4), np.float32); b = np.ones((4, 4), np.float32)
        >>> m = np.array([[1, 0], [0, 1]], np.uint8)
        >>> condnn.sparse_dot(a, m, b, m, None, 2)
        array([[2., 2., 0., 0.],
               [0., 0., 2., 2.]], dtype=float32)
    """
    if on_gpu(a):
        from condnn import gpu
        return gpu.sparse_dot(a, amask, b, omask, c, block_size, out=out, relu=relu)
    # b stored block by block: its slabs go to the kernels, a stand-in of its shape and
    # dtype to the checks, and every product (masks or not) to the block-sparse kernel.
    blocked = isinstance(b, BlockWeights)
    weights = b.slabs if blocked else b
    if out is None:
        y = _sparse.forward_common(a, amask, weights, omask, c, block_size,
                                   b.shape[1] if blocked else -1, bool(relu))
        if y is not None:
            return y
    a, amask, omask, c = map(_as_plain, (a, amask, omask, c))
    if not blocked:
        b = weights = _as_plain(b)
    n, k, m, block_size = _checks.check_forward(a, amask, b.stand_in if blocked else b,
                                                omask, c, block_size, out, _checks.NUMPY)
    if blocked and block_size != b.block_size:
        raise ValueError(f"block_size {block_size} is not the block size {b.block_size} "
                         f"that b (a BlockWeights) was stored with")
    amask = _binary_mask("amask", amask)
    omask = _binary_mask("omask", omask)

    if amask is None and omask is None and not blocked:
        y = np.matmul(a, b, out=out)
        if c is not None:
            y += c
        if relu:
            np.maximum(y, 0, out=y)
        return y

    target = out if out is not None and out.strides[1] == out.itemsize \
        and out.strides[0] >= 0 else np.empty((n, m), dtype=a.dtype)
    if n and m:
        kernel = _sparse.forward_blocked if blocked else _sparse.forward
        kernel(_kernel_operand(a), amask, weights, omask, c, block_size, target, bool(relu))
    if out is not None and target is not out:
        out[...] = target
        return out
    return target


def sparse_dot_backward(grad_out: np.ndarray, a: np.ndarray, amask: Optional[np.ndarray],
                        b: np.ndarray, omask: Optional[np.ndarray], block_size: int, *,
                        db_into: Optional[np.ndarray] = None, compute_da: bool = True
                        ) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Gradients of :func:`sparse_dot` with respect to ``a``, ``b`` and ``c``.

    With G = grad_out masked by Om (entries of inactive blocks are never read):

    * ``da = (G @ b.T)`` masked by Am, shape (n, k);
    * ``db = (a masked by Am).T @ G``, shape (k, m): only block pairs active together in a
      row contribute;
    * ``dc`` = the column sums of G, shape (m,).

    The arguments are those given to :func:`sparse_dot`, with ``grad_out`` of shape (n, m).
    ``db_into``, a C-contiguous (k, m) array of b's dtype (a layer's gradient accumulator),
    has db added into it and is returned as db: no (k, m) array is made, and the blocks of
    pairs that no row uses are not touched.  ``compute_da=False`` skips da (returned as
    None), for a layer whose input is the data.  (Neither on the GPU.)
    """
    if on_gpu(a):
        if db_into is not None or not compute_da:
            raise ValueError("db_into and compute_da are not supported on the GPU")
        from condnn import gpu
        return gpu.sparse_dot_backward(grad_out, a, amask, b, omask, block_size)
    if isinstance(b, BlockWeights):
        raise TypeError("b must be the weight matrix itself: a BlockWeights serves the "
                        "forward product only")
    grad_out, a, amask, b, omask = map(_as_plain, (grad_out, a, amask, b, omask))
    n, k, m, block_size = _checks.check_backward(grad_out, a, amask, b, omask, block_size,
                                                 _checks.NUMPY)
    amask = _binary_mask("amask", amask)
    omask = _binary_mask("omask", omask)
    if db_into is not None:
        _check_db_into(db_into, (k, m), a.dtype, grad_out=grad_out, a=a, b=b)

    if amask is None and omask is None:
        db = a.T @ grad_out
        if db_into is not None:
            db_into += db
            db = db_into
        return grad_out @ b.T if compute_da else None, db, grad_out.sum(axis=0)

    da = np.empty((n, k), dtype=a.dtype) if compute_da else None
    # Zeros from the allocator: a large array's pages are then mapped on first touch,
    # and the blocks of inactive pairs (nearly all of db at batch 1) are never written.
    # The kernel adds into db, so a caller's accumulator serves as well.
    db = np.zeros((k, m), dtype=a.dtype) if db_into is None else db_into
    dc = np.empty(m, dtype=a.dtype)
    _sparse.backward(_kernel_operand(grad_out), _kernel_operand(a), amask, b, omask,
                     block_size, da, db, dc)
    return da, db, dc
