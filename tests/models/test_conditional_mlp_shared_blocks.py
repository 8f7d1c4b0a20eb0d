"""The conditional MLP's shared blocks: on for every example, the policy routing the rest.
(The numeric gradient check of a network with shared blocks is in test_conditional_mlp.py.)"""
import numpy as np
import pytest

import condnn
from condnn.flops import executed_macs
from condnn.layers import PolicyPenalty
from condnn.layers.policy_gate import threshold_mask
from condnn.models import ConditionalMLP

HIDDEN = [[5, 4], [4, 4]]
SHARED = [2, 1]
TAUS = [0.5, 0.6]          # budgets of 2.5 and 2.4 blocks


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(**kwargs):
    options = dict(n_in=7, n_classes=3, hidden=HIDDEN, tau=TAUS, shared_blocks=SHARED,
                   seed=0, dtype="float64", policy_init_scale=3.0)
    options.update(kwargs)
    return ConditionalMLP(**options)


def full_masks(n, rng):
    """Random masks whose shared blocks are on."""
    masks = []
    for (blocks, _), shared in zip(HIDDEN, SHARED):
        mask = (rng.random((n, blocks)) < 0.5).astype(np.uint8)
        mask[:, :shared] = 1
        masks.append(mask)
    return masks


def numpy_forward(model, x, masks):
    h = x
    for fc, mask in zip(model.fcs, masks):
        h = np.maximum((h @ fc.params["W"] + fc.params["b"])
                       * np.repeat(mask, fc.block_size, axis=1), 0)
    return h @ model.out.params["W"] + model.out.params["b"]


def test_the_policies_route_only_the_blocks_that_are_not_shared():
    model = make_model()
    assert [g.n_blocks for g in model.gates] == [3, 3]
    params = model.named_params()
    assert params["policy1/Z"].shape == (7, 3) and params["policy2/d"].shape == (3,)
    # The layer runs tau of its blocks: the shared ones and (tau B - S) / (B - S) of the rest.
    assert [g.tau for g in model.gates] == pytest.approx([(2.5 - 2) / 3, (2.4 - 1) / 3])
    assert [p.n_out for p in model.products() if p.policy] == [3, 3]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("execution", ["sparse", "dense"])
def test_shared_blocks_are_on_for_every_example(train, execution):
    model = make_model()
    x = np.random.default_rng(1).standard_normal((50, 7))
    trace = model.trace(x, train, execution=execution)
    for mask, prob, (blocks, _), shared in zip(trace.masks, trace.probs, HIDDEN, SHARED):
        assert mask.shape == (50, blocks) and mask.dtype == np.uint8
        assert (mask[:, :shared] == 1).all()
        assert prob.shape == (50, blocks - shared)
        assert 0 < mask[:, shared:].mean() < 1        # the others are routed
    np.testing.assert_allclose(trace.logits, numpy_forward(model, x, trace.masks), rtol=1e-12,
                               atol=1e-12)


def test_evaluation_masks_are_the_policies_thresholds_after_the_shared_blocks():
    model = make_model()
    x = np.random.default_rng(2).standard_normal((40, 7))
    trace = model.trace(x, False)
    for mask, prob, shared in zip(trace.masks, trace.probs, SHARED):
        # The shared blocks are on, so an example may route to none of the others.
        np.testing.assert_array_equal(mask[:, shared:], threshold_mask(prob,
                                                                       keep_a_block=False))
        assert not mask[:, shared:].any(axis=1).all()


def test_calibration_starts_every_layer_at_its_budget():
    model = make_model(policy_init_scale=12.0)
    x = np.random.default_rng(3).standard_normal((4000, 7))
    model.calibrate(x)
    trace = model.trace(x, False)
    for mask, tau in zip(trace.masks, TAUS):
        assert mask.mean() == pytest.approx(tau, abs=0.03)


def test_the_policy_terms_differentiate_the_routed_part_of_given_masks():
    model = make_model()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 7))
    masks = full_masks(8, rng)
    advantages = rng.standard_normal(8) / 8
    trace = model.trace(x, True, masks=masks)
    assert all(m is given for m, given in zip(trace.masks, masks))
    trace.backprop(np.zeros_like(trace.logits), advantages=advantages,
                   penalty=PolicyPenalty(1.0, 1.0))
    got = model.named_grads()["policy1/Z"].copy()

    # The first policy alone, on the routed columns of the first mask.
    gate = make_model().gates[0]
    _, backprop = gate(x, True, mask=masks[0][:, SHARED[0]:])
    backprop(advantages, PolicyPenalty(1.0, 1.0))
    np.testing.assert_allclose(got, gate.grads["Z"], rtol=1e-12, atol=1e-15)


def test_flops_count_the_shared_blocks_and_the_smaller_policies():
    model = make_model()
    masks = [np.array([[1, 1, 0, 1, 0]], np.uint8), np.array([[1, 0, 0, 1]], np.uint8)]
    # policy1 7x3, fc1 7x(3 blocks * 4), policy2 (12 active)x3, fc2 12x(2 * 4), out 8x3.
    expected = 7 * 3 + 7 * 12 + 12 * 3 + 12 * 8 + 8 * 3
    assert executed_macs(model.products(), masks, 1) == expected


def test_checkpoint_round_trip_keeps_the_shared_blocks(tmp_path):
    model = make_model()
    path = str(tmp_path / "model.h5")
    model.save(path)
    loaded = condnn.load(path).model
    assert loaded.shared_blocks == SHARED
    x = np.random.default_rng(7).standard_normal((4, 7))
    np.testing.assert_array_equal(loaded.trace(x, False).logits, model.trace(x, False).logits)


def test_no_shared_blocks_is_the_network_without_them():
    x = np.random.default_rng(8).standard_normal((10, 7))
    plain = ConditionalMLP(n_in=7, n_classes=3, hidden=HIDDEN, tau=TAUS, seed=0,
                           dtype="float64", policy_init_scale=3.0)
    none = make_model(shared_blocks=0)
    assert [g.tau for g in none.gates] == TAUS
    for path, value in plain.named_params().items():
        np.testing.assert_array_equal(none.named_params()[path], value)
    np.testing.assert_array_equal(none.trace(x, False).logits, plain.trace(x, False).logits)


@pytest.mark.parametrize("shared, match", [
    (-1, "int >= 0"),
    (True, "int >= 0"),
    (1.0, "int >= 0"),
    ([1], "one per hidden layer"),
    ([3, 1], "hidden layer 1 has 5 blocks and tau 0.5"),
    ([2, 3], "hidden layer 2"),
])
def test_bad_shared_blocks_are_named(shared, match):
    with pytest.raises(ValueError, match=match):
        make_model(shared_blocks=shared)


def test_given_masks_too_narrow_for_the_shared_blocks_are_refused():
    model = make_model()
    with pytest.raises(ValueError, match=r"masks\[0\] must be a 2-D mask with more than 2"):
        model.trace(np.zeros((2, 7)), False, masks=[np.ones((2, 2), np.uint8),
                                                    np.ones((2, 4), np.uint8)])
