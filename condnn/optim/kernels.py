"""``y += alpha * x`` for gradients: one pass over memory where the compiled kernel takes
the arrays (:mod:`condnn.optim._kernels`), NumPy otherwise."""
import numpy as np

from condnn.device import on_gpu
from condnn.optim import _kernels
from condnn.sparse import get_num_threads
from condnn.subnormals import flush_subnormals


def add_scaled(y: np.ndarray, alpha: float, x: np.ndarray) -> None:
    """``y += alpha * x`` in place (x and y of one shape; on the GPU, GPU arrays).

    On the CPU a term ``alpha * x[i]`` that would be subnormal is taken as 0 and a
    subnormal result is stored as 0 (see :mod:`condnn.subnormals`): the L2 gradients of
    the weights that the penalty decays towards 0 would otherwise be subnormal."""
    if on_gpu(y):
        from condnn.gpu import training
        training.add_scaled_(y, alpha, x)
    elif _kernels.applies(y, x):
        _kernels.add_scaled(y, alpha, x, get_num_threads())
    else:
        alpha = y.dtype.type(alpha)
        limit = np.finfo(y.dtype).tiny / abs(alpha) if alpha != 0 else 0
        y += np.where(np.abs(x) < limit, 0, alpha * x).astype(y.dtype, copy=False)
        flush_subnormals(y)
