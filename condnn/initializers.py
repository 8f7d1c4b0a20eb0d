"""Weight initializers: seeded functions ``init(shape, rng, dtype) -> array``.

For a weight matrix of shape (n_in, n_out):

* :func:`glorot_uniform`: U(-a, a) with a = sqrt(6 / (n_in + n_out)), which keeps the
  variance of activations and gradients about constant through tanh / sigmoid layers
  (Glorot & Bengio, 2010);
* :func:`he_normal`: N(0, 2 / n_in), the same for ReLU layers, which zero half their inputs
  (He et al., 2015).
"""
from typing import Callable, Tuple

import numpy as np

from condnn.rng import RngLike, as_generator

Initializer = Callable[[Tuple[int, ...], RngLike, np.dtype], np.ndarray]


def _fans(shape: Tuple[int, ...]) -> Tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (n_in, n_out) with both at least 1, got {shape}")
    return shape[0], shape[1]


def glorot_uniform(shape: Tuple[int, ...], rng: RngLike = None,
                   dtype: np.dtype = np.float32) -> np.ndarray:
    """Glorot (Xavier) uniform: U(-a, a), a = sqrt(6 / (n_in + n_out)).

    Example:
        >>> w = glorot_uniform((784, 256), rng=0)
        >>> bool(abs(w).max() <= (6 / (784 + 256)) ** 0.5)
        True
    """
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return as_generator(rng).uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape: Tuple[int, ...], rng: RngLike = None,
              dtype: np.dtype = np.float32) -> np.ndarray:
    """He (Kaiming) normal: N(0, std^2), std = sqrt(2 / n_in)."""
    fan_in, _ = _fans(shape)
    std = np.sqrt(2.0 / fan_in)
    return (std * as_generator(rng).standard_normal(size=shape)).astype(dtype)
