"""Stochastic gradient descent with momentum."""
from typing import Any, ClassVar, Dict, Tuple

import numpy as np

from condnn.device import on_gpu
from condnn.optim import _kernels
from condnn.optim.optimizer import Optimizer, check_fraction
from condnn.sparse import get_num_threads
from condnn.subnormals import flush_subnormals


class SGD(Optimizer):
    """``v = momentum * v + g``; ``p -= lr * v``, or with ``nesterov=True``
    ``p -= lr * (g + momentum * v)`` (the formulation of PyTorch and Sutskever et al.).

    Hyperparameters (per group): ``lr``, ``momentum`` (0: plain SGD, no state),
    ``nesterov``, ``weight_decay``, ``decoupled`` (see :mod:`condnn.optim.optimizer`).
    Results below the smallest normal number of their dtype (p and v) are stored as 0: see
    :mod:`condnn.subnormals` for why.

    Example:
        >>> from condnn.layers import Dense
        >>> fc = Dense(3, 2, rng=0)
        >>> opt = SGD(fc, lr=0.1, momentum=0.9)
        >>> fc.grads["b"][:] = 1.0
        >>> opt.step(); fc.params["b"].tolist(), fc.grads["b"].tolist()
        ([-0.10000000149011612, -0.10000000149011612], [0.0, 0.0])
    """

    defaults: ClassVar[Dict[str, Any]] = {"momentum": 0.0, "nesterov": False,
                                          "weight_decay": 0.0, "decoupled": False}

    def check_hyper(self, group: str, hyper: Dict[str, Any]) -> None:
        hyper["momentum"] = check_fraction("momentum", hyper["momentum"])
        hyper["nesterov"] = bool(hyper["nesterov"])
        if hyper["nesterov"] and hyper["momentum"] == 0:
            raise ValueError(f"nesterov=True needs momentum > 0 (group {group!r})")

    def slots_for(self, hyper: Dict[str, Any]) -> Tuple[str, ...]:
        return ("momentum",) if hyper["momentum"] else ()

    def update(self, param: np.ndarray, grad: np.ndarray, slots: Dict[str, np.ndarray],
               hyper: Dict[str, Any], lr: float, t: int) -> bool:
        momentum = hyper["momentum"]
        if on_gpu(param):
            from condnn.gpu import training
            training.sgd_update_(param, grad, slots.get("momentum"), lr=lr, momentum=momentum,
                                 nesterov=hyper["nesterov"])
            return True
        velocity = slots["momentum"] if momentum else None
        arrays = (param, grad) if velocity is None else (param, grad, velocity)
        if _kernels.applies(*arrays):
            _kernels.sgd_update(param, grad, velocity, lr, momentum, hyper["nesterov"],
                                get_num_threads())
            return True
        scalar = param.dtype.type
        direction = grad
        if momentum:
            velocity *= scalar(momentum)
            velocity += grad
            if hyper["nesterov"]:
                grad += scalar(momentum) * velocity
            else:
                direction = velocity
        param -= scalar(lr) * direction
        for x in (param,) if velocity is None else (param, velocity):
            flush_subnormals(x)     # as the compiled update does
        return False
