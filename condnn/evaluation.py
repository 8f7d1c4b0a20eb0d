"""Evaluating a block model on a data set: error, loss, activation of each gated layer."""
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from condnn.device import to_device
from condnn.flops import dense_macs, executed_macs
from condnn.layers.softmax_cross_entropy import softmax_cross_entropy


@dataclass
class Evaluation:
    """The result of :func:`evaluate`.

    ``activation``: per gated layer, the fraction of its blocks on, over all examples;
    ``mean_activation``: the fraction of all gated blocks on (1 for a dense model);
    ``flops_fraction``: the multiply-adds the masks call for (policy included) over the
    dense twin's; ``blocks_on``: per gated layer, a (classes, B) array of the fraction of
    each class's examples that switch each block on.
    """

    error: float
    loss: float
    examples: int
    activation: List[float] = field(default_factory=list)
    mean_activation: float = 1.0
    flops_fraction: float = 1.0
    blocks_on: List[np.ndarray] = field(default_factory=list, repr=False)

    def summary(self) -> Dict[str, Any]:
        """The scalar fields as a JSON-ready dict."""
        result = asdict(self)
        result.pop("blocks_on")
        return result


def evaluate(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1000,
             execution: str = "sparse", mode: Optional[str] = None,
             classes: Optional[int] = None) -> Evaluation:
    """Runs ``model.trace(x, train=False)`` over (x, y) in batches and summarises it; x and y
    are host arrays whatever the model's device (a model on the GPU gets each batch copied
    there).

    Args:
        model: a model of :mod:`condnn.models`.
        x: (N, D) inputs; y: (N,) labels.
        batch_size: examples per pass (the result does not depend on it in threshold mode).
        execution: "sparse", "dense" or "all_on".
        mode: the policies' evaluation mode ("threshold" or "sample"), else the model's.
        classes: the number of classes for ``blocks_on`` (default: the model's outputs).
    """
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of examples, got "
                         f"{len(x)} and {len(y)}")
    classes = classes or model.n_classes
    products = model.products()
    total_loss, errors, macs = 0.0, 0, 0
    on_counts: List[np.ndarray] = []
    blocks_seen: List[int] = []
    per_class = np.bincount(y, minlength=classes).astype(np.float64)
    device = getattr(model, "device", "cpu")
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        trace = model.trace(to_device(xb, device), False, execution=execution, mode=mode)
        if device != "cpu":       # a model on the GPU: its outputs, read back per batch
            trace = trace._replace(logits=to_device(trace.logits, "cpu"),
                                   masks=[to_device(m, "cpu") for m in trace.masks])
        result = softmax_cross_entropy(trace.logits, yb)
        total_loss += result.loss * len(yb)
        errors += int((trace.logits.argmax(axis=1) != yb).sum())
        macs += executed_macs(products, trace.masks, len(yb), execution != "all_on")
        for index, mask in enumerate(trace.masks):
            if len(on_counts) <= index:
                width = mask.shape[1] if mask is not None else 1
                on_counts.append(np.zeros((classes, width)))
                blocks_seen.append(width)
            one_hot = np.eye(classes)[yb]                        # (n, classes)
            on_counts[index] += (one_hot.sum(axis=0)[:, None] if mask is None
                                 else one_hot.T @ mask)
    n = len(y)
    activation = [float(counts.sum() / (n * counts.shape[1])) for counts in on_counts]
    total_blocks = sum(blocks_seen)
    mean_activation = (sum(a * b for a, b in zip(activation, blocks_seen)) / total_blocks
                       if total_blocks else 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        blocks_on = [counts / per_class[:, None] for counts in on_counts]
    return Evaluation(error=errors / n, loss=total_loss / n, examples=n,
                      activation=activation, mean_activation=float(mean_activation),
                      flops_fraction=macs / (n * dense_macs(products)), blocks_on=blocks_on)
