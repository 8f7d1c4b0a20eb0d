"""condnn: conditional-computation neural networks with fast block-sparse kernels."""
from condnn.sparse import (get_num_threads, set_num_threads, sparse_dot,
                           sparse_dot_backward)

__version__ = "0.1.0"

__all__ = ["sparse_dot", "sparse_dot_backward", "set_num_threads", "get_num_threads"]
