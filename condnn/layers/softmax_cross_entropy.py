"""Softmax cross-entropy loss."""
from typing import Callable, NamedTuple, Optional

import numpy as np

from condnn.layers.base import FLOAT_DTYPES


class LossResult(NamedTuple):
    """``loss``: the mean over the batch; ``losses``: (n,) per example; ``backprop``: see
    :func:`softmax_cross_entropy`."""

    loss: float
    losses: np.ndarray
    backprop: Callable[..., np.ndarray]


def _check(logits: np.ndarray, labels: np.ndarray) -> None:
    if not isinstance(logits, np.ndarray) or logits.dtype not in FLOAT_DTYPES:
        raise TypeError("logits must be a float32 or float64 numpy.ndarray, got "
                        f"{getattr(logits, 'dtype', type(logits).__name__)}")
    if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] < 1:
        raise ValueError(f"logits must be 2-D (batch, classes) and non-empty, "
                         f"got shape {logits.shape}")
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
        raise TypeError("labels must be an integer numpy.ndarray, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},) to match logits "
                         f"{logits.shape}, got {labels.shape}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got values from "
                         f"{labels.min()} to {labels.max()}")


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> LossResult:
    """Per example ``loss_i = logsumexp(z_i) - z_i[y_i]`` = -log softmax(z_i)[y_i].

    Subtracting each row's maximum first keeps exp from overflowing, and the log-sum-exp
    form never takes the log of an underflowed probability, so the loss is finite for any
    finite logits.

    Args:
        logits: (n, classes) float array z.
        labels: (n,) integer classes y.

    Returns:
        ``(loss, losses, backprop)``: the mean loss (float), the (n,) per-example losses,
        and ``backprop(d_loss=1.0, d_losses=None) -> dlogits``, the gradient of
        ``d_loss * loss + sum_i d_losses[i] * losses[i]``:
        ``dlogits_i = (softmax(z_i) - onehot(y_i)) * (d_loss / n + d_losses[i])``.

    Example:
        >>> loss, losses, backprop = softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
        >>> round(loss, 4), backprop().shape
        (1.3863, (2, 4))
    """
    _check(logits, labels)
    n = logits.shape[0]
    rows = np.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1)
    losses = np.log(sum_exp) - shifted[rows, labels]
    loss = float(losses.mean(dtype=np.float64))

    def backprop(d_loss: float = 1.0, d_losses: Optional[np.ndarray] = None) -> np.ndarray:
        weights = np.full(n, d_loss / n, dtype=logits.dtype)
        if d_losses is not None:
            if np.shape(d_losses) != (n,):
                raise ValueError(f"d_losses must have shape ({n},), got {np.shape(d_losses)}")
            weights = weights + d_losses
        dlogits = exp / sum_exp[:, None]
        dlogits[rows, labels] -= 1
        dlogits *= weights[:, None]
        return dlogits

    return LossResult(loss, losses, backprop)
