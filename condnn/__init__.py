"""condnn: conditional-computation neural networks with fast block-sparse kernels."""
from condnn.block_weights import BlockWeights
from condnn.sparse import (get_num_threads, set_num_threads, sparse_dot,
                           sparse_dot_backward)

__version__ = "0.1.0"

from condnn import device, initializers, layers, optim  # noqa: E402
from condnn.checkpoint import (Checkpoint, CheckpointError, load,  # noqa: E402
                               restore)
from condnn.gradcheck import (GradcheckError, GradcheckReport,  # noqa: E402
                              check_gradients, check_layer)
from condnn.initializers import glorot_uniform, he_normal  # noqa: E402
from condnn.layers import (BlockDropout, BlockSparseDense, Dense, Dropout,  # noqa: E402
                           Layer, ReLU, Sequential, Sigmoid, Tanh,
                           softmax_cross_entropy)
from condnn.model import Model  # noqa: E402
from condnn.registry import register_model  # noqa: E402

__all__ = ["sparse_dot", "sparse_dot_backward", "set_num_threads", "get_num_threads",
           "BlockWeights",
           "Model", "register_model", "load", "restore", "Checkpoint", "CheckpointError",
           "Layer", "Dense", "BlockSparseDense", "ReLU", "Tanh", "Sigmoid", "Dropout",
           "BlockDropout", "Sequential", "softmax_cross_entropy",
           "glorot_uniform", "he_normal", "check_gradients", "check_layer",
           "GradcheckError", "GradcheckReport", "layers", "optim", "initializers", "device"]
