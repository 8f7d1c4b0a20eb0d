"""Constructor arguments of models: recorded when a model is built, saved as JSON, and
used to build the same model again from a checkpoint."""
import inspect
import json
from typing import Any, Dict, List, Tuple

import numpy as np


def record_arguments(cls: type, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments of ``cls(*args, **kwargs)`` by parameter name, defaults filled in.

    Returns an empty dict when they do not fit the signature: ``__init__`` then raises the
    usual TypeError itself.
    """
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind_partial(None, *args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(signature.parameters)), None)   # self
    return arguments


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def config_to_json(class_name: str, config: Dict[str, Any]) -> str:
    """``config`` as JSON; TypeError naming the argument that JSON cannot hold."""
    for name, value in config.items():
        try:
            json.dumps(value, default=_json_default)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"constructor argument {name!r} of {class_name} is not JSON-serializable "
                f"({error}); checkpoints record the constructor arguments so that "
                f"condnn.load can build the model again: pass plain numbers, strings, "
                f"lists and dicts") from None
    return json.dumps(config, default=_json_default)


def build_from_config(cls: type, config: Dict[str, Any]) -> Any:
    """``cls`` called with the arguments :func:`record_arguments` recorded."""
    args: List[Any] = []
    kwargs: Dict[str, Any] = {}
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    missing = [p.name for p in parameters if p.name not in config]
    extra = sorted(set(config) - {p.name for p in parameters})
    if missing or extra:
        raise TypeError(f"the recorded arguments do not fit {cls.__qualname__}.__init__: "
                        f"missing {missing}, unexpected {extra}")
    for parameter in parameters:
        value = config[parameter.name]
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            args.append(value)
        elif parameter.kind == parameter.VAR_POSITIONAL:
            args.extend(value)
        elif parameter.kind == parameter.KEYWORD_ONLY:
            kwargs[parameter.name] = value
        else:
            kwargs.update(value)
    return cls(*args, **kwargs)
