"""``Model``: the base class of user models.

A model is a layer whose sub-layers are its attributes::

    class MLP(condnn.Model):
        def __init__(self, n_hidden=256, seed=0):
            rng = np.random.default_rng(seed)
            self.fc1 = Dense(784, n_hidden, init=he_normal, rng=rng)   # params fc1/W, fc1/b
            self.act = ReLU()
            self.fc2 = Dense(n_hidden, 10, rng=rng)

        def forward(self, x, train):
            h, fc1_backprop = self.fc1(x, train)
            h, act_backprop = self.act(h, train)
            y, fc2_backprop = self.fc2(h, train)
            return y, lambda dy: fc1_backprop(act_backprop(fc2_backprop(dy)))

Attributes that are layers or models (in the order first assigned) and numpy Generators
are registered; their attribute paths name parameters (``fc1/W``) in memory, in the
optimizer state and in checkpoints.  Every subclass is registered under its class name and
records its constructor arguments (``model.config``), so :func:`condnn.load` can build it
again from a checkpoint; those arguments must be JSON-serializable to be saved.
"""
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from condnn import checkpoint
from condnn.config import record_arguments
from condnn.layers.base import Backprop, Layer
from condnn.registry import register_automatically


class Model(Layer):
    """Base class of user models; subclasses define ``__init__`` and ``forward``.

    ``forward(x, train) -> (y, backprop)`` follows the layer contract.  ``model(x)`` calls
    it with ``train`` set by the mode, :meth:`train` (the default) or :meth:`eval`.
    Calling ``super().__init__()`` is allowed but not needed.
    """

    config: Dict[str, Any]
    training: bool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_automatically(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> "Model":
        # Set up here rather than in __init__ so that a subclass need not call super().__init__.
        self = super().__new__(cls)
        state = self.__dict__
        state["_children"] = {}
        state["_rngs"] = {}
        state["params"] = {}
        state["grads"] = {}
        state["training"] = True
        state["config"] = record_arguments(cls, args, kwargs)
        return self

    def __init__(self) -> None:
        pass

    def __setattr__(self, name: str, value: Any) -> None:
        children, rngs = self.__dict__["_children"], self.__dict__["_rngs"]
        if isinstance(value, Layer):
            rngs.pop(name, None)
            children[name] = value
        elif isinstance(value, np.random.Generator):
            children.pop(name, None)
            rngs[name] = value
        else:
            children.pop(name, None)
            rngs.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__["_children"].pop(name, None)
        self.__dict__["_rngs"].pop(name, None)
        object.__delattr__(self, name)

    def named_children(self) -> Iterator[Tuple[str, Layer]]:
        return iter(list(self._children.items()))

    def own_rngs(self) -> Dict[str, np.random.Generator]:
        return dict(self._rngs)

    def __call__(self, x: np.ndarray, train: Optional[bool] = None,
                 **kwargs: Any) -> Tuple[np.ndarray, Backprop]:
        return self.forward(x, self.training if train is None else train, **kwargs)

    def train(self, mode: bool = True) -> "Model":
        """Sets training mode (``model(x)`` then trains) on this model and its sub-models."""
        for _, layer in self.walk():
            if isinstance(layer, Model):
                object.__setattr__(layer, "training", bool(mode))
        return self

    def eval(self) -> "Model":
        """Sets evaluation mode on this model and its sub-models."""
        return self.train(False)

    def to_gpu(self, optimizer: Any = None) -> "Model":
        """Moves the parameters, gradients and array attributes to the GPU, in place (and
        the state of ``optimizer``, an optimizer of this model); the model's passes then
        take and give GPU arrays.  Returns self."""
        return self._move("gpu", optimizer)

    def to_cpu(self, optimizer: Any = None) -> "Model":
        """Moves everything back to host memory (NumPy arrays), in place, with the state of
        ``optimizer`` if given; returns self."""
        return self._move("cpu", optimizer)

    def _move(self, device: str, optimizer: Any) -> "Model":
        if optimizer is not None and getattr(optimizer, "model", None) is not self:
            raise ValueError("optimizer must be an optimizer of this model")
        self.to_device(device)
        if optimizer is not None:
            optimizer.to_device(device)
        return self

    def save(self, path: checkpoint.PathLike, optimizer: Any = None, *, step: int = 0,
             epoch: int = 0, rngs: Optional[Mapping[str, np.random.Generator]] = None,
             metadata: Optional[Mapping[str, Any]] = None) -> None:
        """Writes a checkpoint atomically; see :func:`condnn.checkpoint.save`."""
        checkpoint.save(path, self, optimizer, step=step, epoch=epoch, rngs=rngs,
                        metadata=metadata)

    def load_params(self, path: checkpoint.PathLike) -> None:
        """Copies the parameters of a checkpoint into this model (strict: the names and
        shapes must match exactly); see :func:`condnn.checkpoint.load_params`."""
        checkpoint.load_params(path, self)

    def __repr__(self) -> str:
        inner = "".join(f"\n  {name}: {child!r}" for name, child in self._children.items())
        return f"{type(self).__name__}({inner}\n)" if inner else f"{type(self).__name__}()"
