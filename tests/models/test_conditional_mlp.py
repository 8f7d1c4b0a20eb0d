"""The conditional MLP against a plain NumPy computation with the same masks."""
import numpy as np
import pytest

import condnn
from condnn.flops import dense_macs, executed_macs, flops_fraction
from condnn.layers import PolicyPenalty
from condnn.layers.policy_gate import threshold_mask
from condnn.models import ConditionalMLP

HIDDEN = [[3, 4], [2, 4]]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(**kwargs):
    options = dict(n_in=7, n_classes=3, hidden=HIDDEN, tau=[0.4, 0.5], seed=0,
                   dtype="float64", policy_init_scale=3.0)
    options.update(kwargs)
    model = ConditionalMLP(**options)
    rng = np.random.default_rng(9)
    for layer in (*model.fcs, model.out):       # non-zero biases, to see where they go
        layer.params["b"][:] = rng.standard_normal(layer.params["b"].shape)
    return model


def random_masks(n, rng):
    return [(rng.random((n, blocks)) < 0.5).astype(np.uint8) for blocks, _ in HIDDEN]


def numpy_forward(model, x, masks):
    """h_l = relu((h_{l-1} W_l + b_l) * expand(u_l)); logits = h_L W + b (h_L is masked)."""
    h = x
    for fc, mask in zip(model.fcs, masks):
        expanded = np.repeat(mask, fc.block_size, axis=1)
        h = np.maximum((h @ fc.params["W"] + fc.params["b"]) * expanded, 0)
    return h @ model.out.params["W"] + model.out.params["b"]


@pytest.mark.parametrize("execution", ["sparse", "dense"])
def test_forward_equals_numpy_with_the_same_masks(execution):
    model = make_model()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 7))
    masks = random_masks(9, rng)
    trace = model.trace(x, True, masks=masks, execution=execution)
    np.testing.assert_allclose(trace.logits, numpy_forward(model, x, masks), rtol=1e-12,
                               atol=1e-12)
    assert [m is given for m, given in zip(trace.masks, masks)] == [True, True]


def test_sparse_and_dense_executions_choose_the_same_masks():
    model = make_model()
    x = np.random.default_rng(2).standard_normal((9, 7))
    sparse = model.trace(x, False, execution="sparse")
    dense = model.trace(x, False, execution="dense")
    for a, b in zip(sparse.masks, dense.masks):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sparse.logits, dense.logits, rtol=1e-12, atol=1e-12)


def test_all_on_is_the_plain_dense_network():
    model = make_model()
    x = np.random.default_rng(3).standard_normal((5, 7))
    ones = [np.ones((5, blocks), np.uint8) for blocks, _ in HIDDEN]
    trace = model.trace(x, False, execution="all_on")
    assert trace.masks == [None, None] and trace.probs == [None, None]
    np.testing.assert_allclose(trace.logits, numpy_forward(model, x, ones), rtol=1e-12)


def test_threshold_evaluation_follows_the_policies():
    model = make_model()
    x = np.random.default_rng(4).standard_normal((6, 7))
    trace = model.trace(x, False)
    for mask, prob in zip(trace.masks, trace.probs):
        np.testing.assert_array_equal(mask, threshold_mask(prob))
        assert mask.any(axis=1).all()


@pytest.mark.parametrize("shared_blocks", [0, [1, 0]])
@pytest.mark.parametrize("execution", ["sparse", "dense"])
def test_network_gradients_match_finite_differences(execution, shared_blocks):
    model = make_model(shared_blocks=shared_blocks)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 7))
    masks = random_masks(6, rng)
    for mask, shared in zip(masks, model.shared_blocks):
        mask[:, :shared] = 1
    condnn.check_layer(model, x, forward_kwargs={"masks": masks, "execution": execution})


def test_policy_gets_gradients_only_from_its_own_terms():
    model = make_model()
    x = np.random.default_rng(6).standard_normal((6, 7))
    trace = model.trace(x, True)
    trace.backprop(np.ones_like(trace.logits))
    grads = model.named_grads()
    assert not any(grads[p].any() for p in grads if p.startswith("policy"))
    assert grads["fc1/W"].any()
    trace.backprop(np.zeros_like(trace.logits), advantages=np.ones(6) / 6,
                   penalty=PolicyPenalty(1.0, 1.0))
    assert all(grads[p].any() for p in ("policy1/Z", "policy2/Z", "policy1/d"))


def test_flops_count_the_active_blocks():
    model = make_model()
    masks = [np.array([[1, 0, 1]], np.uint8), np.array([[0, 1]], np.uint8)]
    # policy1 7x3, fc1 7x(2 blocks * 4), policy2 (8 active)x2, fc2 8x4, out 4x3.
    expected = 7 * 3 + 7 * 8 + 8 * 2 + 8 * 4 + 4 * 3
    assert executed_macs(model.products(), masks, 1) == expected
    assert dense_macs(model.products()) == 7 * 12 + 12 * 8 + 8 * 3
    assert flops_fraction(model.products(), masks, 1) == pytest.approx(expected / 204)
    assert executed_macs(model.products(), [None, None], 1, with_policy=False) == 204


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    model = make_model()
    path = str(tmp_path / "model.h5")
    model.save(path)
    loaded = condnn.load(path).model
    x = np.random.default_rng(7).standard_normal((4, 7))
    np.testing.assert_array_equal(loaded.trace(x, False).logits, model.trace(x, False).logits)


def test_set_mode_reaches_every_policy():
    model = make_model()
    model.set_mode("sample")
    assert [g.mode for g in model.gates] == ["sample", "sample"]


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden": [[3, 4], [2, 8]]}, "same block size"),
    ({"hidden": []}, "hidden"),
    ({"hidden": [[3, 0]]}, "positive"),
    ({"tau": [0.5]}, "one per hidden layer"),
    ({"tau": 1.0}, "tau"),
    ({"mode": "best"}, "mode")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model(**kwargs)


def test_bad_execution_and_masks_are_errors():
    model = make_model()
    x = np.zeros((2, 7))
    with pytest.raises(ValueError, match="execution"):
        model.trace(x, False, execution="fast")
    with pytest.raises(ValueError, match="one mask per hidden layer"):
        model.trace(x, False, masks=[np.ones((2, 3), np.uint8)])
