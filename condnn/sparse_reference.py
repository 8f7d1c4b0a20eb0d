"""The block-sparse product computed the slow, obvious way, in float64.

These functions define what :func:`condnn.sparse_dot` and :func:`condnn.sparse_dot_backward`
compute, and the tests compare every fast kernel against them.  A block that is off is
structurally absent: its products are never formed, so NaN or inf held by an input that
only meets inactive blocks cannot reach any result (dense arithmetic would give 0 * NaN =
NaN).  The loops run over pairs of blocks, the way the kernels see the problem.
"""
from typing import List, Optional, Tuple

import numpy as np


def expand_mask(mask: Optional[np.ndarray], block_size: int, shape: Tuple[int, int]) -> np.ndarray:
    """The (n, blocks) block mask as an (n, blocks * block_size) boolean element mask."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    return np.repeat(np.asarray(mask).astype(bool), block_size, axis=1)


def _blocks(mask: Optional[np.ndarray], block_size: int, size: int,
            n: int) -> List[Tuple[slice, np.ndarray]]:
    """(columns, rows on) of each block of a dimension; one all-on block without a mask."""
    if mask is None:
        return [(slice(0, size), np.ones(n, dtype=bool))]
    mask = np.asarray(mask).astype(bool)
    return [(slice(p * block_size, (p + 1) * block_size), mask[:, p])
            for p in range(mask.shape[1])]


def reference_sparse_dot(a, amask, b, omask, c, block_size):
    """``(dot(a * Am, b) + c) * Om`` in float64: for each row, the sum over the pairs of
    input and output blocks that are both on; inactive outputs 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, m = a.shape[0], b.shape[1]
    y = np.zeros((n, m))
    for cols_in, on_in in _blocks(amask, block_size, a.shape[1], n):
        for cols_out, on_out in _blocks(omask, block_size, m, n):
            rows = on_in & on_out
            y[rows, cols_out] += a[rows, cols_in] @ b[cols_in, cols_out]
    if c is not None:
        y += np.asarray(c, dtype=np.float64)
    return np.where(expand_mask(omask, block_size, (n, m)), y, 0.0)


def reference_sparse_dot_backward(grad_out, a, amask, b, omask, block_size):
    """Gradients ``(da, db, dc)`` of ``sparse_dot`` in float64.

    With G = grad_out masked by Om: da = (G @ b.T) masked by Am, db = (a masked by Am).T @ G,
    dc = the column sums of G; each formed, like the product, from active block pairs only.
    """
    g = np.asarray(grad_out, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, k = a.shape
    m = b.shape[1]
    da = np.zeros((n, k))
    db = np.zeros((k, m))
    for cols_in, on_in in _blocks(amask, block_size, k, n):
        for cols_out, on_out in _blocks(omask, block_size, m, n):
            rows = on_in & on_out
            da[rows, cols_in] += g[rows, cols_out] @ b[cols_in, cols_out].T
            db[cols_in, cols_out] += a[rows, cols_in].T @ g[rows, cols_out]
    dc = np.where(expand_mask(omask, block_size, (n, m)), g, 0.0).sum(axis=0)
    return da, db, dc
