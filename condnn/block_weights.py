"""A weight matrix stored block by block, for the block-sparse product at inference.

A (k, m) matrix in NumPy's row-major layout keeps the rows of one block a whole matrix row
apart (12 KB for m = 3072): fetching a block from memory is then 64 short reads, which the
hardware prefetchers do not follow, and at small batches the product waits on them.  Stored
as column slabs, one per output block, every block is one sequential read, the blocks that
one output block needs follow each other, and none is repacked.

Training changes the weights in place every step, so a :class:`BlockWeights` is a snapshot
for evaluation: :func:`condnn.models.for_inference` makes a frozen copy of a model with
them.

The weights of float32 products may be stored in half precision (``storage=np.float16``):
half the memory and half the bytes each product reads, which is what a product with few
rows per block waits on.  The kernels convert them back exactly and compute in float32, so
the product is the float32 product of the weights rounded to float16.
"""

import numpy as np

from condnn import _checks

_FLOAT16_MAX = float(np.finfo(np.float16).max)


class BlockWeights:
    """The (k, m) matrix b as column slabs ``slabs[j] = b[:, j*bs:(j+1)*bs]`` (the last one
    zero-padded to bs columns), contiguous, read-only.

    :func:`condnn.sparse_dot` takes it in place of b, with the same block size.  It is for
    the forward product only; :func:`condnn.sparse_dot_backward` needs the matrix itself.

    Args:
        b: (k, m) float32 or float64 array (any layout); it is copied.
        block_size: the block size of the products it will serve.
        storage: the dtype the slabs hold: None for b's own, or float16 for a float32 b
            (each weight rounded to the nearest float16; a finite weight too large for
            float16, which would round to inf, is an error).

    ``dtype`` is the dtype of the products it serves (b's), ``slabs.dtype`` its storage.

    Example:
        >>> import numpy as np, condnn
        >>> b = np.arange(12, dtype=np.float32).reshape(3, 4)
        >>> w = BlockWeights(b, 2)
        >>> w.shape, w.slabs.shape, bool((w.to_array() == b).all())
        ((3, 4), (2, 3, 2), True)
        >>> BlockWeights(b, 2, storage=np.float16).nbytes
        24
    """

    def __init__(self, b: np.ndarray, block_size: int, storage=None) -> None:
        _checks.check_matrix("b", b, _checks.NUMPY)
        self.block_size = _checks.check_block_size(block_size)
        self.shape = tuple(int(d) for d in b.shape)
        self.dtype = b.dtype
        storage = _storage_dtype(storage, b)
        k, m = self.shape
        bs = self.block_size
        mc = -(-m // bs)
        padded = np.zeros((k, mc * bs), dtype=storage)
        padded[:, :m] = b
        self.slabs = np.ascontiguousarray(padded.reshape(k, mc, bs).transpose(1, 0, 2))
        self.slabs.flags.writeable = False
        # A (k, m) array of b's dtype without memory of its own, for the argument checks.
        self.stand_in = np.broadcast_to(np.zeros((), dtype=b.dtype), self.shape)

    def to_array(self) -> np.ndarray:
        """The (k, m) matrix again, in :attr:`dtype` (as stored: rounded to float16 if it
        was)."""
        mc, k, bs = self.slabs.shape
        return self.slabs.transpose(1, 0, 2).reshape(k, mc * bs)[:, :self.shape[1]].astype(
            self.dtype)

    @property
    def nbytes(self) -> int:
        return self.slabs.nbytes

    def __repr__(self) -> str:
        storage = "" if self.slabs.dtype == self.dtype else f", storage={self.slabs.dtype}"
        return (f"BlockWeights(shape={self.shape}, block_size={self.block_size}, "
                f"dtype={self.dtype}{storage})")


def _storage_dtype(storage, b: np.ndarray) -> np.dtype:
    """The slabs' dtype for ``storage`` (see :class:`BlockWeights`), with b checked to fit."""
    if storage is None:
        return b.dtype
    try:
        dtype = np.dtype(storage)
    except TypeError:
        raise TypeError(f"storage must be None or a dtype, got {storage!r}") from None
    if dtype == b.dtype:
        return dtype
    if dtype != np.float16 or b.dtype != np.float32:
        raise ValueError(f"storage must be None, b's dtype or float16 for a float32 b; got "
                         f"{dtype} for a {b.dtype} b")
    with np.errstate(over="ignore"):
        overflow = np.isinf(b.astype(np.float16)) & np.isfinite(b)
    if overflow.any():
        largest = float(np.abs(b[overflow]).max())
        raise ValueError(f"b holds {int(overflow.sum())} weights too large for float16 "
                         f"(the largest of magnitude {largest:.6g}; float16 holds up to "
                         f"{_FLOAT16_MAX:.0f}): store them as float32")
    return dtype
