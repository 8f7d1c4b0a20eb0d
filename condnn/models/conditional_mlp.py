"""The conditional MLP: a ReLU network whose hidden blocks a learned policy switches on."""
from typing import List, Optional, Sequence, Union

import numpy as np

from condnn.device import on_gpu
from condnn.initializers import Initializer, glorot_uniform, he_normal
from condnn.layers.base import check_size, float_dtype
from condnn.layers.block_sparse_dense import BlockSparseDense
from condnn.layers.dropout import Dropout
from condnn.layers.policy_gate import PolicyGate, check_mode
from condnn.layers.policy_regularizers import PolicyPenalty
from condnn.model import Model
from condnn.models.arguments import (centered, check_hidden_blocks, check_input_mean,
                                    open_unit, per_layer)
from condnn.models.trace import (Product, Trace, check_execution, frozen_backprop,
                                 hidden_layer, plain_input, relu_grad)
from condnn.sparse import sparse_dot

Numbers = Union[float, Sequence[float]]
Counts = Union[int, Sequence[int]]


class ConditionalMLP(Model):
    """A conditional network (Bengio et al., 2015): L hidden layers of blocks, each gated
    per example by its own :class:`PolicyGate` that looks at the layer's input.

    With h_0 = x and u_0 = None (the input is not gated), for l = 1..L::

        u_l = [1_{S_l}, r_l],  r_l ~ pi_l(. | h_{l-1})          policy<l>: (n, B_l) mask
        h_l = relu(((h_{l-1} * u_{l-1}) @ W_l + b_l) * u_l)     fc<l>
        logits = (h_L * u_L) @ W_out + b_out                    out

    The first S_l blocks of layer l (``shared_blocks``, 0 by default) are on for every
    example, and the policy chooses among the other B_l - S_l.  Shared blocks learn from
    every example, where a routed block learns only from the examples routed to it: in the
    default network on MNIST, four shared blocks per layer lowered the test error by about
    0.4 points at the same cost (see the README).

    The products are block-sparse (:func:`condnn.sparse_dot`): the first is dense-in,
    sparse-out (``fs``), the hidden ones sparse/sparse (``ss``, cost ~ tau^2 of dense),
    the output sparse-in, dense-out (``sf``).  The policies' own products (``h @ Z``, B - S
    columns) skip the inactive input blocks too.

    Args:
        n_in: input width (784 for 28x28 images).
        n_classes: output width.
        hidden: per hidden layer ``[n_blocks, block_size]``; every layer has the same block
            size (the block-sparse product gates input and output with one).
        tau: the target fraction of blocks on, one number or one per hidden layer; it
            counts the shared blocks, so the policy of layer l aims at
            ``(tau_l B_l - S_l) / (B_l - S_l)`` of its routed blocks.
        shared_blocks: S_l, the number of blocks of each hidden layer that every example
            runs (one number or one per hidden layer; fewer than ``tau_l B_l``).
        eps: the policies' squashing margin (probabilities in [eps, 1 - eps]).
        mode: how evaluation chooses masks: "threshold" (p > 0.5, deterministic) or
            "sample".
        policy_init_scale: the scale of the policies' initial Z (see PolicyGate).
        dropout: dropout rate of the hidden units while training (0: none); it drops
            units inside the active blocks, the inactive ones being 0 already.
        seed: seeds the weights, the policies' sampling and the dropout.
        dtype: "float32" or "float64".
        input_mean: None, or the mean input (n_in numbers) that the model subtracts from
            every input; ``condnn train`` passes the training set's.

    Parameters: ``fc<l>/W`` (n_{l-1}, B_l bs), ``fc<l>/b``, ``out/W``, ``out/b``, and the
    policy's ``policy<l>/Z`` (n_{l-1}, B_l - S_l), ``policy<l>/d`` (B_l - S_l,).

    Example:
        >>> model = ConditionalMLP(n_in=20, n_classes=3, hidden=[[4, 8], [4, 8]], tau=0.5)
        >>> trace = model.trace(np.zeros((5, 20), np.float32), train=True)
        >>> trace.logits.shape, [m.shape for m in trace.masks]
        ((5, 3), [(5, 4), (5, 4)])
    """

    runs_on_gpu = True
    device_attributes = ("input_mean",)

    def __init__(self, n_in: int = 784, n_classes: int = 10,
                 hidden: Sequence[Sequence[int]] = ((48, 64), (48, 64)), tau: Numbers = 0.15,
                 eps: float = 0.01, mode: str = "threshold", policy_init_scale: float = 12.0,
                 dropout: float = 0.0, seed: int = 0, dtype: str = "float32",
                 input_mean: Optional[Sequence[float]] = None,
                 shared_blocks: Counts = 0) -> None:
        self.n_in = check_size("n_in", n_in)
        self.n_classes = check_size("n_classes", n_classes)
        self.hidden = check_hidden_blocks(hidden)
        self.block_size = self.hidden[0][1]
        self.taus = per_layer("tau", tau, len(self.hidden), open_unit)
        self.shared_blocks = check_shared_blocks(shared_blocks, self.hidden, self.taus)
        self.mode = check_mode(mode)
        dtype = float_dtype(dtype)
        self.input_mean = check_input_mean(input_mean, self.n_in, dtype)
        weights_seed, dropout_seed, *gate_seeds = np.random.SeedSequence(seed).spawn(
            2 + len(self.hidden))
        rng = np.random.default_rng(weights_seed)
        self.drop = Dropout(dropout, rng=np.random.default_rng(dropout_seed))
        self.fcs: List[BlockSparseDense] = []
        self.gates: List[PolicyGate] = []
        width, input_block_size, active_in = self.n_in, None, 1.0
        for index, ((n_blocks, block_size), tau_l, shared) in enumerate(
                zip(self.hidden, self.taus, self.shared_blocks)):
            gate = PolicyGate(width, n_blocks - shared, tau=_routed_tau(tau_l, n_blocks, shared),
                              eps=eps, mode=mode,
                              input_block_size=input_block_size, init_scale=policy_init_scale,
                              rng=np.random.default_rng(gate_seeds[index]), dtype=dtype,
                              keep_a_block=shared == 0)
            # The first layer's input is data: no gradient is needed for it.
            fc = BlockSparseDense(width, n_blocks * block_size, block_size,
                                  init=_scaled(he_normal, active_in), rng=rng, dtype=dtype,
                                  input_grad=index > 0)
            setattr(self, f"fc{index + 1}", fc)
            setattr(self, f"policy{index + 1}", gate)
            self.fcs.append(fc)
            self.gates.append(gate)
            width, input_block_size, active_in = n_blocks * block_size, block_size, tau_l
        self.out = BlockSparseDense(width, self.n_classes, self.block_size,
                                    init=_scaled(glorot_uniform, active_in), rng=rng,
                                    dtype=dtype)

    def products(self) -> List[Product]:
        """The model's products, for :mod:`condnn.flops`."""
        products, width = [], self.n_in
        for index, (n_blocks, block_size) in enumerate(self.hidden):
            in_mask = index - 1 if index else None
            products.append(Product(f"policy{index + 1}", width,
                                    n_blocks - self.shared_blocks[index], block_size,
                                    in_mask, None, policy=True))
            products.append(Product(f"fc{index + 1}", width, n_blocks * block_size,
                                    block_size, in_mask, index))
            width = n_blocks * block_size
        products.append(Product("out", width, self.n_classes, self.block_size,
                                len(self.hidden) - 1, None))
        return products

    def set_mode(self, mode: str) -> None:
        """Sets how evaluation chooses masks ("threshold" or "sample") on every policy."""
        self.mode = check_mode(mode)
        for gate in self.gates:
            gate.mode = self.mode

    def calibrate(self, x: np.ndarray) -> None:
        """Data-dependent initialisation of the policies' biases: sets each ``d_j`` so that
        block j is on (``p > 0.5``, i.e. ``z > 0``) for a fraction tau of the examples x,
        layer after layer (each policy sees the masked output of the layers calibrated
        before it).  A policy initialised at random switches a block on for whatever
        fraction its random projection gives; this starts every layer at its budget.

        Args:
            x: (N, n_in) examples, a few hundred or more (the quantiles need them).
        """
        h, prev_mask = centered(x, self.input_mean), None
        for fc, gate, shared in zip(self.fcs, self.gates, self.shared_blocks):
            z = h @ gate.params["Z"]
            # The (1 - tau) quantile of each column: a fraction tau of z + d lies above 0.
            gate.params["d"][:] = -np.quantile(z, 1 - gate.tau, axis=0)
            decision, _ = gate(h, False, amask=prev_mask, mode="threshold")
            mask = with_shared_blocks(decision.mask, shared)
            h, _ = fc(h, False, amask=prev_mask, omask=mask, relu=True)
            prev_mask = mask

    def trace(self, x: np.ndarray, train: bool, *,
              masks: Optional[Sequence[np.ndarray]] = None, execution: str = "sparse",
              mode: Optional[str] = None) -> Trace:
        """One forward pass; see :class:`condnn.models.trace.Trace`.

        Args:
            x: (n, n_in) input.
            train: training (masks sampled) or evaluation (masks by ``mode``).
            masks: optional masks to use instead of the policies' choice, one (n, B_l) per
                hidden layer; the log-likelihood of their routed blocks (all but the
                first S_l) is what the policy terms differentiate.
            execution: "sparse", "dense" (same outputs, dense products) or "all_on" (every
                block on, no policy); see :data:`condnn.models.trace.EXECUTIONS`.
            mode: overrides the policies' evaluation mode for this pass.
        """
        check_execution(execution, x)
        if not train and masks is None and execution == "sparse" and self._is_frozen() \
                and plain_input(x, self.n_in, self.fcs[0].dtype):
            return self._evaluate_frozen(x, mode)
        if masks is not None and len(masks) != len(self.hidden):
            raise ValueError(f"masks must hold one mask per hidden layer "
                             f"({len(self.hidden)}), got {len(masks)}")
        sparse = execution == "sparse"
        h, prev_mask = centered(x, self.input_mean), None
        layer_outputs, fc_backprops, gate_backprops, drop_backprops = [], [], [], []
        out_masks: List[Optional[np.ndarray]] = []
        probs: List[Optional[np.ndarray]] = []
        for index, (fc, gate, shared) in enumerate(zip(self.fcs, self.gates,
                                                        self.shared_blocks)):
            mask, gate_backprop, prob = None, None, None
            if execution != "all_on":
                given = None if masks is None else routed_blocks(masks[index], shared,
                                                                 f"masks[{index}]")
                # Dense execution: h is already zero outside its mask, so the dense product
                # gives the policy the same input.
                decision, gate_backprop = gate(h, train, amask=prev_mask if sparse else None,
                                               mask=given, mode=mode)
                mask = masks[index] if masks is not None else \
                    with_shared_blocks(decision.mask, shared)
                prob = decision.prob
            y, fc_backprop = hidden_layer(fc, h, train, prev_mask, mask, sparse)
            layer_outputs.append(y)
            drop_backprop = None
            if train and self.drop.rate:
                y, drop_backprop = self.drop(y, train)
            drop_backprops.append(drop_backprop)
            fc_backprops.append(fc_backprop)
            gate_backprops.append(gate_backprop)
            out_masks.append(mask)
            probs.append(prob)
            h, prev_mask = y, mask
        logits, out_backprop = self.out(h, train, amask=prev_mask if sparse else None,
                                        masks_checked=True)

        def backprop(dlogits: np.ndarray, advantages: Optional[np.ndarray] = None,
                     penalty: Optional[PolicyPenalty] = None) -> None:
            dh = out_backprop(dlogits)
            for index in range(len(self.fcs) - 1, -1, -1):
                # relu's derivative; it is 0 on inactive blocks too, where y is exactly 0.
                if drop_backprops[index] is not None:
                    dh = drop_backprops[index](dh)
                dh = fc_backprops[index](relu_grad(dh, layer_outputs[index]))
                if gate_backprops[index] is not None and (advantages is not None
                                                          or penalty is not None):
                    gate_backprops[index](advantages, penalty)

        return Trace(logits, out_masks, probs, backprop)

    def _is_frozen(self) -> bool:
        """Whether every block-sparse layer is frozen (a copy from ``for_inference``)."""
        return all(layer.frozen is not None for layer in self.fcs) and \
            self.out.frozen is not None

    def _evaluate_frozen(self, x: np.ndarray, mode: Optional[str]) -> Trace:
        """The sparse execution in evaluation of a frozen copy: the products and decisions
        of the general pass, in the same order and with the same results, without the
        checks, closures and branches that each layer call makes for training and other
        devices (at batch 1, one core, this pass was 15-19% faster).  x is a checked NumPy
        array; the model's own products need no checks.  A frozen copy is not trained:
        its trace has no backprop."""
        h, prev_mask = centered(x, self.input_mean), None
        out_masks: List[Optional[np.ndarray]] = []
        probs: List[Optional[np.ndarray]] = []
        for fc, gate, shared in zip(self.fcs, self.gates, self.shared_blocks):
            prob, mask = gate.decide(gate.tanh_half(h, prev_mask), False, mode, shared)
            h = sparse_dot(h, prev_mask, fc.eval_weights(True), mask, fc.params["b"],
                           fc.block_size, relu=True)
            out_masks.append(mask)
            probs.append(prob)
            prev_mask = mask
        logits = sparse_dot(h, prev_mask, self.out.eval_weights(True), None,
                            self.out.params["b"], self.out.block_size)
        return Trace(logits, out_masks, probs, frozen_backprop("ConditionalMLP"))

    def forward(self, x: np.ndarray, train: bool, **kwargs) -> tuple:
        """The layer contract: ``(logits, backprop)``; ``backprop(dlogits, advantages=None,
        penalty=None)`` as :class:`Trace`'s.  ``kwargs`` go to :meth:`trace`."""
        trace = self.trace(x, train, **kwargs)
        return trace.logits, trace.backprop


