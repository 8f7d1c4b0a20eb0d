"""The evaluation pass of a frozen conditional or dense MLP (for_inference), which skips
the per-layer checks and closures: the same results as the general pass, bit for bit."""
import copy

import numpy as np
import pytest

from condnn.layers import Dense
from condnn.models import ConditionalMLP, DenseMLP, for_inference


def _general_pass(model):
    """A copy of ``model`` whose traces take the general path of every layer."""
    general = copy.deepcopy(model)
    general._is_frozen = lambda: False
    return general


def _assert_same_trace(got, expected):
    assert np.array_equal(got.logits, expected.logits)
    assert len(got.masks) == len(expected.masks) and len(got.probs) == len(expected.probs)
    for a, b in zip(got.masks, expected.masks):
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b)
    for a, b in zip(got.probs, expected.probs):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shared, storage", [(0, None), (2, None), (2, np.float16)])
@pytest.mark.parametrize("mode", [None, "sample", "threshold"])
def test_frozen_evaluation_equals_the_general_pass(dtype, shared, storage, mode):
    if storage is not None and dtype == "float64":
        pytest.skip("float16 storage serves float32 models")
    rng = np.random.default_rng(3)
    model = ConditionalMLP(n_in=20, n_classes=3, hidden=[[6, 8], [6, 8], [6, 8]], tau=0.5,
                           shared_blocks=shared, dtype=dtype, seed=1,
                           input_mean=rng.random(20).astype(dtype),
                           mode="sample" if mode is None else "threshold")
    x = rng.random((40, 20)).astype(dtype)
    model.calibrate(x)
    frozen = for_inference(model, storage)
    general = _general_pass(frozen)        # the same generators: sampled masks agree too
    for batch in (1, 7, 40):
        for start in range(0, len(x), batch):
            xb = x[start:start + batch]
            _assert_same_trace(frozen.trace(xb, False, mode=mode),
                               general.trace(xb, False, mode=mode))


def test_frozen_evaluation_keeps_a_block_on_without_shared_blocks():
    model = ConditionalMLP(n_in=10, n_classes=2, hidden=[[4, 4]], tau=0.25, seed=0)
    model.policy1.params["d"][:] = -50.0      # no block above 0.5 for any example
    frozen = for_inference(model)
    trace = frozen.trace(np.random.default_rng(0).random((5, 10), dtype=np.float32), False)
    assert (trace.masks[0].sum(axis=1) == 1).all()


def test_frozen_trace_refuses_backprop_and_other_passes_still_work():
    model = ConditionalMLP(n_in=12, n_classes=3, hidden=[[4, 4], [4, 4]], tau=0.5, seed=2)
    frozen = for_inference(model)
    x = np.random.default_rng(1).random((6, 12), dtype=np.float32)
    trace = frozen.trace(x, False)
    with pytest.raises(RuntimeError, match="frozen copy for evaluation"):
        trace.backprop(np.ones((6, 3), np.float32))
    # Given masks, the dense execution and bad inputs take the general path, as before.
    given = frozen.trace(x, False, masks=trace.masks)
    assert np.array_equal(given.logits, trace.logits)
    np.testing.assert_allclose(frozen.trace(x, False, execution="dense").logits,
                               trace.logits, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="12 columns"):
        frozen.trace(x[:, :10], False)
    with pytest.raises(TypeError, match="dtype float32"):
        frozen.trace(x.astype(np.float64), False)
    with pytest.raises(ValueError, match="mode must be one of"):
        frozen.trace(x, False, mode="soft")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("centred", [False, True])
def test_frozen_dense_evaluation_equals_the_general_pass(dtype, centred):
    rng = np.random.default_rng(4)
    model = DenseMLP(n_in=20, n_classes=3, hidden=[16, 12, 8], dtype=dtype, seed=2,
                     input_mean=rng.random(20).astype(dtype) if centred else None)
    for _, layer in model.walk():           # biases away from 0, so that adding them shows
        for value in layer.params.values():
            value += rng.standard_normal(value.shape).astype(dtype) * 0.1
    frozen = for_inference(model)
    general = _general_pass(frozen)
    x = rng.standard_normal((33, 20)).astype(dtype)
    for batch in (1, 5, 33):
        for start in range(0, len(x), batch):
            got = frozen.trace(x[start:start + batch], False)
            want = general.trace(x[start:start + batch], False)
            assert got.masks == [] and got.probs == []
            assert got.logits.dtype == want.logits.dtype and np.array_equal(got.logits,
                                                                            want.logits)
    np.testing.assert_allclose(frozen.trace(x, False).logits, model.trace(x, False).logits,
                               rtol=1e-6, atol=1e-6)


def test_a_frozen_dense_net_is_not_trained():
    model = DenseMLP(n_in=6, n_classes=2, hidden=[4], seed=0)
    frozen = for_inference(model)
    x = np.random.default_rng(2).random((3, 6), dtype=np.float32)
    with pytest.raises(RuntimeError, match="DenseMLP: this model is a frozen copy"):
        frozen.trace(x, False).backprop(np.ones((3, 2), np.float32))
    with pytest.raises(RuntimeError, match="Dense: this layer is frozen"):
        frozen.trace(x, True)
    with pytest.raises(ValueError, match="read-only"):
        frozen.fc1.params["W"][0, 0] = 1.0
    with pytest.raises(ValueError, match="stays on the CPU"):
        frozen.fc1.check_movable("gpu")
    # The model it was copied from trains as before, and bad inputs still say what is wrong.
    assert not model.fc1.frozen and model.fc1.params["W"].flags.writeable
    model.trace(x, True).backprop(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="6 columns"):
        frozen.trace(x[:, :5], False)


def test_dense_layer_freeze_leaves_evaluation_alone():
    layer = Dense(5, 3, rng=0)
    x = np.ones((2, 5), np.float32)
    before, _ = layer(x, False)
    layer.freeze()
    after, _ = layer(x, False)
    assert layer.frozen and np.array_equal(before, after)
    assert not layer.params["b"].flags.writeable


def test_a_dense_layer_on_the_gpu_is_not_frozen(monkeypatch):
    import condnn.layers.dense as dense_module
    layer = Dense(4, 2, rng=0)
    monkeypatch.setattr(dense_module, "on_gpu", lambda x: True)
    with pytest.raises(ValueError, match="on the GPU"):
        layer.freeze()
    assert not layer.frozen and layer.params["W"].flags.writeable
