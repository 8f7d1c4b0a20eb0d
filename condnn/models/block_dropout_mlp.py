"""Block dropout (bdNN): the conditional MLP's network with random instead of learned masks."""
from typing import List, Optional, Sequence, Union

import numpy as np

from condnn.device import on_gpu, to_device
from condnn.initializers import he_normal
from condnn.layers.base import check_size, float_dtype
from condnn.layers.block_dropout import BlockDropout
from condnn.layers.block_sparse_dense import BlockSparseDense
from condnn.layers.policy_regularizers import PolicyPenalty
from condnn.model import Model
from condnn.models.arguments import (centered, check_hidden_blocks, check_input_mean,
                                    open_unit, per_layer)
from condnn.models.trace import Product, Trace, check_execution, hidden_layer, relu_grad


class BlockDropoutMLP(Model):
    """The network of :class:`condnn.models.ConditionalMLP` with each block kept at random
    with probability ``keep_rate`` (per example, independently of the input), kept units
    scaled by ``1 / keep_rate`` (:class:`condnn.layers.BlockDropout`).

    Evaluation samples masks too, so that it runs block-sparsely at the cost of a
    conditional net of mean activation ``keep_rate``; the ``all_on`` execution is the
    usual dropout evaluation instead (every block on, no scaling), dense.

    Args:
        n_in, n_classes: input and output widths.
        hidden: per hidden layer ``[n_blocks, block_size]``, one block size for all.
        keep_rate: the probability of keeping a block, one number or one per layer.
        seed: seeds the weights and the masks.
        dtype: "float32" or "float64".
        input_mean: None, or the mean input (n_in numbers) that the model subtracts from
            every input; ``condnn train`` passes the training set's.
    """

    runs_on_gpu = True
    device_attributes = ("input_mean",)

    def __init__(self, n_in: int = 784, n_classes: int = 10,
                 hidden: Sequence[Sequence[int]] = ((48, 64), (48, 64)),
                 keep_rate: Union[float, Sequence[float]] = 0.15, seed: int = 0,
                 dtype: str = "float32", input_mean: Optional[Sequence[float]] = None) -> None:
        self.n_in = check_size("n_in", n_in)
        self.n_classes = check_size("n_classes", n_classes)
        self.hidden = check_hidden_blocks(hidden)
        self.block_size = self.hidden[0][1]
        self.keep_rates = per_layer("keep_rate", keep_rate, len(self.hidden), open_unit)
        dtype = float_dtype(dtype)
        self.input_mean = check_input_mean(input_mean, self.n_in, dtype)
        weights_seed, mask_seed = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(weights_seed)
        self.mask_rng = np.random.default_rng(mask_seed)
        self.fcs: List[BlockSparseDense] = []
        self.drops: List[BlockDropout] = []
        width = self.n_in
        for index, ((n_blocks, block_size), keep) in enumerate(zip(self.hidden,
                                                                   self.keep_rates)):
            # The first layer's input is data: no gradient is needed for it.
            fc = BlockSparseDense(width, n_blocks * block_size, block_size, init=he_normal,
                                  rng=rng, dtype=dtype, input_grad=index > 0)
            drop = BlockDropout(block_size, keep, rng=self.mask_rng)
            setattr(self, f"fc{index + 1}", fc)
            setattr(self, f"drop{index + 1}", drop)
            self.fcs.append(fc)
            self.drops.append(drop)
            width = n_blocks * block_size
        self.out = BlockSparseDense(width, self.n_classes, self.block_size, rng=rng,
                                    dtype=dtype)

    def products(self) -> List[Product]:
        """The model's products, for :mod:`condnn.flops`."""
        products, width = [], self.n_in
        for index, (n_blocks, block_size) in enumerate(self.hidden):
            products.append(Product(f"fc{index + 1}", width, n_blocks * block_size,
                                    block_size, index - 1 if index else None, index))
            width = n_blocks * block_size
        products.append(Product("out", width, self.n_classes, self.block_size,
                                len(self.hidden) - 1, None))
        return products

    def trace(self, x: np.ndarray, train: bool, *,
              masks: Optional[Sequence[np.ndarray]] = None, execution: str = "sparse",
              mode: Optional[str] = None) -> Trace:
        """One forward pass (see :class:`condnn.models.trace.Trace`); ``mode`` is ignored:
        masks are always random, or all on with ``execution="all_on"``."""
        check_execution(execution, x)
        if masks is not None and len(masks) != len(self.hidden):
            raise ValueError(f"masks must hold one mask per hidden layer "
                             f"({len(self.hidden)}), got {len(masks)}")
        sparse = execution == "sparse"
        h, prev_mask, steps = centered(x, self.input_mean), None, []
        out_masks: List[Optional[np.ndarray]] = []
        for index, (fc, drop) in enumerate(zip(self.fcs, self.drops)):
            mask, own = None, masks is None
            if execution != "all_on":
                mask = masks[index] if not own else drop.sample_mask(x.shape[0], fc.n_out)
                if on_gpu(x) and not on_gpu(mask):
                    # Drawn on the host from the CPU's generator (or given there), uploaded
                    # once for the products and the dropout, as the uint8 the GPU takes.
                    mask = to_device(np.asarray(mask).view(np.uint8), "gpu")
            y, fc_backprop = hidden_layer(fc, h, train, prev_mask, mask, sparse)
            # With a mask, dropout scales the kept blocks by 1 / keep_rate; all_on in
            # evaluation is the identity.
            h, drop_backprop = drop(y, train if mask is not None else False, mask=mask,
                                    mask_checked=own)
            steps.append((fc_backprop, y, drop_backprop))
            out_masks.append(mask)
            prev_mask = mask
        logits, out_backprop = self.out(h, train, amask=prev_mask if sparse else None,
                                        masks_checked=True)

        def backprop(dlogits: np.ndarray, advantages: Optional[np.ndarray] = None,
                     penalty: Optional[PolicyPenalty] = None) -> None:
            dh = out_backprop(dlogits)
            for fc_backprop, y, drop_backprop in reversed(steps):
                dh = fc_backprop(relu_grad(drop_backprop(dh), y))

        return Trace(logits, out_masks, [None] * len(out_masks), backprop)

    def forward(self, x: np.ndarray, train: bool, **kwargs) -> tuple:
        """The layer contract: ``(logits, backprop)``."""
        trace = self.trace(x, train, **kwargs)
        return trace.logits, trace.backprop
