"""Figures of a trained conditional network (matplotlib, an optional dependency).

* ``activation_per_class.png``: per gated layer, a (classes x blocks) map of the fraction
  of each class's test examples that switch each block on;
* ``activation_histogram.png``: per gated layer, the histogram of the policy's
  probabilities p and of the number of blocks each example switches on;
* ``learning_curves.png``: training loss, validation error and mean activation per epoch,
  from the run's JSON-lines log.
"""
import os
from typing import Any, Dict, List, Sequence

import numpy as np


class MissingDependency(RuntimeError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency("plotting needs matplotlib: pip install matplotlib "
                                "(or pip install 'condnn[plot]')") from None
    matplotlib.use("Agg")     # files only: no display is needed or wanted
    import matplotlib.pyplot as plt
    return plt


def plot_activation_per_class(blocks_on: Sequence[np.ndarray], path: str) -> str:
    """Writes the per-class block activation maps; ``blocks_on[l]`` is (classes, B_l)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(blocks_on), figsize=(4.5 * len(blocks_on), 3.6),
                                squeeze=False)
    for index, (axis, share) in enumerate(zip(axes[0], blocks_on)):
        image = axis.imshow(share, aspect="auto", vmin=0, vmax=1, cmap="viridis",
                            interpolation="nearest")
        axis.set_title(f"layer {index + 1}: fraction of examples with the block on")
        axis.set_xlabel("block")
        axis.set_ylabel("class")
        axis.set_yticks(range(share.shape[0]))
        figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_activation_histogram(probs: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                              path: str) -> str:
    """Writes the histograms of p (per layer, (N, B_l) arrays) and of the blocks on per
    example (masks (N, B_l))."""
    plt = _pyplot()
    figure, axes = plt.subplots(2, len(probs), figsize=(4.5 * len(probs), 6.4), squeeze=False)
    for index, (prob, mask) in enumerate(zip(probs, masks)):
        top, bottom = axes[0][index], axes[1][index]
        top.hist(prob.ravel(), bins=50, range=(0, 1), color="tab:blue")
        top.set_yscale("log")
        top.set_title(f"layer {index + 1}: policy probabilities p")
        top.set_xlabel("p")
        top.set_ylabel("count (log)")
        on = mask.sum(axis=1)
        bottom.hist(on, bins=np.arange(mask.shape[1] + 2) - 0.5, color="tab:orange")
        bottom.set_title(f"layer {index + 1}: blocks on per example "
                         f"(mean {on.mean():.2f} of {mask.shape[1]})")
        bottom.set_xlabel("blocks on")
        bottom.set_ylabel("examples")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_learning_curves(records: List[Dict[str, Any]], path: str) -> str:
    """Writes training loss, validation error and activation against the epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in records]
    figure, (loss_axis, error_axis, act_axis) = plt.subplots(1, 3, figsize=(14, 3.8))
    loss_axis.plot(epochs, [r["train_loss"] for r in records], marker="o")
    loss_axis.set_title("training loss (NLL)")
    loss_axis.set_yscale("log")
    error_axis.plot(epochs, [100 * r["val_error"] for r in records], marker="o",
                    color="tab:red")
    error_axis.set_title("validation error (%)")
    layers = len(records[0].get("mean_activation", [])) if records else 0
    for index in range(layers):
        act_axis.plot(epochs, [r["mean_activation"][index] for r in records], marker="o",
                      label=f"layer {index + 1}")
    if layers:
        act_axis.legend()
    act_axis.set_title("mean activation (validation)")
    for axis in (loss_axis, error_axis, act_axis):
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def collect_policy_outputs(model, x: np.ndarray, batch_size: int = 1000):
    """The evaluation masks and probabilities of every gated layer over x, concatenated."""
    masks: List[List[np.ndarray]] = []
    probs: List[List[np.ndarray]] = []
    for start in range(0, len(x), batch_size):
        trace = model.trace(x[start:start + batch_size], False)
        for index, (mask, prob) in enumerate(zip(trace.masks, trace.probs)):
            if len(masks) <= index:
                masks.append([])
                probs.append([])
            masks[index].append(mask)
            probs[index].append(prob)
    return ([np.concatenate(m) for m in masks], [np.concatenate(p) for p in probs])


def write_figures(model, x: np.ndarray, y: np.ndarray, records: List[Dict[str, Any]],
                  out_dir: str) -> List[str]:
    """Writes the three figures of the module docstring into out_dir; returns their
    paths.  A model without a policy gets only the learning curves; no records, none."""
    from condnn.evaluation import evaluate
    _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    written = []
    if getattr(model, "gates", None):
        result = evaluate(model, x, y)
        written.append(plot_activation_per_class(
            result.blocks_on, os.path.join(out_dir, "activation_per_class.png")))
        masks, probs = collect_policy_outputs(model, x)
        written.append(plot_activation_histogram(
            probs, masks, os.path.join(out_dir, "activation_histogram.png")))
    if records:
        written.append(plot_learning_curves(records, os.path.join(out_dir,
                                                                  "learning_curves.png")))
    return written
