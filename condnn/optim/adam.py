"""Adam."""
from typing import Any, ClassVar, Dict, Tuple

import numpy as np

from condnn.device import on_gpu
from condnn.optim import _kernels
from condnn.optim.optimizer import Optimizer, check_fraction
from condnn.subnormals import flush_subnormals
from condnn.sparse import get_num_threads


class Adam(Optimizer):
    """Adam (Kingma & Ba), with bias correction:

        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    Results below the smallest normal number of their dtype (p, m and v) are stored as 0:
    see :mod:`condnn.subnormals` for why.

    Hyperparameters (per group): ``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``,
    ``decoupled`` (True gives AdamW; see :mod:`condnn.optim.optimizer`).
    """

    defaults: ClassVar[Dict[str, Any]] = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                          "weight_decay": 0.0, "decoupled": False}

    def check_hyper(self, group: str, hyper: Dict[str, Any]) -> None:
        hyper["beta1"] = check_fraction("beta1", hyper["beta1"])
        hyper["beta2"] = check_fraction("beta2", hyper["beta2"])
        if not isinstance(hyper["eps"], (int, float)) or not hyper["eps"] > 0:
            raise ValueError(f"eps must be a positive number, got {hyper['eps']!r}")
        hyper["eps"] = float(hyper["eps"])

    def slots_for(self, hyper: Dict[str, Any]) -> Tuple[str, ...]:
        return ("m", "v")

    def update(self, param: np.ndarray, grad: np.ndarray, slots: Dict[str, np.ndarray],
               hyper: Dict[str, Any], lr: float, t: int) -> bool:
        beta1, beta2 = hyper["beta1"], hyper["beta2"]
        m, v = slots["m"], slots["v"]
        if on_gpu(param):
            from condnn.gpu import training
            training.adam_update_(param, grad, m, v, lr=lr, t=t, beta1=beta1, beta2=beta2,
                                  eps=hyper["eps"])
            return True
        if _kernels.applies(param, grad, m, v):
            # One pass over memory instead of ten; it also sets grad to 0.
            _kernels.adam_update(param, grad, m, v, beta1, beta2, hyper["eps"],
                                 lr / (1 - beta1 ** t), 1 / np.sqrt(1 - beta2 ** t),
                                 get_num_threads())
            return True
        scalar = param.dtype.type
        m *= scalar(beta1)
        m += scalar(1 - beta1) * grad
        v *= scalar(beta2)
        grad *= grad
        v += scalar(1 - beta2) * grad
        # grad is scratch from here on: it becomes the denominator, then the step.
        denominator = np.sqrt(v, out=grad)
        denominator *= scalar(1 / np.sqrt(1 - beta2 ** t))
        denominator += scalar(hyper["eps"])
        step = np.divide(m, denominator, out=grad)
        step *= scalar(lr / (1 - beta1 ** t))
        param -= step
        for x in (param, m, v):     # as the compiled update does: no subnormal numbers
            flush_subnormals(x)
        return False
