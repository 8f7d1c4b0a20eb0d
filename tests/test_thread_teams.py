import pytest
from threadpoolctl import threadpool_info

import condnn
from condnn.thread_teams import one_team


def _blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    previous = condnn.get_num_threads()
    condnn.set_num_threads(2)
    yield
    condnn.set_num_threads(previous)


def test_block_sparse_keeps_condnn_threads_and_limits_the_blas(two_threads):
    before = _blas_threads()
    with one_team(block_sparse=True):
        assert condnn.get_num_threads() == 2
        assert all(n == 1 for n in _blas_threads())
    assert _blas_threads() == before


def test_dense_puts_condnn_on_one_thread_and_restores_it(two_threads):
    before = _blas_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with one_team(block_sparse=False):
            assert condnn.get_num_threads() == 1
            assert _blas_threads() == before
            raise RuntimeError("inside")
    assert condnn.get_num_threads() == 2
