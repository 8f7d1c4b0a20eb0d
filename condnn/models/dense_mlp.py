"""The dense MLP baseline, with the interface of the conditional one."""
from typing import List, Optional, Sequence

import numpy as np

from condnn.initializers import he_normal
from condnn.layers.base import check_size, float_dtype
from condnn.layers.dense import Dense
from condnn.layers.dropout import Dropout, check_rate
from condnn.layers.policy_regularizers import PolicyPenalty
from condnn.model import Model
from condnn.models.arguments import centered, check_input_mean
from condnn.models.trace import (Product, Trace, check_execution, frozen_backprop,
                                 plain_input, relu_, relu_grad)


class DenseMLP(Model):
    """``h_l = dropout(relu(h_{l-1} @ W_l + b_l))``, ``logits = h_L @ W_out + b_out``.

    The baseline conditional networks are compared with: the dense twin (the same widths)
    or a narrower net of the same cost.  ``trace`` takes the arguments of
    :meth:`condnn.models.ConditionalMLP.trace`; every execution is the same dense
    computation, there are no masks, and the policy arguments of backprop are ignored.

    Args:
        n_in, n_classes: input and output widths.
        hidden: the widths of the hidden layers.
        dropout: dropout rate after each hidden layer while training.
        seed: seeds the weights and the dropout masks.
        dtype: "float32" or "float64".
        input_mean: None, or the mean input (n_in numbers) that the model subtracts from
            every input; ``condnn train`` passes the training set's.

    Parameters: ``fc<l>/W``, ``fc<l>/b``, ``out/W``, ``out/b``.

    It runs on the GPU too (``to_gpu``), with cuBLAS products.
    """

    runs_on_gpu = True
    device_attributes = ("input_mean",)

    def __init__(self, n_in: int = 784, n_classes: int = 10,
                 hidden: Sequence[int] = (1024, 1024), dropout: float = 0.2, seed: int = 0,
                 dtype: str = "float32", input_mean: Optional[Sequence[float]] = None) -> None:
        self.n_in = check_size("n_in", n_in)
        self.n_classes = check_size("n_classes", n_classes)
        if isinstance(hidden, (int, str)) or not hidden:
            raise ValueError(f"hidden must be a non-empty list of widths, got {hidden!r}")
        self.hidden = [check_size("hidden width", w) for w in hidden]
        self.dropout = check_rate("dropout", dropout, low_open=False, high_open=True)
        dtype = float_dtype(dtype)
        self.input_mean = check_input_mean(input_mean, self.n_in, dtype)
        weights_seed, dropout_seed = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(weights_seed)
        self.drop_rng = np.random.default_rng(dropout_seed)
        self.fcs: List[Dense] = []
        self.drops: List[Dropout] = []
        width = self.n_in
        for index, n_out in enumerate(self.hidden):
            # The first layer's input is data: no gradient is needed for it.
            fc = Dense(width, n_out, init=he_normal, rng=rng, dtype=dtype,
                       input_grad=index > 0)
            drop = Dropout(self.dropout, rng=self.drop_rng)
            setattr(self, f"fc{index + 1}", fc)
            setattr(self, f"drop{index + 1}", drop)
            self.fcs.append(fc)
            self.drops.append(drop)
            width = n_out
        self.out = Dense(width, self.n_classes, rng=rng, dtype=dtype)

    def products(self) -> List[Product]:
        """The model's products, for :mod:`condnn.flops`."""
        widths = [self.n_in] + self.hidden + [self.n_classes]
        names = [f"fc{i + 1}" for i in range(len(self.hidden))] + ["out"]
        return [Product(name, a, b, 1, None, None) for name, a, b
                in zip(names, widths[:-1], widths[1:])]

    def trace(self, x: np.ndarray, train: bool, *, masks=None, execution: str = "sparse",
              mode: Optional[str] = None) -> Trace:
        """One forward pass (see :class:`condnn.models.trace.Trace`); ``masks`` must be
        None or empty, ``execution`` and ``mode`` change nothing."""
        check_execution(execution)
        if masks:
            raise ValueError("DenseMLP has no gated layers: masks must be None")
        if not train and self._is_frozen() and plain_input(x, self.n_in, self.out.dtype):
            return self._evaluate_frozen(x)
        h, backprops = centered(x, self.input_mean), []
        for fc, drop in zip(self.fcs, self.drops):
            y, fc_backprop = fc(h, train)
            relu_(y)                    # in place: Dense's backprop keeps its input, not y
            h, drop_backprop = drop(y, train)
            backprops.append((fc_backprop, y, drop_backprop))
        logits, out_backprop = self.out(h, train)

        def backprop(dlogits: np.ndarray, advantages: Optional[np.ndarray] = None,
                     penalty: Optional[PolicyPenalty] = None) -> None:
            dh = out_backprop(dlogits)
            for fc_backprop, y, drop_backprop in reversed(backprops):
                dh = fc_backprop(relu_grad(drop_backprop(dh), y))

        return Trace(logits, [], [], backprop)

    def _is_frozen(self) -> bool:
        """Whether every layer is frozen (a copy from ``for_inference``)."""
        return all(fc.frozen for fc in self.fcs) and self.out.frozen

    def _evaluate_frozen(self, x: np.ndarray) -> Trace:
        """The evaluation pass of a frozen copy: the products of the general pass, in the
        same order and with the same results, without the layers' checks and closures.  At
        batch 1 those cost as much as a 256-wide net's products, and a dense net timed with
        them would be timed slower than its BLAS runs it."""
        h = centered(x, self.input_mean)
        for fc in self.fcs:
            h = h @ fc.params["W"]
            h += fc.params["b"]
            np.maximum(h, 0, out=h)
        logits = h @ self.out.params["W"]
        logits += self.out.params["b"]
        return Trace(logits, [], [], frozen_backprop("DenseMLP"))

    def forward(self, x: np.ndarray, train: bool, **kwargs) -> tuple:
        """The layer contract: ``(logits, backprop)``."""
        trace = self.trace(x, train, **kwargs)
        return trace.logits, trace.backprop
