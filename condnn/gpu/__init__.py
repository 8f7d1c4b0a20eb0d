"""condnn's GPU backend: the block-sparse product on PyCUDA ``GPUArray``s.

PyCUDA is an optional extra (``pip install "condnn[gpu]"``).  Importing this package does not
import it, so ``condnn.gpu`` can always be imported; :func:`available` says whether the
backend can run here and :func:`unavailable_reason` why not.  The kernels are CUDA C
(``block_sparse.cu``, ``masks.cu``), compiled by PyCUDA with nvcc the first time one is
needed in a process; dense GEMMs go to cuBLAS (see :mod:`condnn.gpu._cublas`).

Example::

    import condnn.gpu
    if condnn.gpu.available():
        o = condnn.gpu.sparse_dot(a, amask, b, omask, c, 64)   # GPUArrays in and out
    else:
        print(condnn.gpu.unavailable_reason())
"""
from condnn.gpu._runtime import available, unavailable_reason
from condnn.gpu.sparse import sparse_dot, sparse_dot_backward

__all__ = ["available", "unavailable_reason", "sparse_dot", "sparse_dot_backward"]
