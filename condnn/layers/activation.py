"""Shared checks of the element-wise activation layers."""
from typing import Any

import numpy as np

from condnn.device import on_gpu
from condnn.layers.base import FLOAT_DTYPES


def check_float_array(layer: str, x: Any) -> np.ndarray:
    """Checks that ``x`` is a float32 or float64 array (of any shape; a GPU array too)."""
    if not isinstance(x, np.ndarray) and not on_gpu(x):
        raise TypeError(f"{layer}: x must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: x must have dtype float32 or float64, got {x.dtype}")
    return x
