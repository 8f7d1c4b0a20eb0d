"""A frozen copy of a model for fast evaluation."""
import copy

from condnn.layers.block_sparse_dense import BlockSparseDense
from condnn.layers.dense import Dense
from condnn.subnormals import flush_subnormals


def for_inference(model, storage=None):
    """A copy of ``model`` for evaluation only: every :class:`BlockSparseDense` in it is
    frozen (:meth:`BlockSparseDense.freeze`), so its masked products read the weights block
    by block, and so is every :class:`Dense` (:meth:`Dense.freeze`).  It computes the
    outputs of ``model`` (to rounding); the models of :mod:`condnn.models` evaluate their
    frozen copies in a pass without the checks and closures that training needs.  It is a
    snapshot: training ``model`` further does not change it, and training the copy is an
    error.  Its parameters' subnormal numbers are 0 (see :mod:`condnn.subnormals`: on many
    x86 cores they slow every product that reads them).

    ``storage=np.float16`` stores those layers' weights in half precision (a float32 model):
    half their memory, and faster products where they wait on memory.  The copy then
    computes the outputs of ``model`` with those weights rounded to float16, in float32
    arithmetic; its test error is that of the rounded weights (other parameters, the
    policies' among them, stay as they are).

    Example:
        >>> import numpy as np
        >>> from condnn.models import ConditionalMLP
        >>> model = ConditionalMLP(n_in=8, n_classes=3, hidden=[[4, 4]], tau=0.5)
        >>> x = np.random.default_rng(0).random((5, 8), dtype=np.float32)
        >>> fast = for_inference(model)
        >>> bool(np.allclose(fast.trace(x, False).logits, model.trace(x, False).logits))
        True
        >>> half = for_inference(model, storage=np.float16)
        >>> bool(np.allclose(half.trace(x, False).logits, model.trace(x, False).logits,
        ...                  atol=1e-2))
        True
    """
    frozen = copy.deepcopy(model)
    for _, layer in frozen.walk():
        for value in layer.params.values():
            flush_subnormals(value)
        if isinstance(layer, BlockSparseDense):
            layer.freeze(storage)
        elif isinstance(layer, Dense):
            layer.freeze()
    return frozen
