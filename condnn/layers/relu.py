"""Rectified linear unit."""
from typing import Tuple

import numpy as np

from condnn.device import on_gpu
from condnn.layers.activation import check_float_array
from condnn.layers.base import Backprop, Layer, check_output_grad


class ReLU(Layer):
    """``y = max(x, 0)``; backprop ``dx = dy * [x > 0]`` (the subgradient 0 at x = 0)."""

    runs_on_gpu = True

    def forward(self, x: np.ndarray, train: bool) -> Tuple[np.ndarray, Backprop]:
        check_float_array("ReLU", x)
        if on_gpu(x):
            from condnn.gpu import training
            y_gpu = training.relu(x)

            def backprop_gpu(dy):
                check_output_grad("ReLU", dy, y_gpu.shape)
                return training.relu_grad(dy, y_gpu)     # y > 0 exactly where x > 0

            return y_gpu, backprop_gpu
        y = np.maximum(x, 0)

        def backprop(dy: np.ndarray) -> np.ndarray:
            check_output_grad("ReLU", dy, y.shape)
            return dy * (x > 0)

        return y, backprop
