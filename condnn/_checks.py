"""Argument checks of the block-sparse product that do not depend on where the arrays live.

Every check here looks only at types, shapes, dtypes and memory extents, through an
:class:`ArrayKind` that says what the backend's arrays are, so the CPU backend
(:mod:`condnn.sparse`, with NumPy arrays) and the GPU backend (PyCUDA ``GPUArray``) raise the
same errors with the same messages.  What does depend on the backend stays with it: checking
that mask values are 0 or 1 reads the data (on the host for NumPy, with a kernel on the GPU),
and operand layouts that a backend cannot use directly.

"""
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
MASK_DTYPES = (np.dtype(np.bool_), np.dtype(np.int8), np.dtype(np.uint8))


@dataclass(frozen=True)
class ArrayKind:
    """What a backend's arrays are.

    Attributes:
        type: the array class (``numpy.ndarray``, ``pycuda.gpuarray.GPUArray``).
        name: how messages name it.
        shares_memory: ``shares_memory(x, y)`` is True if writing x may change y.
        writeable: ``writeable(x)`` is False for an array that must not be written.
        refuse: ``refuse(name, x)`` is the message for an array of the right class that the
            backend still cannot take (a NumPy masked array, whose mask would be ignored),
            else None.
    """

    type: type
    name: str
    shares_memory: Callable[[Any, Any], bool]
    writeable: Callable[[Any], bool]
    refuse: Callable[[str, Any], Optional[str]] = lambda name, x: None


def _refuse_numpy(name: str, x) -> Optional[str]:
    if isinstance(x, np.ma.MaskedArray):
        return (f"{name} must be a plain numpy.ndarray, got a masked array; "
                f"fill it first (x.filled(0))")
    return None


NUMPY = ArrayKind(np.ndarray, "numpy.ndarray", np.may_share_memory,
                  lambda x: bool(x.flags.writeable), _refuse_numpy)


def _check_type(name: str, x, kind: ArrayKind, what: str) -> None:
    if type(x) is kind.type:       # the common case, checked fast
        return
    message = kind.refuse(name, x) if isinstance(x, kind.type) else None
    if message:
        raise TypeError(message)
    if not isinstance(x, kind.type):
        raise TypeError(f"{name} must be a {kind.name}{what}, got {type(x).__name__}")


def check_block_size(block_size) -> int:
    if type(block_size) is int and block_size >= 1:   # the common case, checked fast
        return block_size
    if isinstance(block_size, bool) or not isinstance(block_size, Integral):
        raise TypeError(f"block_size must be an int, got {type(block_size).__name__}")
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    return int(block_size)


def check_matrix(name: str, x, kind: ArrayKind, ndim: int = 2) -> None:
    _check_type(name, x, kind, "")
    if x.dtype not in FLOATS:
        if x.dtype.kind == "f" and x.dtype.newbyteorder() in FLOATS:
            raise TypeError(f"{name} must have native byte order, got {x.dtype}; "
                            f"convert it with x.astype(x.dtype.newbyteorder('='))")
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if len(x.shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")


def check_dtypes(dtype: np.dtype, **arrays) -> None:
    for name, x in arrays.items():
        if x is not None and x.dtype != dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but a has dtype {dtype}; "
                            f"mixed dtypes are not supported")


def check_mask(name: str, mask, kind: ArrayKind, rows: int, cols: int, block_size: int,
               dim_name: str) -> None:
    """Type, dtype and shape of a block mask (None passes); its values are not read."""
    if mask is None:
        return
    _check_type(name, mask, kind, " or None")
    if mask.dtype not in MASK_DTYPES:
        raise TypeError(f"{name} must have dtype bool, int8 or uint8, got {mask.dtype}")
    if cols % block_size != 0:
        raise ValueError(f"block_size {block_size} does not divide {dim_name} = {cols}, "
                         f"the dimension {name} applies to")
    expected = (rows, cols // block_size)
    if tuple(mask.shape) != expected:
        raise ValueError(f"{name} must have shape {expected} (rows, {dim_name} / block_size), "
                         f"got {mask.shape}")


def mask_values_message(name: str) -> str:
    """The message for a mask holding something other than 0 and 1."""
    return f"{name} must hold only 0 and 1"


def check_out(name: str, out, kind: ArrayKind, shape: Tuple[int, ...], dtype: np.dtype,
              inputs: Dict[str, Any]) -> None:
    if type(out) is not kind.type:      # as condnn.sparse: the exact class, no subclass
        raise TypeError(f"{name} must be a plain {kind.name} or None, "
                        f"got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not kind.writeable(out):
        raise ValueError(f"{name} is read-only")
    for input_name, x in inputs.items():
        if x is not None and kind.shares_memory(out, x):
            raise ValueError(f"{name} must not share memory with {input_name}")


def _product_shape(a, b) -> Tuple[int, int, int]:
    """(n, k, m) of ``a @ b``, a being (n, k) and b (k, m)."""
    n, k = a.shape
    if b.shape[0] != k:
        raise ValueError(f"b must have shape ({k}, m) to match a of shape {a.shape}, "
                         f"got {b.shape}")
    return n, k, b.shape[1]


def check_forward(a, amask, b, omask, c, block_size, out,
                  kind: ArrayKind) -> Tuple[int, int, int, int]:
    """Checks the arguments of ``sparse_dot`` in the order condnn.sparse does.

    Returns:
        ``(n, k, m, block_size)``.
    """
    block_size = check_block_size(block_size)
    check_matrix("a", a, kind)
    check_matrix("b", b, kind)
    if c is not None:
        check_matrix("c", c, kind, ndim=1)
    check_dtypes(a.dtype, b=b, c=c)
    n, k, m = _product_shape(a, b)
    if c is not None and tuple(c.shape) != (m,):
        raise ValueError(f"c must have shape ({m},), got {c.shape}")
    check_mask("amask", amask, kind, n, k, block_size, "k")
    check_mask("omask", omask, kind, n, m, block_size, "m")
    if out is not None:
        # Masks too: a kernel reads them while it writes out.
        check_out("out", out, kind, (n, m), a.dtype,
                  {"a": a, "b": b, "c": c, "amask": amask, "omask": omask})
    return int(n), int(k), int(m), block_size


def check_backward(grad_out, a, amask, b, omask, block_size,
                   kind: ArrayKind) -> Tuple[int, int, int, int]:
    """Checks the arguments of ``sparse_dot_backward`` in the order condnn.sparse does.

    Returns:
        ``(n, k, m, block_size)``.
    """
    block_size = check_block_size(block_size)
    check_matrix("grad_out", grad_out, kind)
    check_matrix("a", a, kind)
    check_matrix("b", b, kind)
    check_dtypes(a.dtype, grad_out=grad_out, b=b)
    n, k, m = _product_shape(a, b)
    if tuple(grad_out.shape) != (n, m):
        raise ValueError(f"grad_out must have shape {(n, m)}, got {grad_out.shape}")
    check_mask("amask", amask, kind, n, k, block_size, "k")
    check_mask("omask", omask, kind, n, m, block_size, "m")
    return int(n), int(k), int(m), block_size