def shared_block_list(shared_blocks: Counts, n_layers: int) -> List[int]:
    """``shared_blocks`` as one checked count (an int from 0) per hidden layer."""
    values = list(shared_blocks) if isinstance(shared_blocks, (list, tuple)) \
        else [shared_blocks] * n_layers
    if len(values) != n_layers or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0
            for v in values):
        raise ValueError(f"shared_blocks must be an int >= 0 or a list of {n_layers} of "
                         f"them (one per hidden layer), got {shared_blocks!r}")
    return [int(v) for v in values]


def check_shared_blocks(shared_blocks: Counts, hidden: Sequence[Sequence[int]],
                        taus: Sequence[float]) -> List[int]:
    """The shared blocks of each hidden layer (see :func:`shared_block_list`), each below
    its layer's ``tau * n_blocks``: the policy must have some of its budget left to route."""
    values = shared_block_list(shared_blocks, len(hidden))
    for index, (value, (n_blocks, _), tau) in enumerate(zip(values, hidden, taus)):
        if not value < tau * n_blocks:
            raise ValueError(f"shared_blocks: hidden layer {index + 1} has {n_blocks} blocks "
                             f"and tau {tau}, so it runs {tau * n_blocks:g} blocks per "
                             f"example; fewer must be shared, got {value}")
    return values


