"""Numeric gradient checks: hand-written gradients against centred finite differences.

For an array ``a`` of a scalar function ``f``, the numeric derivative along a direction d is

    (f(a + h d) - f(a - h d)) / (2 h)

with d each unit vector in turn for small arrays (element by element) and random unit
directions for large ones, where it is compared with ``<grad, d>``.  A probe passes when
``|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)``.

Kinks (ReLU at 0, a hard threshold) make finite differences meaningless where the step
crosses them.  A probe is skipped (for directions: redrawn) when the one-sided slopes
``(f(a + h d) - f(a)) / h`` and ``(f(a) - f(a - h d)) / h`` disagree by more than
``kink_tol`` of their size, which a smooth function never does for small h, or when the
caller's ``near_kink(name, direction)`` predicate says so.  Checks run in float64 only: in
float32 the rounding error of f swamps the differences.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from condnn.layers.base import Layer
from condnn.rng import RngLike, as_generator


class GradcheckError(AssertionError):
    """A gradient disagrees with its finite-difference estimate (the message is the report)."""


@dataclass
class Probe:
    """One comparison: the derivative of f along one direction in one array."""

    array: str
    where: str
    analytic: float
    numeric: float
    allowed: float

    @property
    def error(self) -> float:
        return abs(self.analytic - self.numeric)

    @property
    def relative_error(self) -> float:
        scale = max(abs(self.analytic), abs(self.numeric))
        return self.error / scale if scale else 0.0

    @property
    def passed(self) -> bool:
        return self.error <= self.allowed

    def __str__(self) -> str:
        return (f"{self.array}{self.where}: analytic {self.analytic:.10g}, numeric "
                f"{self.numeric:.10g}, relative error {self.relative_error:.3g}")


@dataclass
class ArrayReport:
    """The probes of one array: how many were checked or skipped, and the worst one."""

    name: str
    shape: Tuple[int, ...]
    mode: str
    checked: int = 0
    skipped: int = 0
    failed: int = 0
    worst: Optional[Probe] = None

    def add(self, probe: Probe) -> None:
        self.checked += 1
        self.failed += not probe.passed
        if self.worst is None or _badness(probe) > _badness(self.worst):
            self.worst = probe


def _badness(probe: Probe) -> float:
    if probe.allowed:
        return probe.error / probe.allowed
    return np.inf if probe.error > 0 else 0.0


@dataclass
class GradcheckReport:
    """The result of :func:`check_gradients`; ``str(report)`` is a readable table."""

    arrays: Dict[str, ArrayReport] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and all(r.failed == 0 for r in self.arrays.values())

    @property
    def worst(self) -> Optional[Probe]:
        """The probe that came nearest to failing (or failed by most)."""
        probes = [r.worst for r in self.arrays.values() if r.worst is not None]
        return max(probes, key=_badness) if probes else None

    def __str__(self) -> str:
        lines = ["gradient check " + ("passed" if self.passed else "FAILED")]
        for report in self.arrays.values():
            worst = f"; worst {report.worst}" if report.worst else ""
            lines.append(f"  {report.name} {report.shape} ({report.mode}): {report.checked} "
                         f"checked, {report.failed} failed, {report.skipped} skipped at kinks"
                         f"{worst}")
        lines += [f"  problem: {problem}" for problem in self.problems]
        if self.worst is not None:
            lines.append(f"  worst overall: {self.worst}")
        return "\n".join(lines)


def _directions(array: np.ndarray, max_elementwise: int, n_directions: int,
                rng: np.random.Generator) -> Iterator[Tuple[str, np.ndarray]]:
    """Unit perturbations of ``array``: every element, or random directions (unending)."""
    if array.size <= max_elementwise:
        for index in np.ndindex(array.shape):
            direction = np.zeros(array.shape)
            direction[index] = 1.0
            yield f"[{', '.join(map(str, index))}]", direction
        return
    count = 0
    while True:
        direction = rng.standard_normal(array.shape)
        direction /= np.linalg.norm(direction)
        yield f" direction {count}", direction
        count += 1


def check_gradients(f: Callable[[], float], wrt: Mapping[str, np.ndarray],
                    grads: Mapping[str, np.ndarray], *, eps: float = 1e-6,
                    rtol: float = 1e-5, atol: Optional[float] = None,
                    max_elementwise: int = 256, n_directions: int = 8,
                    near_kink: Optional[Callable[[str, np.ndarray], bool]] = None,
                    kink_tol: float = 1e-3,
                    max_skipped: float = 0.5, rng: RngLike = 0,
                    raise_on_failure: bool = True) -> GradcheckReport:
    """Compares ``grads`` with finite differences of ``f`` with respect to ``wrt``.

    Args:
        f: computes the scalar from the current contents of the arrays in ``wrt``, which
            are perturbed in place during the check and restored bit for bit after.
        wrt: name -> float64 array.
        grads: name -> the hand-written gradient of f, same shape as ``wrt[name]``.
        eps: the finite-difference step h.
        rtol, atol: the tolerance; atol defaults to 100 float64 epsilons of |f| / h,
            the size of the rounding error of the differences.
        max_elementwise: arrays up to this size are checked element by element,
            larger ones along ``n_directions`` random unit directions.
        near_kink: optional predicate ``near_kink(name, direction)``, called before each
            probe with the array's name and the probe's unit direction (same shape as the
            array); True skips the probe.  E.g. for ReLU inputs ``a``:
            ``lambda name, d: bool(np.any(np.abs(a[d != 0]) < 1e-4))``.
        kink_tol: relative disagreement of the one-sided slopes that marks a kink.
        max_skipped: the largest fraction of an array's probes that may be skipped.
        rng: seed or Generator of the random directions.
        raise_on_failure: raise :class:`GradcheckError` (else return the failing report).

    Returns:
        The :class:`GradcheckReport`.
    """
    for name, array in wrt.items():
        if not isinstance(array, np.ndarray) or array.dtype != np.float64:
            raise TypeError(f"gradient checks need float64 arrays: wrt[{name!r}] is "
                            f"{getattr(array, 'dtype', type(array).__name__)}; build the "
                            f"layer with dtype=np.float64")
        grad = grads.get(name)
        if grad is None or np.shape(grad) != array.shape:
            raise ValueError(f"grads[{name!r}] must have shape {array.shape}, got "
                             f"{None if grad is None else np.shape(grad)}")
    generator = as_generator(rng)
    f0 = float(f())
    if not np.isfinite(f0):
        raise ValueError(f"f() is not finite: {f0}")
    if atol is None:
        atol = 100 * np.finfo(np.float64).eps * max(1.0, abs(f0)) / eps
    report = GradcheckReport()
    for name, array in wrt.items():
        grad = np.asarray(grads[name], dtype=np.float64)
        elementwise = array.size <= max_elementwise
        wanted = array.size if elementwise else n_directions
        array_report = ArrayReport(name, array.shape, "elementwise" if elementwise
                                   else f"{n_directions} random directions")
        report.arrays[name] = array_report
        original = array.copy()
        attempts = 0
        for where, direction in _directions(array, max_elementwise, n_directions, generator):
            if array_report.checked >= wanted or attempts >= 4 * max(wanted, 1):
                break
            attempts += 1
            if near_kink is not None and near_kink(name, direction):
                array_report.skipped += 1
                continue
            array += eps * direction
            f_plus = float(f())
            array[...] = original
            array -= eps * direction
            f_minus = float(f())
            array[...] = original
            slope_plus, slope_minus = (f_plus - f0) / eps, (f0 - f_minus) / eps
            if abs(slope_plus - slope_minus) > kink_tol * max(abs(slope_plus),
                                                              abs(slope_minus)) + 2 * atol:
                array_report.skipped += 1
                continue
            analytic = float(np.vdot(grad, direction))
            numeric = (f_plus - f_minus) / (2 * eps)
            allowed = atol + rtol * max(abs(analytic), abs(numeric))
            array_report.add(Probe(name, where, analytic, numeric, allowed))
        probes = array_report.checked + array_report.skipped
        if array_report.checked == 0 or array_report.skipped > max_skipped * probes:
            report.problems.append(f"{name}: {array_report.skipped} of {probes} probes lay "
                                   f"at kinks; move the inputs away from them")
    if raise_on_failure and not report.passed:
        raise GradcheckError(str(report))
    return report


def check_layer(layer: Layer, x: np.ndarray, *, train: bool = True,
                forward_kwargs: Optional[Mapping[str, Any]] = None, seed: int = 0,
                **options: Any) -> GradcheckReport:
    """Checks the backprop of ``layer`` (a layer or model) at input ``x``.

    The scalar checked is ``f = sum(y * r)`` for a fixed random r, so the gradient given
    to backprop is r.  The input and every parameter are checked; the layer's random
    generators are reset before each forward pass, so dropout draws the same masks
    throughout.  ``options`` go to :func:`check_gradients`.

    Example:
        >>> from condnn.layers import Dense
        >>> fc = Dense(3, 2, rng=0, dtype=np.float64)
        >>> check_layer(fc, np.random.default_rng(0).standard_normal((4, 3))).passed
        True
    """
    kwargs = dict(forward_kwargs or {})
    generators = layer.named_rngs()
    states = {name: g.bit_generator.state for name, g in generators.items()}

    def reset() -> None:
        for name, g in generators.items():
            g.bit_generator.state = states[name]

    reset()
    y, backprop = layer.forward(x, train, **kwargs)
    r = np.random.default_rng(seed).standard_normal(np.shape(y))
    layer.zero_grads()
    dx = backprop(r.copy())
    params = layer.named_params()
    if "x" in params:
        raise ValueError("the layer has a parameter named 'x', the name of the input here")
    wrt = dict(params) if dx is None else {"x": x, **params}
    grads = {name: grad.copy() for name, grad in layer.named_grads().items()}
    if dx is not None:
        grads["x"] = dx
    layer.zero_grads()

    def f() -> float:
        reset()
        y, _ = layer.forward(x, train, **kwargs)
        return float(np.vdot(y, r))

    try:
        return check_gradients(f, wrt, grads, rng=seed, **options)
    finally:
        reset()
