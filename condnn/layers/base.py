"""The layer contract that every layer, container and model follows.

``y, backprop = layer.forward(x, train)`` computes the output; ``dx = backprop(dy)`` ADDS
the gradients of the parameters into ``layer.grads`` and returns the gradient with respect
to ``x``.  What backprop needs lives in its closure, never on the layer, so a layer called
twice in one pass keeps both calls apart.  The optimizer zeroes the gradients after its step.
"""
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from condnn.device import check_device, on_gpu, to_device

# backprop(dy) -> dx; None only from a layer told not to compute dx (Dense(input_grad=False)).
Backprop = Callable[[np.ndarray], Optional[np.ndarray]]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a numpy dtype, checked to be float32 or float64."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_size(name: str, value: Any) -> int:
    """``value`` checked to be a positive int (a layer dimension or block size)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def check_input(layer: str, x: Any, n_features: Optional[int] = None,
                dtype: Optional[np.dtype] = None) -> np.ndarray:
    """Checks that ``x`` is a float (n, n_features) array of ``dtype``, for layer ``layer``
    (a NumPy array, or a GPU array for a layer moved to the GPU)."""
    if not isinstance(x, np.ndarray) and not on_gpu(x):
        raise TypeError(f"{layer}: x must be a numpy.ndarray, got {type(x).__name__}")
    if len(x.shape) != 2:
        raise ValueError(f"{layer}: x must be 2-D (batch, features), got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"{layer}: x must have {n_features} columns, got shape {x.shape}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{layer}: x must have dtype {dtype} (the layer's dtype), "
                        f"got {x.dtype}")
    if dtype is None and x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: x must have dtype float32 or float64, got {x.dtype}")
    return x


def check_output_grad(layer: str, dy: Any, y_shape: Tuple[int, ...]) -> np.ndarray:
    """Checks that the gradient given to backprop has the shape of the forward output."""
    if not isinstance(dy, np.ndarray) and not on_gpu(dy):
        raise TypeError(f"{layer}: dy must be a numpy.ndarray, got {type(dy).__name__}")
    if dy.shape != y_shape:
        raise ValueError(f"{layer}: dy must have shape {y_shape} (the output's), "
                         f"got {dy.shape}")
    return dy


class Layer:
    """Base class: ``params`` and ``grads`` are dicts with the same names and shapes.

    Subclasses implement :meth:`forward`; containers override :meth:`named_children`;
    random layers override :meth:`own_rngs` so that their generators are checkpointed.
    """

    params: Dict[str, np.ndarray]
    grads: Dict[str, np.ndarray]
    #: Names of attributes other than parameters that hold arrays a pass reads (a model's
    #: input mean): :meth:`to_device` moves them with the parameters.
    device_attributes: Tuple[str, ...] = ()
    #: Whether the layer's own computation has a GPU path (its sub-layers say for
    #: themselves); :meth:`to_device` refuses to move a tree with a layer that has none.
    runs_on_gpu: bool = False

    def __init__(self) -> None:
        self.params = {}
        self.grads = {}

    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        """Registers parameter ``name`` with a zero gradient of the same shape and dtype."""
        if "/" in name or not name:
            raise ValueError(f"parameter name must be non-empty without '/', got {name!r}")
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def forward(self, x: np.ndarray, train: bool) -> Tuple[np.ndarray, Backprop]:
        """Returns ``(y, backprop)``; see the module docstring."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def __call__(self, x: np.ndarray, train: bool, **kwargs: Any) -> Tuple[np.ndarray, Backprop]:
        return self.forward(x, train, **kwargs)

    def named_children(self) -> Iterator[Tuple[str, "Layer"]]:
        """The direct sub-layers, with the names that make up parameter paths."""
        return iter(())

    def own_rngs(self) -> Dict[str, np.random.Generator]:
        """The random generators this layer itself draws from, by name."""
        return {}

    def walk(self, prefix: str = "") -> Iterator[Tuple[str, "Layer"]]:
        """Every layer of the tree (this one first) with its path prefix, each once.

        A layer reachable along two paths (a shared layer) is listed under the first, so
        its parameters are updated and saved once.
        """
        seen = set()
        stack: List[Tuple[str, Layer]] = [(prefix, self)]
        while stack:
            path, layer = stack.pop()
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            yield path, layer
            children = [(f"{path}{name}/", child) for name, child in layer.named_children()]
            stack.extend(reversed(children))

    def named_params(self) -> Dict[str, np.ndarray]:
        """All parameters of the tree by path (``"fc1/W"``), in registration order."""
        return {path + name: value for path, layer in self.walk()
                for name, value in layer.params.items()}

    def named_grads(self) -> Dict[str, np.ndarray]:
        """All gradients by the path of their parameter."""
        return {path + name: value for path, layer in self.walk()
                for name, value in layer.grads.items()}

    def named_rngs(self) -> Dict[str, np.random.Generator]:
        """All random generators of the tree by path, each generator once."""
        found: Dict[str, np.random.Generator] = {}
        seen = set()
        for path, layer in self.walk():
            for name, generator in layer.own_rngs().items():
                if id(generator) not in seen:
                    seen.add(id(generator))
                    found[path + name] = generator
        return found

    def to_device(self, device: str) -> "Layer":
        """Moves every parameter, gradient and array attribute of the tree to ``device``
        ("cpu" or "gpu", see :mod:`condnn.device`), in place; returns self."""
        device = check_device(device)
        for _, layer in self.walk():
            layer.check_movable(device)
        for _, layer in self.walk():
            for store in (layer.params, layer.grads):
                for name in store:
                    store[name] = to_device(store[name], device)
            for name in layer.device_attributes:
                object.__setattr__(layer, name, to_device(getattr(layer, name), device))
        return self

    def check_movable(self, device: str) -> None:
        """Raises if this layer cannot run on ``device`` (before anything moves)."""
        if device == "gpu" and not self.runs_on_gpu:
            raise ValueError(f"{type(self).__name__} does not run on the GPU yet; the "
                             f"layers that do: Dense, BlockSparseDense, PolicyGate, Dropout, "
                             f"BlockDropout, ReLU, Sequential, and the models of "
                             f"condnn.models (a model of your own built from them says so "
                             f"with runs_on_gpu = True)")

    @property
    def device(self) -> str:
        """Where the parameters are: "cpu" or "gpu" (a layer without any: "cpu")."""
        for _, value in self.named_params().items():
            return "gpu" if on_gpu(value) else "cpu"
        return "cpu"

    def zero_grads(self) -> None:
        """Sets every gradient of the tree to 0, in place."""
        for _, layer in self.walk():
            for grad in layer.grads.values():
                grad.fill(0)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}={value.shape}" for name, value in self.params.items())
        return f"{type(self).__name__}({shapes})"
