"""The policy's regularizers and its log-likelihood, each with its gradient.

For probabilities ``p`` of shape (n, B) (n examples, B blocks of one layer) and a target
activation rate ``tau``:

* ``L_b = sum_j | mean_i p_ij - tau |``  -- every block is used by about tau of the batch;
* ``L_e = mean_i | mean_j p_ij - tau |`` -- every example uses about tau of the blocks;
* ``L_v = - sum_j var_i(p_ij)``          -- the policy depends on the input (a constant
  policy has L_v = 0, a policy of 0/1 decisions the lowest L_v);
* ``log pi(u_i | p_i) = sum_j u_ij log p_ij + (1 - u_ij) log(1 - p_ij)`` for a mask u.

|.| has a kink at 0; its gradient there is taken as 0 (a subgradient).  Every function
returns ``(value, dprob)`` with ``dprob`` the gradient of the value with respect to ``p``,
of the shape and dtype of ``p``.
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np


def _check_prob(prob: np.ndarray) -> np.ndarray:
    if not isinstance(prob, np.ndarray) or prob.ndim != 2 or prob.dtype.kind != "f":
        raise TypeError(f"prob must be a 2-D float array (examples, blocks), got "
                        f"{getattr(prob, 'shape', type(prob).__name__)}")
    if prob.shape[0] < 1 or prob.shape[1] < 1:
        raise ValueError(f"prob must be non-empty, got shape {prob.shape}")
    return prob


def balance_penalty(prob: np.ndarray, tau: float) -> Tuple[float, np.ndarray]:
    """``L_b = sum_j |m_j - tau|``, ``m_j = mean_i p_ij``; ``dL_b/dp_ij = sign(m_j - tau) / n``."""
    _check_prob(prob)
    n = prob.shape[0]
    gap = prob.mean(axis=0) - tau
    dprob = np.broadcast_to((np.sign(gap) / n).astype(prob.dtype), prob.shape).copy()
    return float(np.abs(gap).sum()), dprob


def example_penalty(prob: np.ndarray, tau: float) -> Tuple[float, np.ndarray]:
    """``L_e = mean_i |e_i - tau|``, ``e_i = mean_j p_ij``;
    ``dL_e/dp_ij = sign(e_i - tau) / (n B)``."""
    _check_prob(prob)
    n, blocks = prob.shape
    gap = prob.mean(axis=1) - tau
    dprob = np.broadcast_to((np.sign(gap) / (n * blocks)).astype(prob.dtype)[:, None],
                            prob.shape).copy()
    return float(np.abs(gap).mean()), dprob


def variance_penalty(prob: np.ndarray) -> Tuple[float, np.ndarray]:
    """``L_v = -sum_j mean_i (p_ij - m_j)^2`` (the biased variance over the batch);
    ``dL_v/dp_ij = -2 (p_ij - m_j) / n`` (the terms through m_j sum to zero)."""
    _check_prob(prob)
    n = prob.shape[0]
    centred = prob - prob.mean(axis=0)
    return -float((centred * centred).mean(axis=0).sum()), centred * prob.dtype.type(-2 / n)


def log_likelihood(prob: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per example ``log pi(u_i) = sum_j u_ij log p_ij + (1 - u_ij) log(1 - p_ij)``.

    Args:
        prob: (n, B) probabilities strictly inside (0, 1).
        mask: (n, B) of 0/1, the decisions u.

    Returns:
        ``(log_pi, dlog_pi)``: the (n,) log-likelihoods and the (n, B) derivatives
        ``d log pi(u_i) / dp_ij = u_ij / p_ij - (1 - u_ij) / (1 - p_ij)`` (of example i's own
        term; the other examples' terms do not depend on p_ij).
    """
    _check_prob(prob)
    if mask.shape != prob.shape:
        raise ValueError(f"mask must have the shape of prob {prob.shape}, got {mask.shape}")
    on = mask.astype(bool)
    log_pi = np.where(on, np.log(prob), np.log1p(-prob)).sum(axis=1)
    dlog_pi = np.where(on, 1 / prob, -1 / (1 - prob)).astype(prob.dtype, copy=False)
    return log_pi, dlog_pi


@dataclass(frozen=True)
class PolicyPenalty:
    """The coefficients of the policy's terms in the objective.

    The penalty of one gate with target ``tau`` is
    ``lambda_s (L_b + L_e) + lambda_v L_v + lambda_l2 |Z|^2``.
    """

    lambda_s: float = 0.0
    lambda_v: float = 0.0
    lambda_l2: float = 0.0

    def __post_init__(self) -> None:
        for name in ("lambda_s", "lambda_v", "lambda_l2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def value_and_grad(self, prob: np.ndarray, tau: float) -> Tuple[float, np.ndarray]:
        """``lambda_s (L_b + L_e) + lambda_v L_v`` at ``prob`` and its gradient
        (the L2 term is a function of Z, not of p: the gate adds it)."""
        total, dprob = 0.0, np.zeros_like(prob)
        if self.lambda_s:
            for term in (balance_penalty, example_penalty):
                value, grad = term(prob, tau)
                total += self.lambda_s * value
                dprob += prob.dtype.type(self.lambda_s) * grad
        if self.lambda_v:
            value, grad = variance_penalty(prob)
            total += self.lambda_v * value
            dprob += prob.dtype.type(self.lambda_v) * grad
        return total, dprob
