"""``y += alpha * x`` for gradients: one pass over memory where the compiled kernel takes
the arrays (:mod:`condnn.optim._kernels`), NumPy otherwise."""
import numpy as np

from condnn.device import on_gpu
from condnn.optim import _kernels
from condnn.sparse import get_num_threads


def add_scaled(y: np.ndarray, alpha: float, x: np.ndarray) -> None:
    """``y += alpha * x`` in place (x and y of one shape; on the GPU, GPU arrays)."""
    if on_gpu(y):
        from condnn.gpu import training
        training.add_scaled_(y, alpha, x)
    elif _kernels.applies(y, x):
        _kernels.add_scaled(y, alpha, x, get_num_threads())
    else:
        y += y.dtype.type(alpha) * x
