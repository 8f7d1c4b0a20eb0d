import numpy as np
import pytest

import condnn
from condnn import check_layer
from condnn.layers import Dense, Dropout, ReLU, Sequential, Tanh


class Block(condnn.Model):
    def __init__(self, width=4, dtype="float64"):
        self.fc1 = Dense(width, width, rng=0, dtype=dtype)
        self.act = Tanh()
        self.fc2 = Dense(width, width, rng=1, dtype=dtype)

    def forward(self, x, train):
        h, fc1_backprop = self.fc1(x, train)
        h, act_backprop = self.act(h, train)
        y, fc2_backprop = self.fc2(h, train)
        return y, lambda dy: fc1_backprop(act_backprop(fc2_backprop(dy)))


class Net(condnn.Model):
    def __init__(self, n_in=3, width=4, n_out=2, rate=0.25, seed=0):
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self.inp = Dense(n_in, width, rng=self.rng, dtype="float64")
        self.block = Block(width)
        self.drop = Dropout(rate, rng=self.rng)
        self.head = Sequential(act=ReLU(), out=Dense(width, n_out, rng=self.rng, dtype="float64"))
        self.note = "not a layer"

    def forward(self, x, train):
        h, inp_backprop = self.inp(x, train)
        h, block_backprop = self.block(h, train)
        h, drop_backprop = self.drop(h, train)
        y, head_backprop = self.head(h, train)
        return y, lambda dy: inp_backprop(block_backprop(drop_backprop(head_backprop(dy))))


def test_attribute_paths_name_parameters_in_order():
    net = Net()
    assert list(net.named_params()) == [
        "inp/W", "inp/b", "block/fc1/W", "block/fc1/b", "block/fc2/W", "block/fc2/b",
        "head/out/W", "head/out/b"]
    assert list(net.named_grads()) == list(net.named_params())
    for path, grad in net.named_grads().items():
        assert grad.shape == net.named_params()[path].shape
    assert [name for name, _ in net.named_children()] == ["inp", "block", "drop", "head"]


def test_generators_are_registered_once():
    net = Net()
    # The model's rng is shared with its dropout layer: one generator, one entry.
    assert net.named_rngs() == {"rng": net.rng}


def test_reassigning_and_deleting_attributes():
    net = Net()
    net.inp = Dense(3, 4, dtype="float64")
    assert list(net.named_params())[:2] == ["inp/W", "inp/b"]
    net.block = None
    assert not any(path.startswith("block/") for path in net.named_params())
    del net.drop
    assert "drop" not in dict(net.named_children())


def test_shared_layer_counts_once():
    class Tied(condnn.Model):
        def __init__(self):
            self.first = Dense(2, 2, rng=0)
            self.second = self.first

    assert list(Tied().named_params()) == ["first/W", "first/b"]


def test_zero_grads_clears_every_gradient():
    net = Net()
    y, backprop = net(np.ones((2, 3)))
    backprop(np.ones_like(y))
    assert any(np.any(g != 0) for g in net.named_grads().values())
    net.zero_grads()
    assert all(np.all(g == 0) for g in net.named_grads().values())


def test_modes_switch_dropout_and_reach_sub_models():
    net = Net(rate=0.5)
    x = np.ones((20, 3))
    assert net.training and net.block.training
    net.eval()
    assert not net.training and not net.block.training
    np.testing.assert_array_equal(net(x)[0], net(x)[0])
    net.train()
    assert net.block.training
    assert not np.array_equal(net(x)[0], net(x)[0])
    np.testing.assert_array_equal(net(x, train=False)[0], net.forward(x, False)[0])


def test_whole_model_gradients_match_finite_differences():
    check_layer(Net(), np.random.default_rng(0).standard_normal((5, 3)))


def test_constructor_arguments_are_recorded_with_defaults():
    assert Net(width=6, seed=3).config == {"n_in": 3, "width": 6, "n_out": 2, "rate": 0.25,
                                           "seed": 3}
    assert Block().config == {"width": 4, "dtype": "float64"}


def test_unserializable_constructor_argument_is_named_on_save(tmp_path):
    class Activated(condnn.Model):
        def __init__(self, activation=np.tanh):
            self.fc = Dense(2, 2)

    with pytest.raises(TypeError, match="constructor argument 'activation' of .*Activated "
                                        "is not JSON-serializable"):
        Activated().save(str(tmp_path / "model.h5"))
    assert not list(tmp_path.iterdir())
