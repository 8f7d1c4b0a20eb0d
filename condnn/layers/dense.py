"""Fully connected layer."""
from typing import Optional, Tuple

import numpy as np

from condnn.device import check_same_device, on_gpu
from condnn.initializers import Initializer, glorot_uniform
from condnn.layers.base import (Backprop, Layer, check_input, check_output_grad, check_size,
                                float_dtype)
from condnn.rng import RngLike


class Dense(Layer):
    """``y = x @ W + b``.

    Shapes: x (n, n_in), W (n_in, n_out), b (n_out,), y (n, n_out).

    Backprop, for dy of shape (n, n_out): ``dW += x.T @ dy``, ``db += sum_i dy[i]``,
    returns ``dx = dy @ W.T``.

    On the GPU (after ``to_gpu``) both passes are cuBLAS products, through the unmasked
    variant of :func:`condnn.gpu.sparse_dot` and its backward.

    :meth:`freeze` fixes the layer for evaluation (as :func:`condnn.models.for_inference`
    does for a copy of a model): its parameters become read-only and training it raises.

    Args:
        n_in, n_out: input and output widths.
        init: the initializer of W (b starts at 0), e.g. :func:`condnn.initializers.he_normal`
            for ReLU layers.
        rng: seed or Generator for ``init``.
        dtype: float32 (default) or float64 (for gradient checks).
        input_grad: False skips computing dx (backprop returns None), which saves one
            matrix product when x is the data rather than another layer's output.

    Example:
        >>> fc = Dense(3, 2, rng=0)
        >>> y, backprop = fc.forward(np.ones((4, 3), np.float32), train=True)
        >>> y.shape, backprop(np.ones_like(y)).shape
        ((4, 2), (4, 3))
    """

    runs_on_gpu = True

    def __init__(self, n_in: int, n_out: int, *, init: Initializer = glorot_uniform,
                 rng: RngLike = None, dtype=np.float32, input_grad: bool = True) -> None:
        super().__init__()
        self.n_in = check_size("n_in", n_in)
        self.n_out = check_size("n_out", n_out)
        self.dtype = float_dtype(dtype)
        self.input_grad = bool(input_grad)
        self.add_param("W", np.asarray(init((self.n_in, self.n_out), rng, self.dtype),
                                       dtype=self.dtype))
        self.add_param("b", np.zeros(self.n_out, dtype=self.dtype))
        self.frozen = False

    def freeze(self) -> None:
        """Fixes the parameters for evaluation: they become read-only and training the
        layer is an error (:func:`condnn.models.for_inference` freezes a copy of a
        model)."""
        if on_gpu(self.params["W"]):
            raise ValueError("Dense.freeze: the layer is on the GPU; freeze a copy of it on "
                             "the CPU (to_cpu)")
        for value in self.params.values():
            value.flags.writeable = False
        self.frozen = True

    def check_movable(self, device: str) -> None:
        super().check_movable(device)
        if device == "gpu" and self.frozen:
            raise ValueError("Dense: a layer frozen for evaluation (freeze / for_inference) "
                             "stays on the CPU; move the model it was copied from instead")

    def forward(self, x: np.ndarray, train: bool) -> Tuple[np.ndarray, Backprop]:
        if train and self.frozen:
            raise RuntimeError("Dense: this layer is frozen for evaluation (freeze / "
                               "for_inference); train the model it was copied from")
        check_input("Dense", x, self.n_in, self.dtype)
        W, b = self.params["W"], self.params["b"]
        check_same_device("Dense", x, W)
        if on_gpu(x):
            return self._forward_gpu(x, W, b)
        y = x @ W
        y += b

        def backprop(dy: np.ndarray) -> Optional[np.ndarray]:
            check_output_grad("Dense", dy, y.shape)
            self.grads["W"] += x.T @ dy
            self.grads["b"] += dy.sum(axis=0)
            return dy @ W.T if self.input_grad else None

        return y, backprop

    def _forward_gpu(self, x, W, b) -> Tuple[object, Backprop]:
        from condnn import gpu
        y = gpu.sparse_dot(x, None, W, None, b, 1)

        def backprop(dy):
            check_output_grad("Dense", dy, y.shape)
            # The backward always computes dx too; for a first layer (input_grad False) it
            # is one small product more, not worth a kernel plan of its own.
            dx, dW, db = gpu.sparse_dot_backward(dy, x, None, W, None, 1)
            self.grads["W"] += dW
            self.grads["b"] += db
            return dx if self.input_grad else None

        return y, backprop

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, dtype={self.dtype})"
