"""A weight matrix stored block by block, for the block-sparse product at inference.

A (k, m) matrix in NumPy's row-major layout keeps the rows of one block a whole matrix row
apart (12 KB for m = 3072): fetching a block from memory is then 64 short reads, which the
hardware prefetchers do not follow, and at small batches the product waits on them.  Stored
as column slabs, one per output block, every block is one sequential read, the blocks that
one output block needs follow each other, and none is repacked.

Training changes the weights in place every step, so a :class:`BlockWeights` is a snapshot
for evaluation: :func:`condnn.models.for_inference` makes a frozen copy of a model with
them.
"""
import numpy as np

from condnn import _checks


class BlockWeights:
    """The (k, m) matrix b as column slabs ``slabs[j] = b[:, j*bs:(j+1)*bs]`` (the last one
    zero-padded to bs columns), contiguous, read-only.

    :func:`condnn.sparse_dot` takes it in place of b, with the same block size.  It is for
    the forward product only; :func:`condnn.sparse_dot_backward` needs the matrix itself.

    Args:
        b: (k, m) float32 or float64 array (any layout); it is copied.
        block_size: the block size of the products it will serve.

    Example:
        >>> import numpy as np, condnn
        >>> b = np.arange(12, dtype=np.float32).reshape(3, 4)
        >>> w = BlockWeights(b, 2)
        >>> w.shape, w.slabs.shape, bool((w.to_array() == b).all())
        ((3, 4), (2, 3, 2), True)
    """

    def __init__(self, b: np.ndarray, block_size: int) -> None:
        _checks.check_matrix("b", b, _checks.NUMPY)
        self.block_size = _checks.check_block_size(block_size)
        self.shape = tuple(int(d) for d in b.shape)
        self.dtype = b.dtype
        k, m = self.shape
        bs = self.block_size
        mc = -(-m // bs)
        padded = np.zeros((k, mc * bs), dtype=b.dtype)
        padded[:, :m] = b
        self.slabs = np.ascontiguousarray(padded.reshape(k, mc, bs).transpose(1, 0, 2))
        self.slabs.flags.writeable = False
        # A (k, m) array of b's dtype without memory of its own, for the argument checks.
        self.stand_in = np.broadcast_to(np.zeros((), dtype=b.dtype), self.shape)

    def to_array(self) -> np.ndarray:
        """The (k, m) matrix again."""
        mc, k, bs = self.slabs.shape
        return self.slabs.transpose(1, 0, 2).reshape(k, mc * bs)[:, :self.shape[1]].copy()

    @property
    def nbytes(self) -> int:
        return self.slabs.nbytes

    def __repr__(self) -> str:
        return (f"BlockWeights(shape={self.shape}, block_size={self.block_size}, "
                f"dtype={self.dtype})")
