"""The checks done in C for the common arguments of sparse_dot (``forward_common``): the
same results as the fully checked path, and anything else left to that path."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import condnn
from condnn import _sparse
from condnn.sparse_reference import reference_sparse_dot


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), kb=st.integers(1, 4), mb=st.integers(1, 4),
       bs=st.sampled_from([1, 3, 8]), dtype=st.sampled_from([np.float32, np.float64]),
       variant=st.sampled_from(["ss", "sf", "fs"]), mask_dtype=st.sampled_from(
           [np.uint8, np.int8, np.bool_]), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_same_result_as_the_checked_path(n, kb, mb, bs, dtype, variant, mask_dtype, bias,
                                         seed):
    rng = np.random.default_rng(seed)
    k, m = kb * bs, mb * bs
    a = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal((k, m)).astype(dtype)
    c = rng.standard_normal(m).astype(dtype) if bias else None
    amask = (rng.random((n, kb)) < 0.5).astype(mask_dtype) if variant[0] == "s" else None
    omask = (rng.random((n, mb)) < 0.5).astype(mask_dtype) if variant[1] == "s" else None
    fast = _sparse.forward_common(a, amask, b, omask, c, bs)
    assert fast is not None, "these are the common arguments"
    checked = condnn.sparse_dot(a, amask, b, omask, c, bs, out=np.empty((n, m), dtype))
    assert fast.dtype == dtype and fast.shape == (n, m)
    assert np.array_equal(fast, checked)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fast, reference_sparse_dot(a, amask, b, omask, c, bs),
                               rtol=tol, atol=tol)


def _arguments():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 8)).astype(np.float32)
    b = rng.standard_normal((8, 8)).astype(np.float32)
    mask = np.ones((3, 2), np.uint8)
    return dict(a=a, amask=mask, b=b, omask=mask, c=np.zeros(8, np.float32), block_size=4)


@pytest.mark.parametrize("change", [
    dict(a=np.ones((3, 8), np.float16)),                        # not float32/64
    dict(c=np.zeros(8, np.float64)),                            # mixed dtypes
    dict(a=np.ones((3, 8), ">f4")),                             # non-native byte order
    dict(a=np.ones((8, 3), np.float32).T),                      # a's rows not unit-stride
    dict(a=np.ma.masked_array(np.ones((3, 8), np.float32))),    # a subclass
    dict(amask=np.ones((2, 3), np.uint8).T),                    # mask not C-contiguous
    dict(amask=np.full((3, 2), 2, np.uint8)),                   # mask values
    dict(amask=np.full((3, 2), -1, np.int8)),
    dict(omask=np.ones((3, 2), np.int32)),                      # mask dtype
    dict(omask=np.ones((3, 3), np.uint8)),                      # mask shape
    dict(block_size=3),                                         # does not divide
    dict(block_size=4.0),
    dict(block_size=True),
    dict(amask=None, omask=None),                               # dense: BLAS
    dict(c=np.zeros(7, np.float32)),
    dict(b=np.ones((7, 8), np.float32)),
    dict(a=np.ones((0, 8), np.float32), amask=np.ones((0, 2), np.uint8),
         omask=np.ones((0, 2), np.uint8)),
])
def test_anything_else_is_left_to_the_checked_path(change):
    arguments = {**_arguments(), **change}
    assert _sparse.forward_common(**arguments) is None


def test_block_weights_of_another_shape_are_left_to_the_checked_path():
    w = condnn.BlockWeights(np.ones((8, 12), np.float32), 4)
    a = np.ones((3, 8), np.float32)
    omask = np.ones((3, 3), np.uint8)
    assert _sparse.forward_common(a, None, w.slabs, omask, None, 4, 12) is not None
    # Same number of blocks, other sizes: the padding must not be read as weights.
    assert _sparse.forward_common(a[:, :7], None, w.slabs, omask, None, 4, 12) is None
    assert _sparse.forward_common(a, None, w.slabs, omask[:, :2], None, 4, 11) is None
    assert _sparse.forward_common(a, None, w.slabs, omask, None, 2, 12) is None
