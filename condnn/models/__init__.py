"""Block models: the conditional MLP and its baselines, with one interface
(``trace``, ``products``; see :mod:`condnn.models.trace`)."""
from condnn.models.block_dropout_mlp import BlockDropoutMLP
from condnn.models.conditional_mlp import ConditionalMLP
from condnn.models.dense_mlp import DenseMLP
from condnn.models.inference import for_inference
from condnn.models.trace import EXECUTIONS, Product, Trace

__all__ = ["ConditionalMLP", "DenseMLP", "BlockDropoutMLP", "Trace", "Product", "EXECUTIONS",
           "for_inference"]
