"""One team of threads at a time: condnn's OpenMP kernels or the BLAS's.

Both libraries keep their worker threads spinning for a while after each call.  A training
step alternates between the two, so with both at two threads on two cores each team's
spinning workers took the cores from the other: a step of the default condnet took 110 ms
(2 + 2 threads) against 53 ms with the BLAS on one thread, and a step of its dense twin 117
ms against 92 ms with condnn's kernels on one thread.
"""
import contextlib
from typing import Iterator

from condnn.sparse import get_num_threads, set_num_threads


@contextlib.contextmanager
def one_team(block_sparse: bool) -> Iterator[None]:
    """For the block of code, condnn's kernels keep their threads and the BLAS runs on one
    (``block_sparse``: the heavy products are condnn's), or the other way round."""
    from threadpoolctl import threadpool_limits
    if block_sparse:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    previous = get_num_threads()
    set_num_threads(1)
    try:
        yield
    finally:
        set_num_threads(previous)
