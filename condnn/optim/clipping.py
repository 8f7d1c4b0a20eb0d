"""Gradient-norm clipping."""
import math
from typing import Iterable

import numpy as np


def global_norm(arrays: Iterable[np.ndarray]) -> float:
    """``sqrt(sum of the squares of every entry of every array)``."""
    total = 0.0
    for array in arrays:
        flat = array.ravel()
        total += float(np.dot(flat, flat))
    return math.sqrt(total)


def clip_grad_norm(grads: Iterable[np.ndarray], max_norm: float) -> float:
    """Scales the gradients in place so that their global L2 norm is at most ``max_norm``.

    All arrays are scaled by the same factor ``max_norm / norm`` (when norm > max_norm),
    which keeps the direction of the update.  Returns the norm before clipping.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    grads = list(grads)
    norm = global_norm(grads)
    if norm > max_norm:
        scale = max_norm / norm
        for grad in grads:
            grad *= grad.dtype.type(scale)
    return norm
