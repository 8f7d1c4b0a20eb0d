import json

import numpy as np
import pytest

from condnn.rng import as_generator, generator_from_state, generator_state, state_from_json_value


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937,
                                           np.random.Philox, np.random.SFC64])
def test_state_survives_json(bit_generator):
    generator = np.random.Generator(bit_generator(5))
    generator.random(3)
    text = json.dumps(generator_state(generator))
    copy = generator_from_state(state_from_json_value(json.loads(text)))
    np.testing.assert_array_equal(copy.random(10), generator.random(10))


def test_restores_into_existing_generator():
    generator = np.random.default_rng(1)
    state = state_from_json_value(json.loads(json.dumps(generator_state(generator))))
    expected = generator.integers(0, 1000, 5)
    target = np.random.default_rng(99)
    assert generator_from_state(state, into=target) is target
    np.testing.assert_array_equal(target.integers(0, 1000, 5), expected)


def test_as_generator():
    generator = np.random.default_rng(0)
    assert as_generator(generator) is generator
    np.testing.assert_array_equal(as_generator(4).random(3), np.random.default_rng(4).random(3))
    with pytest.raises(ValueError, match="non-negative seed"):
        as_generator(-1)
    with pytest.raises(TypeError, match="rng must be None, an int seed"):
        as_generator(1.5)


def test_rejects_foreign_state():
    with pytest.raises(ValueError, match="not a numpy bit-generator state"):
        state_from_json_value({"state": 1})
    with pytest.raises(ValueError, match="unknown bit generator 'Nope'"):
        generator_from_state({"bit_generator": "Nope", "state": {}})
