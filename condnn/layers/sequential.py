"""A chain of layers, each feeding the next."""
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from condnn.layers.base import Backprop, Layer


class Sequential(Layer):
    """``y = layer_k(... layer_2(layer_1(x)))``; backprop runs the chain in reverse.

    Layers given positionally are named ``"0"``, ``"1"``, ...; given as keywords they take
    the keyword as their name, which becomes part of the parameter paths::

        Sequential(fc1=Dense(784, 256), act=ReLU(), fc2=Dense(256, 10))   # fc1/W, fc2/W ...

    Example:
        >>> from condnn.layers import Dense, ReLU
        >>> net = Sequential(Dense(3, 4, rng=0), ReLU(), Dense(4, 2, rng=1))
        >>> sorted(net.named_params())
        ['0/W', '0/b', '2/W', '2/b']
    """

    runs_on_gpu = True      # where its layers do: each is checked when the tree moves

    def __init__(self, *layers: Layer, **named_layers: Layer) -> None:
        super().__init__()
        if layers and named_layers:
            raise TypeError("Sequential takes layers either all positionally or all by "
                            "name, not both")
        items = list(named_layers.items()) or [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: layer {name!r} must be a condnn Layer, "
                                f"got {type(layer).__name__}")
        self.names: List[str] = [name for name, _ in items]
        self.layers: List[Layer] = [layer for _, layer in items]

    def named_children(self) -> Iterator[Tuple[str, Layer]]:
        return zip(self.names, self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, key: Union[int, str]) -> Layer:
        """The layer at a position or with a name."""
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(f"Sequential has no layer named {key!r}; it has {self.names}")
            return self.layers[self.names.index(key)]
        return self.layers[key]

    def forward(self, x: np.ndarray, train: bool) -> Tuple[np.ndarray, Backprop]:
        backprops: List[Backprop] = []
        for layer in self.layers:
            x, backprop = layer.forward(x, train)
            backprops.append(backprop)

        def backprop_all(dy: np.ndarray) -> Optional[np.ndarray]:
            for position in range(len(backprops) - 1, -1, -1):
                dy = backprops[position](dy)
                if dy is None and position > 0:
                    raise ValueError(f"Sequential: layer {self.names[position]!r} computes no "
                                     f"input gradient (input_grad=False) but is not the "
                                     f"first layer")
            return dy

        return x, backprop_all

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={layer!r}" for name, layer in zip(self.names, self.layers))
        return f"Sequential({inner})"
