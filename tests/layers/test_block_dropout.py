import numpy as np
import pytest

from condnn import check_layer
from condnn.layers import BlockDropout, BlockSparseDense, Dense


def test_sample_mask_has_block_shape_and_keep_rate():
    drop = BlockDropout(4, 0.25, rng=0)
    mask = drop.sample_mask(1000, 64)
    assert mask.shape == (1000, 16) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    assert abs(mask.mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / mask.size)


def test_given_mask_zeroes_blocks_and_rescales():
    drop = BlockDropout(2, 0.5, rng=0)
    x = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
    mask = np.array([[1, 0], [0, 1]], dtype=bool)
    for train in (True, False):          # a given mask applies in both modes
        y, backprop = drop.forward(x, train, mask=mask)
        np.testing.assert_array_equal(y, [[2, 4, 0, 0], [0, 0, 14, 16]])
        np.testing.assert_array_equal(backprop(np.ones_like(x)), [[2, 2, 0, 0], [0, 0, 2, 2]])


def test_without_mask_samples_in_training_and_is_identity_in_evaluation():
    drop = BlockDropout(3, 0.5, rng=1)
    x = np.ones((50, 12))
    y, _ = drop.forward(x, True)
    blocks = y.reshape(50, 4, 3)
    assert np.all(blocks.min(axis=2) == blocks.max(axis=2))   # whole blocks on or off
    assert 0 < (y == 0).mean() < 1
    np.testing.assert_array_equal(drop.forward(x, False)[0], x)


def test_mask_feeds_block_sparse_layer():
    rng = np.random.default_rng(2)
    drop = BlockDropout(4, 0.5, rng=3)
    sparse = BlockSparseDense(16, 10, 4, rng=0, dtype=np.float64)
    dense = Dense(16, 10, dtype=np.float64)
    dense.params["W"][...] = sparse.params["W"]
    x = rng.standard_normal((8, 16))
    mask = drop.sample_mask(8, 16)
    h, _ = drop.forward(x, True, mask=mask)
    y_sparse, _ = sparse.forward(h, True, amask=mask)
    np.testing.assert_allclose(y_sparse, dense.forward(h, True)[0], rtol=1e-12, atol=1e-12)


def test_gradients_match_finite_differences():
    x = np.random.default_rng(4).standard_normal((5, 8))
    check_layer(BlockDropout(2, 0.6, rng=0), x)
    check_layer(BlockDropout(2, 0.6, rng=0), x,
                forward_kwargs={"mask": np.array([[1, 0, 1, 1]] * 5, np.uint8)})


@pytest.mark.parametrize("mask, error, match", [
    (np.ones((2, 3), np.uint8), ValueError, r"mask must have shape \(2, 2\)"),
    (np.ones((2, 2), np.float32), TypeError, "mask must have dtype bool, int8 or uint8"),
    (np.full((2, 2), 2, np.uint8), ValueError, "mask must hold only 0 and 1"),
    (np.full((2, 2), -1, np.int8), ValueError, "mask must hold only 0 and 1"),
    ([[1, 1], [1, 1]], TypeError, "mask must be a numpy.ndarray"),
])
def test_rejects_bad_masks(mask, error, match):
    with pytest.raises(error, match=match):
        BlockDropout(2, 0.5, rng=0).forward(np.ones((2, 4)), True, mask=mask)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"keep_rate must be in \(0, 1\]"):
        BlockDropout(2, 0.0)
    with pytest.raises(ValueError, match="block_size 3 does not divide the layer's width 4"):
        BlockDropout(3, 0.5, rng=0).forward(np.ones((2, 4)), True)
