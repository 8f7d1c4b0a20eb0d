"""Baselines of the REINFORCE estimator: what is subtracted from each example's cost.

The policy's gradient is estimated by ``mean_i (C_i - b_i) grad log pi(u_i | x_i)``.  Any b_i
that does not depend on the sampled masks u_i leaves the estimate unbiased (because
``E[grad log pi] = 0``); a b_i near the expected cost lowers its variance.  Every baseline
gives the b_i of a batch *before* it learns from that batch's costs, so no example's own
cost moves its baseline.

=====================  ======================================================================
``none``               b = 0
``batch-min``          b = min_i C_i of the batch (the original code's choice; makes every
                       advantage >= 0, and depends on the batch's masks, so slightly biased)
``moving-average``     b = an exponential moving average of the batch mean cost (default)
``learned-linear``     b(x) = x . w + c, fitted to the costs by normalised least mean squares
``learned-scalar``     b = c, fitted the same way
=====================  ======================================================================

A baseline's state is plain JSON (``state_dict`` / ``load_state_dict``), saved in the
trainer's checkpoints, so a resumed run continues with the same baseline bit for bit
(JSON keeps every bit of a float64).
"""
from typing import Any, Dict, Optional

import numpy as np

BASELINES = ("none", "batch-min", "moving-average", "learned-linear", "learned-scalar")


def _check_costs(costs: np.ndarray) -> np.ndarray:
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1 or costs.size < 1:
        raise ValueError(f"costs must be a non-empty 1-D array (one per example), "
                         f"got shape {costs.shape}")
    return costs


class Baseline:
    """Base class: :meth:`values` then :meth:`update`, once per batch."""

    name = ""

    def values(self, x: np.ndarray, costs: np.ndarray) -> np.ndarray:
        """The (n,) baseline of each example of a batch (x (n, D), costs (n,))."""
        raise NotImplementedError

    def update(self, x: np.ndarray, costs: np.ndarray) -> None:
        """Learns from a batch's costs (after :meth:`values`)."""

    def advantages(self, x: np.ndarray, costs: np.ndarray) -> np.ndarray:
        """``C_i - b_i`` (float64, (n,)), then :meth:`update`."""
        costs = _check_costs(costs)
        result = costs - self.values(x, costs)
        self.update(x, costs)
        return result

    def state_dict(self) -> Dict[str, Any]:
        """The state as JSON-serializable values."""
        return {"name": self.name}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output."""
        if state.get("name") != self.name:
            raise ValueError(f"the state is of a {state.get('name')!r} baseline, "
                             f"not {self.name!r}")


class NoBaseline(Baseline):
    """``b = 0``: plain REINFORCE."""

    name = "none"

    def values(self, x: np.ndarray, costs: np.ndarray) -> np.ndarray:
        return np.zeros(len(_check_costs(costs)))


class BatchMinBaseline(Baseline):
    """``b = min_i C_i`` over the batch."""

    name = "batch-min"

    def values(self, x: np.ndarray, costs: np.ndarray) -> np.ndarray:
        costs = _check_costs(costs)
        return np.full(len(costs), costs.min())


class MovingAverageBaseline(Baseline):
    """``b_t = momentum b_{t-1} + (1 - momentum) mean_i C_i``; the first batch's own mean
    is its baseline (there is no earlier estimate)."""

    name = "moving-average"

    def __init__(self, momentum: float = 0.9) -> None:
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.value: Optional[float] = None

    def values(self, x: np.ndarray, costs: np.ndarray) -> np.ndarray:
        costs = _check_costs(costs)
        return np.full(len(costs), costs.mean() if self.value is None else self.value)

    def update(self, x: np.ndarray, costs: np.ndarray) -> None:
        mean = float(_check_costs(costs).mean())
        self.value = mean if self.value is None else \
            self.momentum * self.value + (1 - self.momentum) * mean

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "momentum": self.momentum, "value": self.value}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.momentum, self.value = float(state["momentum"]), state["value"]


class LearnedBaseline(Baseline):
    """``b(x) = x . w + c`` (``linear=True``) or ``b = c``, fitted online to the costs.

    Each batch takes one normalised least-mean-squares step on ``mean_i (b(x_i) - C_i)^2``::

        r_i = b(x_i) - C_i;   s = mean_i |x_i|^2 + 1
        w -= lr * mean_i r_i x_i / s;   c -= lr * mean_i r_i / s

    Dividing by s makes the step independent of the scale of the input, so one ``lr`` in
    (0, 1] suits any data set.  w and c start at 0 and are kept in float64.
    """

    def __init__(self, n_in: int, linear: bool = True, lr: float = 0.1) -> None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= 1:
            raise ValueError(f"lr must be a number in (0, 1], got {lr!r}")
        if isinstance(n_in, bool) or not isinstance(n_in, (int, np.integer)) or n_in < 1:
            raise ValueError(f"n_in must be a positive int, got {n_in!r}")
        self.linear = bool(linear)
        self.name = "learned-linear" if self.linear else "learned-scalar"
        self.lr = float(lr)
        self.w = np.zeros(int(n_in) if self.linear else 0)
        self.c = 0.0

    def _check_x(self, x: np.ndarray, n: int) -> np.ndarray:
        if not self.linear:
            return x
        if not isinstance(x, np.ndarray) or x.shape != (n, len(self.w)):
            raise ValueError(f"x must have shape ({n}, {len(self.w)}), "
                             f"got {getattr(x, 'shape', type(x).__name__)}")
        return x

    def values(self, x: np.ndarray, costs: np.ndarray) -> np.ndarray:
        n = len(_check_costs(costs))
        if not self.linear:
            return np.full(n, self.c)
        return self._check_x(x, n) @ self.w + self.c

    def update(self, x: np.ndarray, costs: np.ndarray) -> None:
        costs = _check_costs(costs)
        residual = self.values(x, costs) - costs
        scale = 1.0
        if self.linear:
            x64 = self._check_x(x, len(costs)).astype(np.float64)
            scale += float(np.einsum("ij,ij->", x64, x64)) / len(costs)
            self.w -= self.lr * (x64.T @ residual) / (len(costs) * scale)
        self.c -= self.lr * float(residual.mean()) / scale

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "lr": self.lr, "w": self.w.tolist(), "c": self.c}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        w = np.asarray(state["w"], dtype=np.float64)
        if w.shape != self.w.shape:
            raise ValueError(f"the saved baseline has {w.size} weights, this one {self.w.size}")
        self.lr, self.w, self.c = float(state["lr"]), w, float(state["c"])


def make_baseline(name: str, n_in: int, *, momentum: float = 0.9, lr: float = 0.1) -> Baseline:
    """The baseline called ``name`` (one of :data:`BASELINES`) for inputs of width n_in."""
    if name == "none":
        return NoBaseline()
    if name == "batch-min":
        return BatchMinBaseline()
    if name == "moving-average":
        return MovingAverageBaseline(momentum)
    if name in ("learned-linear", "learned-scalar"):
        return LearnedBaseline(n_in, linear=name == "learned-linear", lr=lr)
    raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")
