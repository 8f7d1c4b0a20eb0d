"""Hyperbolic tangent."""
from typing import Tuple

import numpy as np

from condnn.layers.activation import check_float_array
from condnn.layers.base import Backprop, Layer, check_output_grad


class Tanh(Layer):
    """``y = tanh(x)``; backprop ``dx = dy * (1 - y^2)``."""

    def forward(self, x: np.ndarray, train: bool) -> Tuple[np.ndarray, Backprop]:
        check_float_array("Tanh", x)
        y = np.tanh(x)

        def backprop(dy: np.ndarray) -> np.ndarray:
            check_output_grad("Tanh", dy, y.shape)
            return dy * (1 - y * y)

        return y, backprop
