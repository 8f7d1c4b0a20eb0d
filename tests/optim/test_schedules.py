import math

import pytest

from condnn.optim import Constant, CosineDecay, InverseTimeDecay, StepDecay


def test_constant():
    assert [Constant(0.3)(t) for t in (0, 10, 10 ** 6)] == [0.3, 0.3, 0.3]


def test_step_decay():
    schedule = StepDecay(1.0, step_size=10, gamma=0.5)
    assert [schedule(t) for t in (0, 9, 10, 19, 20, 35)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


def test_inverse_time_decay():
    schedule = InverseTimeDecay(1.0, decay_rate=0.5, decay_steps=10)
    assert schedule(0) == 1.0 and schedule(20) == pytest.approx(0.5)
    assert schedule(100) == pytest.approx(1 / 6)


def test_cosine_decay():
    schedule = CosineDecay(1.0, total_steps=100, min_lr=0.1)
    assert schedule(0) == 1.0
    assert schedule(50) == pytest.approx(0.55)
    assert schedule(25) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert schedule(100) == schedule(1000) == 0.1


@pytest.mark.parametrize("build, match", [
    (lambda: Constant(0.0), "lr must be positive"),
    (lambda: StepDecay(0.1, step_size=0), "step_size must be a positive int"),
    (lambda: InverseTimeDecay(0.1, decay_rate=-1), "decay_rate must be non-negative"),
    (lambda: CosineDecay(0.1, total_steps=10, min_lr=0.2), "min_lr .* must not exceed lr"),
])
def test_rejects_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()
