import numpy as np
import pytest

from condnn import check_layer
from condnn.layers import BlockSparseDense
from condnn.sparse_reference import reference_sparse_dot

# (n_in, n_out, block_size): the block size divides both, only n_in, only n_out.
SHAPES = [(8, 6, 2), (8, 10, 4), (10, 8, 4), (9, 6, 3)]
VARIANTS = ["ss", "sf", "fs", "none"]


def masks_for(variant, n, n_in, n_out, block_size, rng):
    """The masks of ``variant``, or None if the block size does not divide a masked width."""
    use_a, use_o = variant in ("ss", "sf"), variant in ("ss", "fs")
    if (use_a and n_in % block_size) or (use_o and n_out % block_size):
        return None
    amask = (rng.random((n, n_in // block_size)) < 0.6).astype(np.uint8) if use_a else None
    omask = (rng.random((n, n_out // block_size)) < 0.6).astype(np.uint8) if use_o else None
    return amask, omask


CASES = [(variant, shape) for variant in VARIANTS for shape in SHAPES
         if masks_for(variant, 1, *shape, np.random.default_rng(0)) is not None]


def test_every_variant_has_a_non_dividing_case():
    for variant in ("sf", "fs", "none"):
        assert any(v == variant and (s[0] % s[2] or s[1] % s[2]) for v, s in CASES)


@pytest.mark.parametrize("variant, shape", CASES)
def test_forward_matches_reference(variant, shape):
    n_in, n_out, block_size = shape
    rng = np.random.default_rng(4)
    fc = BlockSparseDense(n_in, n_out, block_size, rng=0, dtype=np.float64)
    fc.params["b"][:] = rng.standard_normal(n_out)
    x = rng.standard_normal((7, n_in))
    amask, omask = masks_for(variant, 7, n_in, n_out, block_size, rng)
    y, _ = fc.forward(x, True, amask=amask, omask=omask)
    expected = reference_sparse_dot(x, amask, fc.params["W"], omask, fc.params["b"], block_size)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant, shape", CASES)
def test_gradients_match_finite_differences(variant, shape):
    n_in, n_out, block_size = shape
    rng = np.random.default_rng(5)
    fc = BlockSparseDense(n_in, n_out, block_size, rng=0, dtype=np.float64)
    x = rng.standard_normal((6, n_in))
    amask, omask = masks_for(variant, 6, n_in, n_out, block_size, rng)
    check_layer(fc, x, forward_kwargs={"amask": amask, "omask": omask})


@pytest.mark.parametrize("contiguous", [True, False], ids=["in-place", "strided-grads"])
@pytest.mark.parametrize("variant, shape", CASES[::3])
def test_backprops_add_into_the_gradients(variant, shape, contiguous):
    """Two backprops add up (the kernel adds into the layer's C-contiguous accumulator; a
    strided one gets the sum added)."""
    n_in, n_out, block_size = shape
    rng = np.random.default_rng(7)
    fc = BlockSparseDense(n_in, n_out, block_size, rng=0, dtype=np.float64)
    if not contiguous:
        fc.grads["W"] = np.zeros((n_out, n_in)).T
    accumulator = fc.grads["W"]
    grads = []
    for _ in range(2):
        x = rng.standard_normal((5, n_in))
        amask, omask = masks_for(variant, 5, n_in, n_out, block_size, rng)
        y, backprop = fc.forward(x, True, amask=amask, omask=omask)
        dy = rng.standard_normal(y.shape)
        backprop(dy)
        xm = x if amask is None else x * np.repeat(amask, block_size, axis=1)
        gm = dy if omask is None else dy * np.repeat(omask, block_size, axis=1)
        grads.append(xm.T @ gm)
    assert fc.grads["W"] is accumulator
    np.testing.assert_allclose(fc.grads["W"], grads[0] + grads[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant, shape", CASES[::2])
def test_a_layer_without_input_gradient_gets_the_same_parameter_gradients(variant, shape):
    n_in, n_out, block_size = shape
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, n_in))
    amask, omask = masks_for(variant, 5, n_in, n_out, block_size, rng)
    layers = [BlockSparseDense(n_in, n_out, block_size, rng=0, dtype=np.float64,
                               input_grad=flag) for flag in (True, False)]
    results = []
    for fc in layers:
        y, backprop = fc.forward(x, True, amask=amask, omask=omask)
        results.append(backprop(np.ones_like(y)))
    assert results[0] is not None and results[1] is None
    for name in ("W", "b"):
        np.testing.assert_array_equal(layers[1].grads[name], layers[0].grads[name])


def test_inactive_blocks_get_no_gradient():
    rng = np.random.default_rng(6)
    fc = BlockSparseDense(4, 4, 2, rng=0, dtype=np.float64)
    amask = np.array([[1, 0], [1, 0]], np.uint8)
    omask = np.array([[0, 1], [0, 1]], np.uint8)
    y, backprop = fc.forward(rng.standard_normal((2, 4)), True, amask=amask, omask=omask)
    dx = backprop(np.ones_like(y))
    assert np.all(dx[:, 2:] == 0) and np.all(y[:, :2] == 0)
    assert np.all(fc.grads["W"][2:, :] == 0) and np.all(fc.grads["W"][:, :2] == 0)
    assert np.all(fc.grads["b"][:2] == 0) and np.all(fc.grads["b"][2:] == 2)


def test_output_layer_after_masked_hidden_layer():
    # A 10-way output takes the hidden layer's mask as amask; 10 is not a multiple of 4.
    fc = BlockSparseDense(8, 10, 4, rng=0)
    amask = np.array([[1, 0], [0, 1]], np.uint8)
    y, backprop = fc.forward(np.ones((2, 8), np.float32), True, amask=amask)
    assert y.shape == (2, 10)
    assert backprop(np.ones_like(y)).shape == (2, 8)


def test_mask_needs_dividing_block_size():
    fc = BlockSparseDense(8, 10, 4, rng=0)
    with pytest.raises(ValueError, match="omask needs block_size 4 to divide n_out = 10"):
        fc.forward(np.ones((2, 8), np.float32), True, omask=np.ones((2, 2), np.uint8))
    fc = BlockSparseDense(10, 8, 4, rng=0)
    with pytest.raises(ValueError, match="amask needs block_size 4 to divide n_in = 10"):
        fc.forward(np.ones((2, 10), np.float32), True, amask=np.ones((2, 2), np.uint8))


def test_rejects_mask_of_wrong_shape_and_bad_input():
    fc = BlockSparseDense(8, 8, 4, rng=0)
    with pytest.raises(ValueError, match="amask must have shape"):
        fc.forward(np.ones((2, 8), np.float32), True, amask=np.ones((2, 3), np.uint8))
    with pytest.raises(TypeError, match="x must have dtype float32"):
        fc.forward(np.ones((2, 8), np.float64), True)
    with pytest.raises(ValueError, match="block_size must be at least 1"):
        BlockSparseDense(8, 8, 0)
