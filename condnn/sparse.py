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

from condnn import _sparse

__all__ = ["sparse_dot", "sparse_dot_backward", "set_num_threads", "get_num_threads", "variant"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Each thread gets its own scratch memory: a bound keeps a typo from exhausting memory.
MAX_THREADS = 1024
_MASK_DTYPES = (np.dtype(np.bool_), np.dtype(np.int8), np.dtype(np.uint8))


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


def _check_block_size(block_size) -> int:
    if type(block_size) is int and block_size >= 1:   # the common case, checked fast
        return block_size
    if isinstance(block_size, bool) or not isinstance(block_size, Integral):
        raise TypeError(f"block_size must be an int, got {type(block_size).__name__}")
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    return int(block_size)


def _plain_array(name: str, x, what: str) -> np.ndarray:
    """x as a plain ndarray: subclasses are viewed as ndarray, masked arrays refused (their
    mask would be silently ignored)."""
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} must be a plain numpy.ndarray, got a masked array; "
                        f"fill it first (x.filled(0))")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray{what}, got {type(x).__name__}")
    return np.asarray(x)


def _check_matrix(name: str, x, ndim: int = 2) -> np.ndarray:
    x = _plain_array(name, x, "")
    if x.dtype not in _FLOATS:
        if x.dtype.kind == "f" and x.dtype.newbyteorder() in _FLOATS:
            raise TypeError(f"{name} must have native byte order, got {x.dtype}; "
                            f"convert it with x.astype(x.dtype.newbyteorder('='))")
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return x


def _check_dtypes(dtype: np.dtype, **arrays) -> None:
    for name, x in arrays.items():
        if x is not None and x.dtype != dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but a has dtype {dtype}; "
                            f"mixed dtypes are not supported")


def _check_mask(name: str, mask, rows: int, cols: int, block_size: int,
                dim_name: str) -> Optional[np.ndarray]:
    """The mask as a C-contiguous uint8 array of 0/1, or None."""
    if mask is None:
        return None
    mask = _plain_array(name, mask, " or None")
    if mask.dtype not in _MASK_DTYPES:
        raise TypeError(f"{name} must have dtype bool, int8 or uint8, got {mask.dtype}")
    if cols % block_size != 0:
        raise ValueError(f"block_size {block_size} does not divide {dim_name} = {cols}, "
                         f"the dimension {name} applies to")
    expected = (rows, cols // block_size)
    if mask.shape != expected:
        raise ValueError(f"{name} must have shape {expected} (rows, {dim_name} / block_size), "
                         f"got {mask.shape}")
    if not mask.flags.c_contiguous:
        mask = np.ascontiguousarray(mask)
    mask = mask.view(np.uint8)
    if not _sparse.is_binary(mask):
        raise ValueError(f"{name} must hold only 0 and 1")
    return mask


def _kernel_operand(x: np.ndarray) -> np.ndarray:
    """x itself if its rows are unit-stride with a non-negative row stride, else a copy."""
    if x.strides[1] == x.itemsize and x.strides[0] >= 0:
        return x
    return np.ascontiguousarray(x)


def _check_out(name: str, out, shape, dtype, inputs) -> None:
    if type(out) is not np.ndarray:
        raise TypeError(f"{name} must be a plain numpy.ndarray or None, "
                        f"got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for input_name, x in inputs.items():
        if x is not None and np.may_share_memory(out, x):
            raise ValueError(f"{name} must not share memory with {input_name}")


def sparse_dot(a: np.ndarray, amask: Optional[np.ndarray], b: np.ndarray,
               omask: Optional[np.ndarray], c: Optional[np.ndarray], block_size: int,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Block-sparse product ``(dot(a * Am, b) + c) * Om``.

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

    Returns:
        The (n, m) result, ``out`` if it was given.

    Example:
        >>> import numpy as np, condnn
        >>> a = np.ones((2, 4), np.float32); b = np.ones((4, 4), np.float32)
        >>> m = np.array([[1, 0], [0, 1]], np.uint8)
        >>> condnn.sparse_dot(a, m, b, m, None, 2)
        array([[2., 2., 0., 0.],
               [0., 0., 2., 2.]], dtype=float32)
    """
    block_size = _check_block_size(block_size)
    a = _check_matrix("a", a)
    b = _check_matrix("b", b)
    if c is not None:
        c = _check_matrix("c", c, ndim=1)
    _check_dtypes(a.dtype, b=b, c=c)
    n, k = a.shape
    if b.shape[0] != k:
        raise ValueError(f"b must have shape ({k}, m) to match a of shape {a.shape}, "
                         f"got {b.shape}")
    m = b.shape[1]
    if c is not None and c.shape != (m,):
        raise ValueError(f"c must have shape ({m},), got {c.shape}")
    given_masks = {"amask": amask, "omask": omask}
    amask = _check_mask("amask", amask, n, k, block_size, "k")
    omask = _check_mask("omask", omask, n, m, block_size, "m")
    if out is not None:
        _check_out("out", out, (n, m), a.dtype, {"a": a, "b": b, "c": c, **given_masks})

    if amask is None and omask is None:
        y = np.matmul(a, b, out=out)
        if c is not None:
            y += c
        return y

    target = out if out is not None and out.strides[1] == out.itemsize \
        and out.strides[0] >= 0 else np.empty((n, m), dtype=a.dtype)
    if n and m:
        _sparse.forward(_kernel_operand(a), amask, b, omask, c, block_size, target)
    if out is not None and target is not out:
        out[...] = target
        return out
    return target


def sparse_dot_backward(grad_out: np.ndarray, a: np.ndarray, amask: Optional[np.ndarray],
                        b: np.ndarray, omask: Optional[np.ndarray],
                        block_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`sparse_dot` with respect to ``a``, ``b`` and ``c``.

    With G = grad_out masked by Om (entries of inactive blocks are never read):

    * ``da = (G @ b.T)`` masked by Am, shape (n, k);
    * ``db = (a masked by Am).T @ G``, shape (k, m): only block pairs active together in a
      row contribute;
    * ``dc`` = the column sums of G, shape (m,).

    The arguments are those given to :func:`sparse_dot`, with ``grad_out`` of shape (n, m).
    """
    block_size = _check_block_size(block_size)
    grad_out = _check_matrix("grad_out", grad_out)
    a = _check_matrix("a", a)
    b = _check_matrix("b", b)
    _check_dtypes(a.dtype, grad_out=grad_out, b=b)
    n, k = a.shape
    if b.shape[0] != k:
        raise ValueError(f"b must have shape ({k}, m) to match a of shape {a.shape}, "
                         f"got {b.shape}")
    m = b.shape[1]
    if grad_out.shape != (n, m):
        raise ValueError(f"grad_out must have shape {(n, m)}, got {grad_out.shape}")
    amask = _check_mask("amask", amask, n, k, block_size, "k")
    omask = _check_mask("omask", omask, n, m, block_size, "m")

    if amask is None and omask is None:
        return grad_out @ b.T, a.T @ grad_out, grad_out.sum(axis=0)

    da = np.empty((n, k), dtype=a.dtype)
    db = np.empty((k, m), dtype=a.dtype)
    dc = np.empty(m, dtype=a.dtype)
    _sparse.backward(_kernel_operand(grad_out), _kernel_operand(a), amask, b, omask,
                     block_size, da, db, dc)
    return da, db, dc
