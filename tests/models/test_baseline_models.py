"""The dense and block-dropout baselines against plain NumPy."""
import numpy as np
import pytest

import condnn
from condnn.models import BlockDropoutMLP, DenseMLP


pytestmark = pytest.mark.usefixtures("one_thread")


def test_dense_mlp_evaluation_is_the_plain_network():
    model = DenseMLP(n_in=6, n_classes=3, hidden=[5, 4], dropout=0.5, dtype="float64")
    x = np.random.default_rng(0).standard_normal((7, 6))
    h = x
    for fc in model.fcs:
        h = np.maximum(h @ fc.params["W"] + fc.params["b"], 0)
    expected = h @ model.out.params["W"] + model.out.params["b"]
    for execution in ("sparse", "dense", "all_on"):
        trace = model.trace(x, False, execution=execution)
        np.testing.assert_allclose(trace.logits, expected, rtol=1e-12)
        assert trace.masks == []


def test_dense_mlp_gradients_match_finite_differences():
    model = DenseMLP(n_in=6, n_classes=3, hidden=[5, 4], dropout=0.3, dtype="float64")
    condnn.check_layer(model, np.random.default_rng(1).standard_normal((5, 6)))


def test_block_dropout_keeps_blocks_at_the_rate_and_rescales():
    model = BlockDropoutMLP(n_in=6, n_classes=3, hidden=[[40, 2], [40, 2]], keep_rate=0.25,
                            dtype="float64")
    x = np.random.default_rng(2).standard_normal((300, 6))
    trace = model.trace(x, False)              # evaluation samples masks too
    for mask in trace.masks:
        assert abs(mask.mean() - 0.25) < 0.02
    # The same masks by hand: relu, masked, scaled by 1 / keep_rate.
    h = x
    for fc, mask in zip(model.fcs, trace.masks):
        h = np.maximum((h @ fc.params["W"] + fc.params["b"]) * np.repeat(mask, 2, axis=1), 0) / 0.25
    expected = h @ model.out.params["W"] + model.out.params["b"]
    np.testing.assert_allclose(trace.logits, expected, rtol=1e-10, atol=1e-10)


def test_block_dropout_all_on_is_the_unscaled_network():
    model = BlockDropoutMLP(n_in=6, n_classes=3, hidden=[[3, 2]], keep_rate=0.5,
                            dtype="float64")
    x = np.random.default_rng(3).standard_normal((4, 6))
    h = np.maximum(x @ model.fcs[0].params["W"] + model.fcs[0].params["b"], 0)
    expected = h @ model.out.params["W"] + model.out.params["b"]
    np.testing.assert_allclose(model.trace(x, False, execution="all_on").logits, expected,
                               rtol=1e-12)


def test_block_dropout_gradients_match_finite_differences():
    model = BlockDropoutMLP(n_in=6, n_classes=3, hidden=[[3, 2], [2, 2]], keep_rate=0.6,
                            dtype="float64")
    condnn.check_layer(model, np.random.default_rng(4).standard_normal((5, 6)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="hidden"):
        DenseMLP(hidden=[])
    with pytest.raises(ValueError, match="keep_rate"):
        BlockDropoutMLP(keep_rate=0.0)


@pytest.mark.parametrize("make", [
    lambda mean: DenseMLP(n_in=6, n_classes=3, hidden=[5], dropout=0.0, input_mean=mean),
    lambda mean: BlockDropoutMLP(n_in=6, n_classes=3, hidden=[[2, 4]], keep_rate=0.5,
                                 input_mean=mean),
    lambda mean: condnn.models.ConditionalMLP(n_in=6, n_classes=3, hidden=[[2, 4]],
                                              tau=0.5, input_mean=mean),
])
def test_input_mean_is_subtracted_from_every_input(make):
    rng = np.random.default_rng(0)
    x = rng.random((7, 6), dtype=np.float32)
    mean = rng.random(6)
    centred, plain = make(list(mean)), make(None)
    masks = None if isinstance(plain, DenseMLP) else [np.ones((7, 2), np.uint8)]
    np.testing.assert_allclose(
        centred.trace(x, False, masks=masks).logits,
        plain.trace((x - mean).astype(np.float32), False, masks=masks).logits, rtol=1e-5,
        atol=1e-6)


def test_input_mean_is_checked():
    with pytest.raises(ValueError, match=r"input_mean must be None or 6 finite numbers"):
        DenseMLP(n_in=6, n_classes=3, hidden=[5], input_mean=[0.0] * 5)
    with pytest.raises(ValueError, match="finite"):
        DenseMLP(n_in=6, n_classes=3, hidden=[5], input_mean=[np.nan] * 6)
