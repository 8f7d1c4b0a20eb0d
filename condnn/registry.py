"""The registry of model classes, by which a checkpoint names the class to rebuild.

Every subclass of :class:`condnn.Model` registers itself under its class name when it is
defined; :func:`register_model` gives it another name.  A checkpoint stores the name and the
module that defined the class; loading looks the name up, importing that module first when
the class is not registered yet (a script run as ``__main__`` cannot be imported that way:
define or import its model class before loading).
"""
import importlib
from typing import Callable, Dict, List, Optional, TypeVar, Union, overload

T = TypeVar("T", bound=type)

_CLASSES: Dict[str, List[type]] = {}


def _add(name: str, cls: type) -> None:
    entries = _CLASSES.setdefault(name, [])
    # A class defined again (a module reloaded, a notebook cell re-run) replaces its old self.
    entries[:] = [old for old in entries
                  if (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__)]
    entries.append(cls)


def _remove(name: str, cls: type) -> None:
    entries = _CLASSES.get(name, [])
    if cls in entries:
        entries.remove(cls)
    if not entries:
        _CLASSES.pop(name, None)


def register_automatically(cls: type) -> None:
    """Registers ``cls`` under its qualified class name (called for each Model subclass)."""
    cls._registry_name = cls.__qualname__
    _add(cls.__qualname__, cls)


@overload
def register_model(cls: T) -> T: ...
@overload
def register_model(*, name: str) -> Callable[[T], T]: ...


def register_model(cls: Optional[T] = None, *,
                   name: Optional[str] = None) -> Union[T, Callable[[T], T]]:
    """Registers a Model subclass under ``name`` (default: its class name).

    Use as ``@register_model`` or ``@register_model(name="mnist-mlp")``; Model subclasses
    are registered under their class name anyway, so the decorator is only needed to
    choose the name checkpoints record.
    """
    def register(model_class: T) -> T:
        if not isinstance(model_class, type):
            raise TypeError(f"register_model expects a class, got {type(model_class).__name__}")
        chosen = model_class.__qualname__ if name is None else name
        if not isinstance(chosen, str) or not chosen:
            raise ValueError(f"name must be a non-empty string, got {chosen!r}")
        old = getattr(model_class, "_registry_name", None)
        if old is not None:
            _remove(old, model_class)
        model_class._registry_name = chosen
        _add(chosen, model_class)
        return model_class

    return register if cls is None else register(cls)


def registered_name(cls: type) -> str:
    """The name under which ``cls`` is registered."""
    name = getattr(cls, "_registry_name", None)
    if name is None or cls not in _CLASSES.get(name, []):
        raise LookupError(f"model class {cls.__qualname__} is not registered")
    return name


def model_class(name: str, module: Optional[str] = None) -> type:
    """The class registered under ``name``; ``module`` (where it was defined) breaks ties.

    Raises:
        LookupError: nothing is registered under ``name`` even after importing ``module``,
            or several classes are and none comes from ``module``.
    """
    candidates = _CLASSES.get(name, [])
    if module and module != "__main__" and all(c.__module__ != module for c in candidates):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
        candidates = _CLASSES.get(name, [])
    for cls in candidates:
        if cls.__module__ == module:
            return cls
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        where = f" (it was defined in module {module!r})" if module else ""
        raise LookupError(f"no model class is registered as {name!r}{where}; import or "
                          f"define that class before loading")
    modules = sorted(c.__module__ for c in candidates)
    raise LookupError(f"several model classes are registered as {name!r} (in modules "
                      f"{modules}) and none comes from {module!r}; give one another name "
                      f"with @condnn.register_model(name=...)")
