"""BlockWeights (the weights stored block by block), frozen layers and for_inference.
The product with BlockWeights is compared with the reference in tests/test_sparse.py."""
import numpy as np
import pytest

import condnn
from condnn import BlockWeights
from condnn.layers import BlockSparseDense
from condnn.models import ConditionalMLP, for_inference


@pytest.mark.parametrize("k, m, bs", [(1, 1, 1), (3, 4, 2), (7, 5, 3), (64, 10, 64),
                                      (130, 70, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layout_and_round_trip(k, m, bs, dtype):
    b = np.random.default_rng(0).standard_normal((k, m)).astype(dtype)
    w = BlockWeights(b.T.copy().T, bs)           # any layout is accepted
    assert w.shape == (k, m) and w.dtype == dtype and w.block_size == bs
    assert w.slabs.shape == (-(-m // bs), k, bs)
    assert w.slabs.flags.c_contiguous and not w.slabs.flags.writeable
    assert np.array_equal(w.to_array(), b)
    last = w.slabs[-1]                           # the last slab, zero-padded
    width = m - (len(w.slabs) - 1) * bs
    assert np.array_equal(last[:, :width], b[:, m - width:]) and not last[:, width:].any()
    b[0, 0] += 1                                 # a copy: later changes do not reach it
    assert w.to_array()[0, 0] != b[0, 0]


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="b must"):
        BlockWeights([[1.0]], 1)
    with pytest.raises(TypeError, match="dtype float32 or float64"):
        BlockWeights(np.ones((2, 2), np.int64), 1)
    with pytest.raises(ValueError, match="2-D"):
        BlockWeights(np.ones(4, np.float32), 1)
    with pytest.raises(ValueError, match="block_size must be at least 1"):
        BlockWeights(np.ones((2, 2), np.float32), 0)


def _problem(rng, n=5, k=8, m=12, bs=4):
    a = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal((k, m)).astype(np.float32)
    amask = rng.random((n, k // bs)) < 0.5
    omask = rng.random((n, m // bs)) < 0.5
    return a, amask, b, omask, bs


def test_product_checks_its_arguments_against_the_stored_shape():
    a, amask, b, omask, bs = _problem(np.random.default_rng(1))
    w = BlockWeights(b, bs)
    with pytest.raises(ValueError, match="is not the block size 4"):
        condnn.sparse_dot(a, np.ones((5, 4), bool), w, np.ones((5, 6), bool), None, 2)
    with pytest.raises(ValueError, match=r"b must have shape \(7, m\)"):
        condnn.sparse_dot(a[:, :7], None, w, omask, None, bs)
    with pytest.raises(TypeError, match="mixed dtypes"):
        condnn.sparse_dot(a.astype(np.float64), amask, w, omask, None, bs)
    with pytest.raises(ValueError, match="omask must have shape"):
        condnn.sparse_dot(a, amask, w, omask[:, :2], None, bs)
    with pytest.raises(TypeError, match="forward product only"):
        condnn.sparse_dot_backward(np.ones((5, 12), np.float32), a, amask, w, omask, bs)


def test_product_without_masks_and_with_out():
    a, amask, b, omask, bs = _problem(np.random.default_rng(2))
    w = BlockWeights(b, bs)
    np.testing.assert_allclose(condnn.sparse_dot(a, None, w, None, None, bs), a @ b,
                               rtol=1e-5, atol=1e-5)
    out = np.full((5, 12), np.nan, np.float32)
    got = condnn.sparse_dot(a, amask, w, omask, None, bs, out=out)
    assert got is out
    np.testing.assert_allclose(out, condnn.sparse_dot(a, amask, b, omask, None, bs),
                               rtol=1e-5, atol=1e-6)


def test_frozen_layer_evaluates_like_the_layer_and_refuses_training():
    rng = np.random.default_rng(3)
    a, amask, _, omask, bs = _problem(rng)
    fc = BlockSparseDense(8, 12, bs, rng=0)
    expected, _ = fc(a, False, amask=amask, omask=omask)
    fc.freeze()
    assert isinstance(fc.frozen, BlockWeights) and not fc.params["W"].flags.writeable
    got, backprop = fc(a, False, amask=amask, omask=omask)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    dense, _ = fc(a, False)                  # no mask: BLAS on W itself
    np.testing.assert_allclose(dense, a @ fc.params["W"] + fc.params["b"], rtol=1e-6)
    assert backprop(np.ones_like(got)).shape == a.shape     # gradients of evaluation
    with pytest.raises(RuntimeError, match="frozen for evaluation"):
        fc(a, True, amask=amask, omask=omask)
    with pytest.raises(ValueError, match="read-only"):
        fc.params["W"] += 1
    fc.params["W"] = np.zeros((8, 12), np.float32)
    with pytest.raises(RuntimeError, match="W was replaced after freeze"):
        fc(a, False, amask=amask, omask=omask)


def test_for_inference_is_a_snapshot_with_the_same_outputs():
    model = ConditionalMLP(n_in=20, n_classes=3, hidden=[[4, 8], [4, 8]], tau=0.5)
    x = np.random.default_rng(4).random((30, 20), dtype=np.float32)
    fast = for_inference(model)
    before = model.trace(x, False)
    got = fast.trace(x, False)
    np.testing.assert_allclose(got.logits, before.logits, rtol=1e-5, atol=1e-6)
    for mask, mask_fast in zip(before.masks, got.masks):
        assert np.array_equal(mask, mask_fast)
    np.testing.assert_allclose(fast.trace(x, False, execution="dense").logits, before.logits,
                               rtol=1e-5, atol=1e-5)
    model.fc1.params["W"] *= 2                # the original still trains; the copy stays
    assert model.fc1.params["W"].flags.writeable
    np.testing.assert_array_equal(fast.trace(x, False).logits, got.logits)
    with pytest.raises(RuntimeError, match="frozen"):
        fast.trace(x, True)


def test_float16_storage_rounds_each_weight_and_halves_the_memory():
    b = np.random.default_rng(5).standard_normal((70, 130)).astype(np.float32)
    b[0, :3] = [1e-6, -7e-8, 65519.0]             # a subnormal, one that rounds to 0, the top
    w = BlockWeights(b, 64, storage=np.float16)
    assert w.dtype == np.float32 and w.slabs.dtype == np.float16
    assert w.nbytes == BlockWeights(b, 64).nbytes // 2
    rounded = b.astype(np.float16).astype(np.float32)
    assert np.array_equal(w.to_array(), rounded) and w.to_array().dtype == np.float32
    assert "storage=float16" in repr(w)
    assert BlockWeights(b, 64, storage="float32").slabs.dtype == np.float32
    special = np.array([[np.inf, -np.inf, np.nan]], np.float32)   # kept as they are
    assert np.array_equal(BlockWeights(special, 1, storage="float16").to_array(), special,
                          equal_nan=True)


@pytest.mark.parametrize("b, storage, error, message", [
    (np.full((2, 2), 65520.0, np.float32), np.float16, ValueError, "too large for float16"),
    (np.ones((2, 2), np.float64), np.float16, ValueError, "float16 for a float32 b"),
    (np.ones((2, 2), np.float32), np.int8, ValueError, "storage must be"),
    (np.ones((2, 2), np.float32), "half precision", TypeError, "storage must be"),
])
def test_bad_storage_is_named(b, storage, error, message):
    with pytest.raises(error, match=message):
        BlockWeights(b, 1, storage=storage)


def test_float16_weights_serve_float32_products_only():
    a, amask, b, omask, bs = _problem(np.random.default_rng(6))
    w = BlockWeights(b, bs, storage=np.float16)
    with pytest.raises(TypeError, match="mixed dtypes"):
        condnn.sparse_dot(a.astype(np.float64), amask, w, omask, None, bs)
    with pytest.raises(TypeError, match="float16 weights serve float32 products"):
        condnn._sparse.forward(a, amask, w.slabs[0], omask, None, bs,
                               np.empty((5, 12), np.float32))


def test_layer_frozen_in_float16_computes_every_product_with_the_rounded_weights():
    rng = np.random.default_rng(7)
    a, amask, _, omask, bs = _problem(rng)
    fc = BlockSparseDense(8, 12, bs, rng=0)
    W = fc.params["W"].copy()
    fc.freeze(np.float16)
    rounded = W.astype(np.float16).astype(np.float32)
    assert fc.frozen.slabs.dtype == np.float16
    assert np.array_equal(fc.params["W"], rounded) and not fc.params["W"].flags.writeable
    masked, _ = fc(a, False, amask=amask, omask=omask)
    want = condnn.sparse_dot(a, amask, rounded, omask, fc.params["b"], bs)
    np.testing.assert_allclose(masked, want, rtol=1e-6, atol=1e-6)
    dense, _ = fc(a, False)                       # BLAS, on the same rounded weights
    np.testing.assert_allclose(dense, a @ rounded + fc.params["b"], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="float16 for a float32 b"):
        BlockSparseDense(8, 12, bs, rng=0, dtype=np.float64).freeze(np.float16)


def test_for_inference_in_float16_leaves_the_model_and_its_policies_alone():
    model = ConditionalMLP(n_in=20, n_classes=3, hidden=[[4, 8], [4, 8]], tau=0.5)
    x = np.random.default_rng(8).random((30, 20), dtype=np.float32)
    before = {name: value.copy() for name, value in model.named_params().items()}
    half = for_inference(model, storage=np.float16)
    for name, value in model.named_params().items():     # the original is untouched
        assert np.array_equal(value, before[name]) and value.flags.writeable, name
    sparse_weights = {path + "W" for path, layer in half.walk()
                      if isinstance(layer, BlockSparseDense)}
    assert len(sparse_weights) == 3
    for name, value in half.named_params().items():
        rounded = before[name].astype(np.float16).astype(np.float32)
        assert np.array_equal(value, rounded if name in sparse_weights else before[name]), name
    got = half.trace(x, False)
    # The same function of the rounded weights, whichever execution computes it.
    np.testing.assert_allclose(half.trace(x, False, execution="dense").logits, got.logits,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.logits, model.trace(x, False).logits, atol=2e-2)
