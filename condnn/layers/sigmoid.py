"""Logistic sigmoid."""
from typing import Tuple

import numpy as np

from condnn.layers.activation import check_float_array
from condnn.layers.base import Backprop, Layer, check_output_grad


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``, computed as ``(1 + tanh(x / 2)) / 2``, which cannot overflow."""
    return 0.5 * (1 + np.tanh(0.5 * x))


class Sigmoid(Layer):
    """``y = sigmoid(x)``; backprop ``dx = dy * y * (1 - y)``."""

    def forward(self, x: np.ndarray, train: bool) -> Tuple[np.ndarray, Backprop]:
        check_float_array("Sigmoid", x)
        y = sigmoid(x)

        def backprop(dy: np.ndarray) -> np.ndarray:
            check_output_grad("Sigmoid", dy, y.shape)
            return dy * y * (1 - y)

        return y, backprop
