"""Fully connected layer computed block-sparsely: the conditional layer's product."""
from functools import partial
from typing import Optional, Tuple

import numpy as np

from condnn.block_weights import BlockWeights
from condnn.device import check_same_device, on_gpu
from condnn.initializers import Initializer, glorot_uniform
from condnn.layers.base import (Backprop, Layer, check_input, check_output_grad, check_size,
                                float_dtype)
from condnn.rng import RngLike
from condnn.sparse import sparse_dot, sparse_dot_backward


class BlockSparseDense(Layer):
    """``y = ((x * Am) @ W + b) * Om``, with block masks Am of x and Om of y.

    Shapes: x (n, n_in), W (n_in, n_out), b (n_out,), y (n, n_out);
    amask (n, n_in / block_size) and omask (n, n_out / block_size) of 0/1, either or both
    None (all blocks on).  Blocks that are off are never computed: with both masks on at
    rate tau the cost is about tau^2 of the dense product.

    The block size must divide n_in only when amask is given, n_out only when omask is
    given: a 10-way output layer after a masked hidden layer takes an amask and no omask.

    On the GPU (after ``model.to_gpu()``), x, the masks and dy are GPU arrays and the
    products run there (:func:`condnn.gpu.sparse_dot`).

    Backprop, with G = dy masked by Om: ``dW += (x * Am).T @ G``, ``db += sum_i G[i]``,
    returns ``dx = (G @ W.T) * Am`` (see :func:`condnn.sparse_dot_backward`), or None with
    ``input_grad=False``, which skips that product for a layer whose input is the data.

    Example:
        >>> fc = BlockSparseDense(4, 4, block_size=2, rng=0)
        >>> mask = np.array([[1, 0]], np.uint8)
        >>> y, _ = fc.forward(np.ones((1, 4), np.float32), True, amask=mask, omask=mask)
        >>> y[0, 2:].tolist()
        [0.0, 0.0]
    """

    runs_on_gpu = True

    def __init__(self, n_in: int, n_out: int, block_size: int, *,
                 init: Initializer = glorot_uniform, rng: RngLike = None,
                 dtype=np.float32, input_grad: bool = True) -> None:
        super().__init__()
        self.input_grad = bool(input_grad)
        self.n_in = check_size("n_in", n_in)
        self.n_out = check_size("n_out", n_out)
        self.block_size = check_size("block_size", block_size)
        self.dtype = float_dtype(dtype)
        self.add_param("W", np.asarray(init((self.n_in, self.n_out), rng, self.dtype),
                                       dtype=self.dtype))
        self.add_param("b", np.zeros(self.n_out, dtype=self.dtype))
        self.frozen: Optional[BlockWeights] = None

    def freeze(self, storage=None) -> None:
        """Fixes the weights for evaluation: W becomes read-only and masked products use
        a block-by-block copy of it (:class:`condnn.BlockWeights`, faster at small batches).
        Training a frozen layer is an error; use :func:`condnn.models.for_inference`,
        which freezes a copy of a model.

        ``storage=np.float16`` (float32 layers) stores that copy in half precision, and
        replaces W by the same rounded weights, so that every product of the layer, masked
        or not, computes with the weights it stores."""
        W = self.params["W"]
        self.frozen = BlockWeights(W, self.block_size, storage)
        if self.frozen.slabs.dtype != W.dtype:
            W = self.params["W"] = W.astype(self.frozen.slabs.dtype).astype(W.dtype)
        W.flags.writeable = False
        self._frozen_source = W

    def check_movable(self, device: str) -> None:
        super().check_movable(device)
        if device == "gpu" and self.frozen is not None:
            raise ValueError("BlockSparseDense: a layer frozen for evaluation (freeze / "
                             "for_inference) stays on the CPU; move the model it was copied "
                             "from instead")

    def eval_weights(self, masked: bool):
        """The weights of a product in evaluation: the block-by-block copy of a frozen
        layer for a ``masked`` product, else W (an error if W was replaced after
        :meth:`freeze`)."""
        return self._weights(False, masked)

    def _weights(self, train: bool, masked: bool):
        """The weights a product uses: the block-by-block copy of a frozen layer for a
        masked product in evaluation, else W."""
        W = self.params["W"]
        if self.frozen is None:
            return W
        if train:
            raise RuntimeError("BlockSparseDense: this layer is frozen for evaluation "
                               "(freeze / for_inference); train the model it was copied from")
        if W is not self._frozen_source:
            raise RuntimeError("BlockSparseDense: W was replaced after freeze(); freeze "
                               "again to use the new weights")
        return self.frozen if masked else W

    def forward(self, x: np.ndarray, train: bool, amask: Optional[np.ndarray] = None,
                omask: Optional[np.ndarray] = None, masks_checked: bool = False,
                relu: bool = False) -> Tuple[np.ndarray, Backprop]:
        """``masks_checked``: the masks are known to hold only 0 and 1 (a model's own,
        from its policies), so the GPU need not check them, which waits for the device.
        The CPU checks them either way (cheaply).

        ``relu``: y is the ReLU of the product, applied by the kernel while each block of
        outputs is in the caches.  The backprop is still the product's: the caller applies
        the ReLU's derivative (which y tells: it is 1 where y > 0)."""
        check_input("BlockSparseDense", x, self.n_in, self.dtype)
        W, b, block_size = self.params["W"], self.params["b"], self.block_size
        check_same_device("BlockSparseDense", x, W)
        weights = self._weights(train, amask is not None or omask is not None)
        if amask is not None and self.n_in % block_size:
            raise ValueError(f"BlockSparseDense: amask needs block_size {block_size} to "
                             f"divide n_in = {self.n_in}")
        if omask is not None and self.n_out % block_size:
            raise ValueError(f"BlockSparseDense: omask needs block_size {block_size} to "
                             f"divide n_out = {self.n_out}")
        if on_gpu(x):
            from condnn import gpu
            product = partial(gpu.sparse_dot, check_masks=not masks_checked, relu=relu)
            gradients = partial(gpu.sparse_dot_backward, check_masks=not masks_checked)
        else:
            product, gradients = partial(sparse_dot, relu=relu), sparse_dot_backward
        y = product(x, amask, weights, omask, b, block_size)

        def backprop(dy: np.ndarray) -> np.ndarray:
            check_output_grad("BlockSparseDense", dy, y.shape)
            grad_W = self.grads["W"]
            if on_gpu(x):
                dx, dW, db = gradients(dy, x, amask, W, omask, block_size)
            else:
                # The kernel adds into a C-contiguous accumulator itself: no (n_in, n_out)
                # temporary, and no pass over the whole of it (the default condnet's
                # 3072 x 3072 layer).
                into = grad_W if grad_W.flags.c_contiguous and grad_W.flags.writeable else None
                dx, dW, db = gradients(dy, x, amask, W, omask, block_size, db_into=into,
                                       compute_da=self.input_grad)
            if dW is not grad_W:
                grad_W += dW
            self.grads["b"] += db
            return dx if self.input_grad else None

        return y, backprop

    def __repr__(self) -> str:
        return (f"BlockSparseDense({self.n_in}, {self.n_out}, block_size={self.block_size}, "
                f"dtype={self.dtype})")
