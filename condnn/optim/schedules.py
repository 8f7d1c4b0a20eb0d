"""Learning-rate schedules: callables ``schedule(step) -> lr``, step = updates done so far.

Any callable of that form works as a learning rate; these are the common ones.
"""
import math
from numbers import Real


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or not math.isfinite(value):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {bound} and finite, got {value}")
    return float(value)


class Schedule:
    """Base class; subclasses implement ``__call__(step) -> lr``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError


class Constant(Schedule):
    """``lr(t) = lr``."""

    def __init__(self, lr: float) -> None:
        self.lr = _positive("lr", lr)

    def __call__(self, step: int) -> float:
        return self.lr

    def __repr__(self) -> str:
        return f"Constant({self.lr})"


class StepDecay(Schedule):
    """``lr(t) = lr * gamma ** floor(t / step_size)``: multiplied by gamma every step_size steps."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.lr = _positive("lr", lr)
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size must be a positive int, got {step_size!r}")
        self.step_size = step_size
        self.gamma = _positive("gamma", gamma)

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)

    def __repr__(self) -> str:
        return f"StepDecay({self.lr}, step_size={self.step_size}, gamma={self.gamma})"


class InverseTimeDecay(Schedule):
    """``lr(t) = lr / (1 + decay_rate * t / decay_steps)``."""

    def __init__(self, lr: float, decay_rate: float, decay_steps: int = 1) -> None:
        self.lr = _positive("lr", lr)
        self.decay_rate = _positive("decay_rate", decay_rate, allow_zero=True)
        self.decay_steps = _positive("decay_steps", decay_steps)

    def __call__(self, step: int) -> float:
        return self.lr / (1 + self.decay_rate * step / self.decay_steps)

    def __repr__(self) -> str:
        return (f"InverseTimeDecay({self.lr}, decay_rate={self.decay_rate}, "
                f"decay_steps={self.decay_steps})")


class CosineDecay(Schedule):
    """``lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * t / total_steps)) / 2`` for
    t < total_steps, then ``min_lr``."""

    def __init__(self, lr: float, total_steps: int, min_lr: float = 0.0) -> None:
        self.lr = _positive("lr", lr)
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        self.total_steps = total_steps
        self.min_lr = _positive("min_lr", min_lr, allow_zero=True)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({min_lr}) must not exceed lr ({lr})")

    def __call__(self, step: int) -> float:
        if step >= self.total_steps:
            return self.min_lr
        cosine = (1 + math.cos(math.pi * step / self.total_steps)) / 2
        return self.min_lr + (self.lr - self.min_lr) * cosine

    def __repr__(self) -> str:
        return f"CosineDecay({self.lr}, total_steps={self.total_steps}, min_lr={self.min_lr})"
