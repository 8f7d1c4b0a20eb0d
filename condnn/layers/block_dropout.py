"""Block dropout: whole blocks of units switched off at random (the bdNN baseline)."""
from typing import Dict, Optional, Tuple

import numpy as np

from condnn.device import on_gpu, to_device
from condnn.layers.activation import check_float_array
from condnn.layers.base import Backprop, Layer, check_output_grad, check_size
from condnn.layers.dropout import check_rate
from condnn.rng import RngLike, as_generator

_MASK_DTYPES = (np.dtype(np.bool_), np.dtype(np.int8), np.dtype(np.uint8))


class BlockDropout(Layer):
    """Keeps each block of ``block_size`` consecutive units with probability ``keep_rate``,
    independently per example; kept units are scaled by ``1 / keep_rate``.

    The mask is what makes this useful for conditional computation: draw it with
    :meth:`sample_mask`, pass it to :meth:`forward`, and give the same mask as ``amask`` to
    the following :class:`BlockSparseDense`, which then skips the dropped blocks::

        mask = self.drop.sample_mask(len(h), h.shape[1])
        h, drop_backprop = self.drop(h, train, mask=mask)
        y, fc_backprop = self.fc2(h, train, amask=mask)

    Sampling at evaluation too (as bdNN does to run sparsely) is the caller's choice: a
    given mask is always applied, scale included.  Without a mask, :meth:`forward` draws
    one when training and is the identity when evaluating, like :class:`Dropout`.

    Shapes: x (n, units), mask (n, units / block_size) of 0/1 (bool, int8 or uint8).

    On GPU arrays the masks are drawn from the same generator on the host and uploaded (a
    GPU run drops the blocks a CPU run drops); a mask given on the GPU must be uint8.
    """

    runs_on_gpu = True

    def __init__(self, block_size: int, keep_rate: float, rng: RngLike = None) -> None:
        super().__init__()
        self.block_size = check_size("block_size", block_size)
        self.keep_rate = check_rate("keep_rate", keep_rate, low_open=True, high_open=False)
        self.rng = as_generator(rng)

    def own_rngs(self) -> Dict[str, np.random.Generator]:
        return {"rng": self.rng}

    def n_blocks(self, units: int) -> int:
        """The number of blocks of a layer ``units`` wide."""
        if units % self.block_size:
            raise ValueError(f"BlockDropout: block_size {self.block_size} does not divide "
                             f"the layer's width {units}")
        return units // self.block_size

    def sample_mask(self, n_rows: int, units: int) -> np.ndarray:
        """A (n_rows, units / block_size) uint8 mask, each entry 1 with probability keep_rate."""
        shape = (check_size("n_rows", n_rows), self.n_blocks(check_size("units", units)))
        return (self.rng.random(shape) < self.keep_rate).view(np.uint8)

    def _check_mask(self, mask: np.ndarray, x: np.ndarray) -> np.ndarray:
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"BlockDropout: mask must be a numpy.ndarray or None, "
                            f"got {type(mask).__name__}")
        if mask.dtype not in _MASK_DTYPES:
            raise TypeError(f"BlockDropout: mask must have dtype bool, int8 or uint8, "
                            f"got {mask.dtype}")
        expected = (x.shape[0], self.n_blocks(x.shape[1]))
        if mask.shape != expected:
            raise ValueError(f"BlockDropout: mask must have shape {expected} "
                             f"(rows, units / block_size), got {mask.shape}")
        if mask.size and mask.view(np.uint8).max() > 1:
            raise ValueError("BlockDropout: mask must hold only 0 and 1")
        return mask

    def forward(self, x: np.ndarray, train: bool, mask: Optional[np.ndarray] = None,
                mask_checked: bool = False) -> Tuple[np.ndarray, Backprop]:
        """``mask_checked``: the mask is known to hold only 0 and 1 (a model's own draw), so
        a mask on the GPU is not checked, which would wait for the device."""
        check_float_array("BlockDropout", x)
        if x.ndim != 2:
            raise ValueError(f"BlockDropout: x must be 2-D (batch, units), got shape {x.shape}")
        if mask is None:
            if not train:
                return x, lambda dy: check_output_grad("BlockDropout", dy, x.shape)
            mask = self.sample_mask(x.shape[0], x.shape[1])
        if on_gpu(x):
            return self._forward_gpu(x, mask, mask_checked)
        self._check_mask(mask, x)
        n, units = x.shape
        # (n, blocks, 1) factors broadcast over the units of each block.
        factor = (mask.astype(x.dtype) * x.dtype.type(1 / self.keep_rate))[:, :, None]
        y = (x.reshape(n, -1, self.block_size) * factor).reshape(n, units)

        def backprop(dy: np.ndarray) -> np.ndarray:
            check_output_grad("BlockDropout", dy, y.shape)
            return (dy.reshape(n, -1, self.block_size) * factor).reshape(n, units)

        return y, backprop

    def _forward_gpu(self, x, mask, mask_checked: bool) -> Tuple[object, Backprop]:
        from condnn.gpu import training
        if on_gpu(mask):
            if not mask_checked:
                training.check_mask("BlockDropout: mask", mask)
        else:       # drawn here, or the caller's: checked on the host, then uploaded
            mask = to_device(self._check_mask(mask, x).view(np.uint8), "gpu")
        y = training.block_dropout(x, mask, self.block_size, self.keep_rate)

        def backprop(dy):
            check_output_grad("BlockDropout", dy, y.shape)
            return training.block_dropout(dy, mask, self.block_size, self.keep_rate)

        return y, backprop

    def __repr__(self) -> str:
        return f"BlockDropout(block_size={self.block_size}, keep_rate={self.keep_rate})"
