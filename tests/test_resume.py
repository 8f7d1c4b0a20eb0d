"""Training resumed from a checkpoint must end bitwise where uninterrupted training ends."""
import numpy as np
import pytest

import condnn
from condnn.layers import Dense, Dropout, ReLU, Sequential
from condnn.optim import SGD, Adam, CosineDecay


class DropoutNet(condnn.Model):
    def __init__(self, width=16, seed=0):
        rng = np.random.default_rng(seed)
        self.net = Sequential(fc1=Dense(6, width, rng=rng), relu=ReLU(),
                              drop=Dropout(0.3, rng=rng), fc2=Dense(width, 3, rng=rng))

    def forward(self, x, train):
        return self.net(x, train)


DATA_RNG = np.random.default_rng(42)
X = DATA_RNG.standard_normal((40, 6)).astype(np.float32)
Y = DATA_RNG.integers(0, 3, 40)
EPOCHS, BATCH = 4, 8
STEPS = EPOCHS * len(X) // BATCH


def make_optimizer(kind, model):
    if kind == "sgd":
        return SGD(model, lr=CosineDecay(0.1, total_steps=STEPS), momentum=0.9, nesterov=True,
                   weight_decay=1e-3, clip_norm=1.0)
    return Adam(model, lr=1e-2, weight_decay=1e-2, decoupled=True,
                groups={"net/fc2": {"lr": 3e-3}})


def train_epochs(model, optimizer, data_rng, epochs):
    for _ in range(epochs):
        order = data_rng.permutation(len(X))
        for start in range(0, len(X), BATCH):
            batch = order[start:start + BATCH]
            logits, backprop = model(X[batch])
            backprop(condnn.softmax_cross_entropy(logits, Y[batch]).backprop())
            optimizer.step()


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_resumed_training_matches_uninterrupted(kind, tmp_path):
    straight = DropoutNet()
    straight_optimizer = make_optimizer(kind, straight)
    train_epochs(straight, straight_optimizer, np.random.default_rng(7), EPOCHS)

    first = DropoutNet()
    first_optimizer = make_optimizer(kind, first)
    data_rng = np.random.default_rng(7)
    train_epochs(first, first_optimizer, data_rng, 2)
    path = str(tmp_path / "ckpt.h5")
    first.save(path, first_optimizer, step=first_optimizer.step_count, epoch=2,
               rngs={"data": data_rng})
    del first, first_optimizer, data_rng

    ckpt = condnn.load(path)
    resumed_optimizer = make_optimizer(kind, ckpt.model)
    resumed_optimizer.load_state_dict(ckpt.optimizer_state)
    train_epochs(ckpt.model, resumed_optimizer, ckpt.rngs["data"], EPOCHS - ckpt.epoch)

    assert resumed_optimizer.step_count == straight_optimizer.step_count == STEPS
    for path_name, value in straight.named_params().items():
        np.testing.assert_array_equal(ckpt.model.named_params()[path_name], value)
    for param, slots in straight_optimizer.state_dict()["slots"].items():
        for name, value in slots.items():
            np.testing.assert_array_equal(resumed_optimizer.slots[param][name], value)
    # The models did train (a resume test of a model that never moves proves nothing).
    assert not np.array_equal(straight.named_params()["net/fc1/W"],
                              DropoutNet().named_params()["net/fc1/W"])
