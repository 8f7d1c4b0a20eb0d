"""Dropout: random zeroing of units while training."""
from typing import Dict, Tuple

import numpy as np

from condnn.device import on_gpu, to_device
from condnn.layers.activation import check_float_array
from condnn.layers.base import Backprop, Layer, check_output_grad
from condnn.rng import RngLike, as_generator


def check_rate(name: str, value: float, low_open: bool, high_open: bool) -> float:
    """``value`` checked to lie in the interval from 0 to 1 with the given open ends."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    too_low = value <= 0 if low_open else value < 0
    too_high = value >= 1 if high_open else value > 1
    if too_low or too_high:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


class Dropout(Layer):
    """Inverted dropout: in training ``y = x * keep / (1 - rate)``, ``keep ~ Bernoulli(1 - rate)``
    per entry; in evaluation ``y = x``.  Backprop multiplies dy by the same factor.

    Args:
        rate: the probability of dropping a unit, in [0, 1).
        rng: seed or Generator the masks are drawn from; it is saved in checkpoints (as
            ``<path>/rng``) so that a resumed run draws the same masks.
    """

    runs_on_gpu = True

    def __init__(self, rate: float, rng: RngLike = None) -> None:
        super().__init__()
        self.rate = check_rate("rate", rate, low_open=False, high_open=True)
        self.rng = as_generator(rng)

    def own_rngs(self) -> Dict[str, np.random.Generator]:
        return {"rng": self.rng}

    def forward(self, x: np.ndarray, train: bool) -> Tuple[np.ndarray, Backprop]:
        check_float_array("Dropout", x)
        if not train or self.rate == 0:
            return x, lambda dy: check_output_grad("Dropout", dy, x.shape)
        uniform = self.rng.random(x.shape, dtype=x.dtype)
        if on_gpu(x):
            # The same draws as on the CPU, uploaded: a GPU run drops the units a CPU run
            # drops.
            from condnn.gpu import training
            uniform = to_device(uniform, "gpu")
            y = training.dropout(x, uniform, self.rate)

            def backprop_gpu(dy):
                check_output_grad("Dropout", dy, y.shape)
                return training.dropout(dy, uniform, self.rate)

            return y, backprop_gpu
        keep = uniform >= self.rate
        factor = keep * x.dtype.type(1 / (1 - self.rate))
        y = x * factor

        def backprop(dy: np.ndarray) -> np.ndarray:
            check_output_grad("Dropout", dy, y.shape)
            return dy * factor

        return y, backprop

    def __repr__(self) -> str:
        return f"Dropout(rate={self.rate})"
