"""The block-sparse product computed the slow, obvious way, in float64.

These functions define what :func:`condnn.sparse_dot` and :func:`condnn.sparse_dot_backward`
compute; the tests compare every fast kernel against them.  Inactive blocks are removed with
``np.where`` (not multiplied by 0), so NaN or inf held by an inactive entry never leaks.
"""
from typing import Optional, Tuple

import numpy as np


def expand_mask(mask: Optional[np.ndarray], block_size: int, shape: Tuple[int, int]) -> np.ndarray:
    """The (n, blocks) block mask as an (n, blocks * block_size) boolean element mask."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    return np.repeat(np.asarray(mask).astype(bool), block_size, axis=1)


def reference_sparse_dot(a, amask, b, omask, c, block_size):
    """``(dot(a * Am, b) + c) * Om`` in float64, Am and Om the expanded block masks."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, m = a.shape[0], b.shape[1]
    am = expand_mask(amask, block_size, a.shape)
    om = expand_mask(omask, block_size, (n, m))
    y = np.where(am, a, 0.0) @ b
    if c is not None:
        y = y + np.asarray(c, dtype=np.float64)
    return np.where(om, y, 0.0)


def reference_sparse_dot_backward(grad_out, a, amask, b, omask, block_size):
    """Gradients ``(da, db, dc)`` of ``sparse_dot`` in float64.

    With G = grad_out masked by Om: da = (G @ b.T) masked by Am, db = (a masked by Am).T @ G,
    dc = the column sums of G.
    """
    g = np.asarray(grad_out, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    am = expand_mask(amask, block_size, a.shape)
    om = expand_mask(omask, block_size, g.shape)
    g = np.where(om, g, 0.0)
    da = np.where(am, g @ b.T, 0.0)
    db = np.where(am, a, 0.0).T @ g
    dc = g.sum(axis=0)
    return da, db, dc
