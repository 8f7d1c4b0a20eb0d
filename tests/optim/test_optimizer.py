import numpy as np
import pytest

import condnn
from condnn.layers import Dense
from condnn.optim import SGD, Adam, StepDecay, clip_grad_norm


class TwoPart(condnn.Model):
    def __init__(self):
        self.net = Dense(2, 2, rng=0, dtype="float64")
        self.policy = Dense(2, 2, rng=1, dtype="float64")


def set_grads(model, value):
    for grad in model.named_grads().values():
        grad[...] = value


def test_groups_by_prefix_and_glob_first_match_wins():
    model = TwoPart()
    optimizer = SGD(model, lr=0.1, groups={"policy": {"lr": 0.01}, "*/b": {"lr": 1.0}})
    assert {g.name: g.paths for g in optimizer.groups} == {
        "policy": ["policy/W", "policy/b"], "*/b": ["net/b"], "default": ["net/W"]}
    before = {k: v.copy() for k, v in model.named_params().items()}
    set_grads(model, 1.0)
    optimizer.step()
    moved = {k: float((before[k] - v).flat[0]) for k, v in model.named_params().items()}
    assert moved == pytest.approx({"net/W": 0.1, "net/b": 1.0, "policy/W": 0.01,
                                   "policy/b": 0.01})


def test_group_errors_are_explicit():
    with pytest.raises(ValueError, match=r"groups \['polcy'\] match no parameter"):
        SGD(TwoPart(), lr=0.1, groups={"polcy": {"lr": 0.01}})
    with pytest.raises(TypeError, match=r"no hyperparameter \['lrate'\] \(group 'policy'\)"):
        SGD(TwoPart(), lr=0.1, groups={"policy": {"lrate": 0.01}})
    with pytest.raises(TypeError, match="model must be a condnn Model or Layer"):
        SGD({"W": np.ones(2)}, lr=0.1)


def test_l2_and_decoupled_weight_decay():
    for decoupled, expected in [(False, 1 - 0.1 * (0.5 + 0.2 * 1)),   # g + wd p
                                (True, (1 - 0.1 * 0.2) - 0.1 * 0.5)]:  # p (1 - lr wd) - lr g
        fc = Dense(1, 1, dtype=np.float64)
        fc.params["W"][...] = 1.0
        fc.grads["W"][...] = 0.5
        SGD(fc, lr=0.1, weight_decay=0.2, decoupled=decoupled).step()
        assert fc.params["W"][0, 0] == pytest.approx(expected, rel=1e-12)


def test_clipping_scales_the_global_norm():
    model = TwoPart()
    set_grads(model, 3.0)                     # 12 entries of 3: norm sqrt(108)
    optimizer = SGD(model, lr=1.0, clip_norm=2.0)
    before = {k: v.copy() for k, v in model.named_params().items()}
    optimizer.step()
    assert optimizer.grad_norm == pytest.approx(np.sqrt(108))
    steps = np.concatenate([(before[k] - v).ravel() for k, v in model.named_params().items()])
    assert np.linalg.norm(steps) == pytest.approx(2.0)
    small = [np.full(3, 0.1)]
    assert clip_grad_norm(small, 10.0) == pytest.approx(np.sqrt(0.03))
    np.testing.assert_array_equal(small[0], np.full(3, 0.1))


def test_schedule_is_evaluated_at_each_step():
    fc = Dense(1, 1, dtype=np.float64)
    fc.params["W"][...] = 0.0
    optimizer = SGD(fc, lr=StepDecay(1.0, step_size=2, gamma=0.1))
    seen = []
    for _ in range(5):
        seen.append(optimizer.learning_rates()["default"])
        fc.grads["W"][...] = 1.0
        optimizer.step()
    assert seen == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
    assert fc.params["W"][0, 0] == pytest.approx(-2.21)


def test_state_dict_round_trip_and_strictness():
    model = TwoPart()
    optimizer = Adam(model, lr=0.1)
    set_grads(model, 1.0)
    optimizer.step()
    state = optimizer.state_dict()
    assert set(state["slots"]["net/W"]) == {"m", "v"} and state["step"] == 1
    other = Adam(TwoPart(), lr=0.1)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.slots["policy/b"]["v"], optimizer.slots["policy/b"]["v"])
    assert other.step_count == 1
    with pytest.raises(ValueError, match="the state is of a Adam optimizer, not SGD"):
        SGD(model, lr=0.1, momentum=0.9).load_state_dict(state)
    del state["slots"]["net/b"]
    state["slots"]["net/W"]["m"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"missing state of parameters \['net/b'\].*"
                                         r"net/W/m: float64\[3\], expected float64\[2, 2\]"):
        other.load_state_dict(state)
