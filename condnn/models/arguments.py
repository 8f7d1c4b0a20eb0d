"""Checks of the constructor arguments that the block models share."""
from typing import Any, Callable, List, Optional

import numpy as np

from condnn.device import device_mismatch, on_gpu


def check_hidden_blocks(hidden: Any) -> List[List[int]]:
    """``hidden`` as a list of [n_blocks, block_size] pairs, one block size for all layers
    (the block-sparse product takes one block size for its input and output masks)."""
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__len__") or len(hidden) < 1:
        raise ValueError(f"hidden must be a non-empty list of (n_blocks, block_size) pairs, "
                         f"got {hidden!r}")
    pairs = []
    for layer in hidden:
        if isinstance(layer, (str, bytes)) or not hasattr(layer, "__len__") or len(layer) != 2 \
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                           and v >= 1 for v in layer):
            raise ValueError(f"hidden must be a list of (n_blocks, block_size) pairs of "
                             f"positive ints, got the entry {layer!r}")
        pairs.append([int(layer[0]), int(layer[1])])
    sizes = {bs for _, bs in pairs}
    if len(sizes) > 1:
        raise ValueError(f"hidden: every layer must have the same block size (the block-"
                         f"sparse product gates input and output with one block size), got "
                         f"{sorted(sizes)}")
    return pairs


def check_input_mean(input_mean: Any, n_in: int, dtype) -> Optional[np.ndarray]:
    """None, or ``input_mean`` as a finite (n_in,) array of ``dtype``: the mean input that
    a model subtracts from its inputs (centred inputs train much better than, say, images
    of mostly 1s)."""
    if input_mean is None:
        return None
    mean = np.asarray(input_mean, dtype=np.float64)
    if mean.shape != (n_in,) or not np.isfinite(mean).all():
        raise ValueError(f"input_mean must be None or {n_in} finite numbers (n_in), got "
                         f"shape {mean.shape}")
    return mean.astype(dtype)


def centered(x: Any, input_mean: Optional[np.ndarray]) -> Any:
    """x minus the model's mean input (x itself when there is none, or when x is not an
    array: the first layer then says what is wrong with it)."""
    if input_mean is None:
        return x
    x_on_gpu = on_gpu(x)
    if not isinstance(x, np.ndarray) and not x_on_gpu:
        return x
    if x_on_gpu != on_gpu(input_mean):
        raise ValueError(device_mismatch("the model", x, input_mean))
    if len(x.shape) != 2 or x.shape[1] != input_mean.shape[0] or x.dtype != input_mean.dtype:
        return x
    if x_on_gpu:
        from condnn.gpu import training
        return training.sub_row(x, input_mean)
    return x - input_mean


def per_layer(name: str, value: Any, n_layers: int,
              check: Callable[[str, Any], float]) -> List[float]:
    """A number or a list of ``n_layers`` numbers, as a checked list of floats."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_layers
    if len(values) != n_layers:
        raise ValueError(f"{name} must be a number or a list of {n_layers} numbers (one per "
                         f"hidden layer), got {value!r}")
    return [check(name, v) for v in values]


def open_unit(name: str, value: Any) -> float:
    """``value`` checked to lie in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)
