"""The evaluation pass of a frozen conditional MLP (for_inference), which skips the
per-layer checks and closures: the same results as the general pass, bit for bit."""
import copy

import numpy as np
import pytest

from condnn.models import ConditionalMLP, for_inference


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