def _routed_tau(tau: float, n_blocks: int, shared: int) -> float:
    """The fraction of its routed blocks that a layer's policy aims at, for the layer to run
    a fraction tau of all its blocks."""
    return tau if not shared else (tau * n_blocks - shared) / (n_blocks - shared)


def with_shared_blocks(routed: np.ndarray, shared: int) -> np.ndarray:
    """The (n, shared + B) mask of a layer from its policy's (n, B) mask: the shared blocks
    first, on, then the routed ones."""
    if not shared:
        return routed
    if on_gpu(routed):
        from condnn.gpu import training
        return training.widen_mask(routed, shared)
    mask = np.ones((routed.shape[0], shared + routed.shape[1]), dtype=np.uint8)
    mask[:, shared:] = routed
    return mask


def routed_blocks(mask, shared: int, name: str):
    """The routed part (all but the first ``shared`` columns) of a layer's full mask."""
    if not shared:
        return mask
    if len(getattr(mask, "shape", ())) != 2 or mask.shape[1] <= shared:
        raise ValueError(f"{name} must be a 2-D mask with more than {shared} columns (the "
                         f"layer's blocks), got shape {getattr(mask, 'shape', None)}")
    if on_gpu(mask):
        from condnn.gpu import training
        return training.routed_mask(mask, shared)
    return mask[:, shared:]


def _scaled(init: Initializer, active_fraction: float) -> Initializer:
    """``init`` scaled by ``1 / sqrt(active_fraction)``: a layer whose inputs are on at
    rate tau sums tau of its fan-in, so this keeps its outputs' variance what ``init``
    gives a dense layer."""
    def scaled(shape, rng=None, dtype=np.float32):
        return (init(shape, rng, dtype) / np.sqrt(active_fraction)).astype(dtype)
    return scaled
