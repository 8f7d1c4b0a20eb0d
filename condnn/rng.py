"""Seeded random generators: creating them and saving their state as JSON."""
from typing import Any, Dict, Optional, Union

import numpy as np

RngLike = Union[None, int, np.random.SeedSequence, np.random.Generator]


def as_generator(rng: RngLike, name: str = "rng") -> np.random.Generator:
    """``rng`` itself if it is a Generator, else a new Generator seeded with it.

    None seeds from the operating system's entropy (not reproducible); pass an int for a
    reproducible run.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer)):
        raise TypeError(f"{name} must be None, an int seed or a numpy.random.Generator, "
                        f"got {type(rng).__name__}")
    if rng < 0:
        raise ValueError(f"{name} must be a non-negative seed, got {rng}")
    return np.random.default_rng(int(rng))


def _to_json_value(value: Any) -> Any:
    # MT19937 keeps its key in an array; every other bit generator state is plain ints.
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {key: _to_json_value(item) for key, item in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def _from_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        return {key: _from_json_value(item) for key, item in value.items()}
    return value


def generator_state(generator: np.random.Generator) -> Dict[str, Any]:
    """The exact state of ``generator`` as JSON-serializable values (JSON keeps Python ints
    of any size, so all 128 bits of a PCG64 state survive)."""
    return _to_json_value(generator.bit_generator.state)


def state_from_json_value(value: Any) -> Dict[str, Any]:
    """The bit-generator state that :func:`generator_state` gave, after a JSON round trip."""
    state = _from_json_value(value)
    if not isinstance(state, dict) or "bit_generator" not in state:
        raise ValueError("not a numpy bit-generator state")
    return state


def generator_from_state(state: Dict[str, Any],
                         into: Optional[np.random.Generator] = None) -> np.random.Generator:
    """A Generator in ``state``: ``into`` itself when given (its state is overwritten)."""
    if into is not None:
        into.bit_generator.state = state
        return into
    kind = state["bit_generator"]
    bit_generator_class = getattr(np.random, kind, None)
    if not (isinstance(bit_generator_class, type)
            and issubclass(bit_generator_class, np.random.BitGenerator)):
        raise ValueError(f"unknown bit generator {kind!r}")
    bit_generator = bit_generator_class()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
