"""Rectified linear unit."""
from typing import Tuple

import numpy as np

from condnn.layers.activation import check_float_array
from condnn.layers.base import Backprop, Layer, check_output_grad


class ReLU(Layer):
    """``y = max(x, 0)``; backprop ``dx = dy * [x > 0]`` (the subgradient 0 at x = 0)."""

    def forward(self, x: np.ndarray, train: bool) -> Tuple[np.ndarray, Backprop]:
        check_float_array("ReLU", x)
        y = np.maximum(x, 0)

        def backprop(dy: np.ndarray) -> np.ndarray:
            check_output_grad("ReLU", dy, y.shape)
            return dy * (x > 0)

        return y, backprop
