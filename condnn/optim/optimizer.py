"""The optimizer base class: parameter groups, weight decay, clipping and saved state.

An optimizer updates the parameters of one model (or layer) from their gradients::

    opt = SGD(model, lr=0.1, momentum=0.9, groups={"policy": {"lr": 0.01}})
    ...backprop...
    opt.step()          # updates, then zeroes the gradients it used

Groups map a pattern to the hyperparameters that differ from the optimizer's: a pattern
matches a parameter path equal to it, a path below it (``"policy"`` matches
``"policy/W"``) or, when it holds ``*``, ``?`` or ``[``, a shell-style glob
(``"*/b"``).  A parameter belongs to the first group that matches, else to the default.

Weight decay comes in both forms, per group:

* ``weight_decay=wd`` (L2): ``g += wd * p`` before the update, so that the decay goes
  through the momentum and, for Adam, the per-coordinate scaling; the same as adding
  ``wd / 2 * |p|^2`` to the loss.
* ``weight_decay=wd, decoupled=True``: ``p *= 1 - lr * wd`` apart from the gradient step
  (Loshchilov & Hutter's decoupled decay, "AdamW").

Any learning rate may be a schedule: a callable of the number of steps done so far.
"""
import fnmatch
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple

import numpy as np

from condnn.device import check_device, on_gpu, to_device
from condnn.layers.base import Layer
from condnn.optim.clipping import clip_grad_norm
from condnn.optim.kernels import add_scaled
from condnn.optim.schedules import Constant

LearningRate = Callable[[int], float]


def matches(pattern: str, path: str) -> bool:
    """True if the group ``pattern`` selects the parameter ``path`` (see module docstring)."""
    if path == pattern or path.startswith(pattern.rstrip("/") + "/"):
        return True
    return any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(path, pattern)


def to_host_copy(x) -> np.ndarray:
    """A NumPy copy of an array on either device (checkpoints hold host arrays)."""
    return x.copy() if isinstance(x, np.ndarray) else to_device(x, "cpu")


def check_fraction(name: str, value: Any) -> float:
    """``value`` checked to lie in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_non_negative(name: str, value: Any) -> float:
    """``value`` checked to be a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def as_schedule(lr: Any, group: str) -> LearningRate:
    """A number as a constant schedule; a callable as it is."""
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, Real) or not lr > 0:
        raise ValueError(f"lr of group {group!r} must be a positive number or a schedule "
                         f"(a callable of the step), got {lr!r}")
    return Constant(float(lr))


@dataclass
class ParamGroup:
    """The parameters a pattern selected and their hyperparameters."""

    name: str
    hyper: Dict[str, Any]
    paths: List[str] = field(default_factory=list)


