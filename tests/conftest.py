"""Fixtures shared by the test modules."""
import pytest

import condnn


@pytest.fixture(scope="module")
def one_thread():
    """Tiny products run fastest on one thread (more threads only add synchronisation), for
    the kernels and, when threadpoolctl is there, the BLAS.  Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = condnn.get_num_threads()
    condnn.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
    else:
        with threadpool_limits(limits=1):
            yield
    condnn.set_num_threads(previous)