class Optimizer:
    """Base class; subclasses set ``defaults`` and implement ``slots_for`` and ``update``.

    Args:
        model: the model or layer whose parameters to train.
        lr: learning rate, a number or a schedule.
        groups: pattern -> hyperparameter overrides (see the module docstring).
        clip_norm: if given, the gradients are scaled so that their global L2 norm (over
            every group) is at most this, before weight decay; the norm before clipping
            is kept in ``grad_norm`` (on the GPU it stays there until read).
        **hyper: the optimizer's hyperparameters (see ``defaults``).
    """

    defaults: ClassVar[Dict[str, Any]] = {"weight_decay": 0.0, "decoupled": False}

    def __init__(self, model: Layer, *, lr: Any,
                 groups: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 clip_norm: Optional[float] = None, **hyper: Any) -> None:
        if not isinstance(model, Layer):
            raise TypeError(f"model must be a condnn Model or Layer, got {type(model).__name__}")
        if clip_norm is not None and (isinstance(clip_norm, bool)
                                      or not isinstance(clip_norm, Real) or not clip_norm > 0):
            raise ValueError(f"clip_norm must be a positive number or None, got {clip_norm!r}")
        self.clip_norm = clip_norm
        base = self._hyper("default", dict(self.defaults), {**hyper, "lr": lr})
        self.groups: List[ParamGroup] = [
            ParamGroup(pattern, self._hyper(pattern, base, dict(overrides)))
            for pattern, overrides in (groups or {}).items()]
        self.groups.append(ParamGroup("default", base))

        self.model = model
        self.params = model.named_params()
        self.grads = model.named_grads()
        for path in self.params:
            group = next((g for g in self.groups[:-1] if matches(g.name, path)), self.groups[-1])
            group.paths.append(path)
        empty = [g.name for g in self.groups[:-1] if not g.paths]
        if empty:
            raise ValueError(f"groups {empty} match no parameter; the parameters are "
                             f"{list(self.params)}")
        # Only parameters with state have an entry (plain SGD keeps none).
        self.slots: Dict[str, Dict[str, np.ndarray]] = {
            path: {name: np.zeros_like(self.params[path]) for name in self.slots_for(g.hyper)}
            for g in self.groups if self.slots_for(g.hyper) for path in g.paths}
        self.step_count = 0
        self._grad_norm: Any = None     # a float, or the GPU's (norm, factor) array

    def _hyper(self, group: str, base: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
        known = set(self.defaults) | {"lr"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no hyperparameter {unknown} "
                            f"(group {group!r}); it has {sorted(known)}")
        hyper = {**base, **overrides}
        hyper["lr"] = as_schedule(hyper.get("lr"), group)
        hyper["weight_decay"] = check_non_negative("weight_decay", hyper["weight_decay"])
        hyper["decoupled"] = bool(hyper["decoupled"])
        self.check_hyper(group, hyper)
        return hyper

    def check_hyper(self, group: str, hyper: Dict[str, Any]) -> None:
        """Validates the optimizer's own hyperparameters (subclasses)."""

    def slots_for(self, hyper: Dict[str, Any]) -> Tuple[str, ...]:
        """The names of the state arrays each parameter of a group keeps."""
        raise NotImplementedError

    def update(self, param: np.ndarray, grad: np.ndarray, slots: Dict[str, np.ndarray],
               hyper: Dict[str, Any], lr: float, t: int) -> Optional[bool]:
        """Updates ``param`` in place; ``grad`` may be used as scratch; t counts from 1.
        Returns True when it has also set ``grad`` to 0 (else :meth:`step` does)."""
        raise NotImplementedError

    def learning_rates(self) -> Dict[str, float]:
        """The learning rate each group will use at the next step."""
        return {g.name: float(g.hyper["lr"](self.step_count)) for g in self.groups}

    def step(self) -> None:
        """Clips, applies weight decay, updates every parameter, zeroes the gradients."""
        if self.clip_norm is not None:
            grads = list(self.grads.values())
            if grads and on_gpu(grads[0]):
                from condnn.gpu import training
                self._grad_norm = training.clip_grad_norm_(grads, self.clip_norm)
            else:
                self._grad_norm = clip_grad_norm(grads, self.clip_norm)
        for group in self.groups:
            hyper = group.hyper
            lr = float(hyper["lr"](self.step_count))
            decay = hyper["weight_decay"]
            for path in group.paths:
                param, grad = self.params[path], self.grads[path]
                if decay and hyper["decoupled"]:
                    param *= param.dtype.type(1 - lr * decay)
                elif decay:
                    add_scaled(grad, decay, param)
                zeroed = self.update(param, grad, self.slots.get(path, {}), hyper, lr,
                                     self.step_count + 1)
                if not zeroed:
                    grad.fill(0)
        self.step_count += 1

    @property
    def grad_norm(self) -> Optional[float]:
        """The gradients' global norm before the last step clipped them (None before any
        clipped step); on the GPU, reading it waits for the device."""
        if self._grad_norm is None or isinstance(self._grad_norm, float):
            return self._grad_norm
        return float(to_device(self._grad_norm, "cpu")[0])

    def to_device(self, device: str) -> "Optimizer":
        """Follows the model to ``device`` (call it after moving the model): takes the
        model's moved parameters and gradients and moves its own state.  Returns self."""
        device = check_device(device)
        params = self.model.named_params()
        if list(params) != list(self.params):
            raise ValueError("the model's parameters changed since the optimizer was built")
        self.params, self.grads = params, self.model.named_grads()
        self.slots = {path: {name: to_device(value, device) for name, value in slots.items()}
                      for path, slots in self.slots.items()}
        return self

    def state_dict(self) -> Dict[str, Any]:
        """``{"type", "step", "slots": {param path: {slot name: array}}}``, arrays copied."""
        return {"type": type(self).__name__, "step": self.step_count,
                "slots": {path: {name: to_host_copy(value) for name, value in slots.items()}
                          for path, slots in self.slots.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output; strict about types, paths and shapes."""
        if state.get("type") != type(self).__name__:
            raise ValueError(f"the state is of a {state.get('type')} optimizer, "
                             f"not {type(self).__name__}")
        slots = state.get("slots", {})
        problems = []
        missing = [p for p in self.slots if p not in slots]
        extra = [p for p in slots if p not in self.slots]
        if missing:
            problems.append(f"missing state of parameters {missing}")
        if extra:
            problems.append(f"state of unknown parameters {extra}")
        for path in self.slots:
            if path not in slots:
                continue
            mine, theirs = self.slots[path], slots[path]
            if set(mine) != set(theirs):
                problems.append(f"{path}: slots {sorted(theirs)}, expected {sorted(mine)}")
                continue
            for name, value in mine.items():
                other = np.asarray(theirs[name])
                if other.shape != value.shape or other.dtype != value.dtype:
                    problems.append(f"{path}/{name}: {other.dtype}{list(other.shape)}, "
                                    f"expected {value.dtype}{list(value.shape)}")
        if problems:
            raise ValueError("optimizer state does not match: " + "; ".join(problems))
        for path, mine in self.slots.items():
            for name, value in mine.items():
                if isinstance(value, np.ndarray):
                    value[...] = slots[path][name]
                else:       # on the GPU
                    value.set(np.ascontiguousarray(slots[path][name], dtype=value.dtype))
        self.step_count = int(state["step"])
