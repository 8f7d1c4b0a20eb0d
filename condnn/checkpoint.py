"""Checkpoints in HDF5: parameters, optimizer state, random generators, step and epoch.

Layout of a file (format version 1)::

    /                         attributes: format, format_version, condnn_version,
                              model_class, model_module, model_config (JSON),
                              step, epoch, rng_states (JSON), metadata (JSON)
    /params/<param path>      one dataset per parameter, e.g. /params/fc1/W
    /optimizer                attributes: type, step (present if an optimizer was saved)
    /optimizer/slots/<param path>/<slot>     e.g. /optimizer/slots/fc1/W/momentum

Every dataset carries the CRC-32 of its bytes, checked on loading, so a damaged file is
reported rather than loaded.  Writing goes to a temporary file in the same directory that
is flushed, fsynced and then renamed over the target, so a crash leaves either the old
checkpoint or the new one, never a mixture.  Loading is strict: a parameter or generator
missing, extra or of another shape is an error naming it.
"""
import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Union

import h5py
import numpy as np

import condnn
from condnn.config import build_from_config, config_to_json
from condnn.device import to_device
from condnn.layers.base import Layer
from condnn.registry import model_class, registered_name
from condnn.rng import generator_from_state, generator_state, state_from_json_value

if TYPE_CHECKING:
    from condnn.model import Model

PathLike = Union[str, "os.PathLike[str]"]

FORMAT = "condnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file that cannot be read, or that does not fit the model."""


@dataclass
class Checkpoint:
    """What :func:`load` and :func:`restore` return.

    ``model`` has the saved parameters and generator states; ``optimizer_state`` (or None)
    goes to ``Optimizer.load_state_dict``; ``rngs`` are the extra generators given to
    :func:`save`, in their saved state.
    """

    path: str
    model: "Model"
    optimizer_state: Optional[Dict[str, Any]] = field(repr=False)
    rngs: Dict[str, np.random.Generator]
    step: int
    epoch: int
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass
class _Contents:
    """A checkpoint file as plain Python values, before anything is applied to a model."""

    model_class: str
    model_module: str
    model_config: Dict[str, Any]
    params: Dict[str, np.ndarray]
    optimizer_state: Optional[Dict[str, Any]]
    model_rngs: Dict[str, Dict[str, Any]]
    extra_rngs: Dict[str, Dict[str, Any]]
    step: int
    epoch: int
    metadata: Dict[str, Any]


# ---------------------------------------------------------------------------------- saving

def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _write_array(group: h5py.Group, path: str, array: np.ndarray) -> None:
    # A model on the GPU is saved from host copies: checkpoints load on either device.
    array = np.ascontiguousarray(to_device(array, "cpu"))
    dataset = group.create_dataset(path, data=array)
    dataset.attrs["crc32"] = zlib.crc32(array.view(np.uint8).ravel() if array.size else b"")


def _atomic_write(path: str, write: Callable[[h5py.File], None]) -> None:
    """Runs ``write`` on a temporary HDF5 file, then renames it to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                                         suffix=".tmp", dir=directory)
    os.close(handle)
    try:
        with h5py.File(temporary, "w") as f:
            write(f)
            f.flush()
        handle = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)   # mkstemp makes it private (0600)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    try:   # make the rename itself durable
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def save(path: PathLike, model: "Model", optimizer: Any = None, *, step: int = 0, epoch: int = 0,
         rngs: Optional[Mapping[str, np.random.Generator]] = None,
         metadata: Optional[Mapping[str, Any]] = None) -> None:
    """Writes a checkpoint of ``model`` (and ``optimizer``) to ``path``, atomically.

    Args:
        path: the file to write (replaced if it exists).
        model: a :class:`condnn.Model`; its constructor arguments must be JSON-serializable.
        optimizer: an optimizer built on ``model``, or None.
        step, epoch: training progress to record.
        rngs: extra generators to save (e.g. ``{"data": shuffle_rng}``).
        metadata: JSON-serializable extra information (e.g. the validation accuracy).
    """
    path = os.fspath(path)
    try:
        class_name = registered_name(type(model))
    except LookupError:
        raise TypeError(f"model must be a condnn.Model (a registered class), "
                        f"got {type(model).__name__}") from None
    config_json = config_to_json(type(model).__qualname__, model.config)
    step, epoch = _check_count("step", step), _check_count("epoch", epoch)
    rngs = dict(rngs or {})
    for name, generator in rngs.items():
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"rngs[{name!r}] must be a numpy.random.Generator, "
                            f"got {type(generator).__name__}")
    try:
        metadata_json = json.dumps(dict(metadata or {}))
    except TypeError as error:
        raise TypeError(f"metadata must be JSON-serializable: {error}") from None
    params = model.named_params()
    optimizer_state = None
    if optimizer is not None:
        mismatched = [p for p, value in optimizer.params.items() if params.get(p) is not value]
        if mismatched or len(optimizer.params) != len(params):
            raise ValueError(f"optimizer was not built on this model (parameters "
                             f"{mismatched or 'differ in number'})")
        optimizer_state = optimizer.state_dict()
    rng_states = json.dumps({
        "model": {p: generator_state(g) for p, g in model.named_rngs().items()},
        "extra": {n: generator_state(g) for n, g in rngs.items()}})

    def write(f: h5py.File) -> None:
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION,
                        "condnn_version": condnn.__version__, "model_class": class_name,
                        "model_module": type(model).__module__, "model_config": config_json,
                        "step": step, "epoch": epoch, "rng_states": rng_states,
                        "metadata": metadata_json})
        group = f.create_group("params")
        for name, value in params.items():
            _write_array(group, name, value)
        if optimizer_state is not None:
            opt = f.create_group("optimizer")
            opt.attrs.update({"type": optimizer_state["type"], "step": optimizer_state["step"]})
            slots = opt.create_group("slots")
            for name, arrays in optimizer_state["slots"].items():
                for slot, value in arrays.items():
                    _write_array(slots, f"{name}/{slot}", value)

    _atomic_write(path, write)


# --------------------------------------------------------------------------------- loading

def _read_arrays(group: h5py.Group) -> Dict[str, np.ndarray]:
    arrays: Dict[str, np.ndarray] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            value = item[()]
            value = np.asarray(value)
            data = np.ascontiguousarray(value).view(np.uint8).ravel() if value.size else b""
            if "crc32" not in item.attrs or zlib.crc32(data) != int(item.attrs["crc32"]):
                raise CheckpointError(f"dataset {item.name} is corrupt (checksum mismatch)")
            arrays[name] = value

    group.visititems(visit)
    return arrays


def _decode_states(states: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {name: state_from_json_value(value) for name, value in states.items()}


def _read(path: PathLike) -> _Contents:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        with h5py.File(path, "r") as f:
            attrs = f.attrs
            if attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path!r} is an HDF5 file but not a condnn checkpoint")
            version = int(attrs["format_version"])
            if version > FORMAT_VERSION:
                raise CheckpointError(f"{path!r} has format version {version}; this condnn "
                                      f"reads up to {FORMAT_VERSION}")
            optimizer_state = None
            if "optimizer" in f:
                opt = f["optimizer"]
                slots: Dict[str, Dict[str, np.ndarray]] = {}
                for name, value in _read_arrays(opt["slots"]).items():
                    param, slot = name.rsplit("/", 1)
                    slots.setdefault(param, {})[slot] = value
                optimizer_state = {"type": str(opt.attrs["type"]),
                                   "step": int(opt.attrs["step"]), "slots": slots}
            rng_states = json.loads(attrs["rng_states"])
            return _Contents(
                model_class=str(attrs["model_class"]), model_module=str(attrs["model_module"]),
                model_config=json.loads(attrs["model_config"]), params=_read_arrays(f["params"]),
                optimizer_state=optimizer_state, model_rngs=_decode_states(rng_states["model"]),
                extra_rngs=_decode_states(rng_states["extra"]), step=int(attrs["step"]),
                epoch=int(attrs["epoch"]), metadata=json.loads(attrs["metadata"]))
    except CheckpointError as error:
        if path in str(error):
            raise
        raise CheckpointError(f"{path!r}: {error}") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"cannot read checkpoint {path!r} (not an HDF5 file, or "
                              f"truncated or corrupt): {error}") from error


def _list(names: Any) -> str:
    names = list(names)
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _apply_params(path: str, contents: _Contents, model: Layer) -> None:
    params = model.named_params()
    problems = []
    missing = [p for p in params if p not in contents.params]
    extra = [p for p in contents.params if p not in params]
    if missing:
        problems.append(f"missing parameters: {_list(missing)}")
    if extra:
        problems.append(f"unexpected parameters: {_list(extra)}")
    for name, value in params.items():
        saved = contents.params.get(name)
        if saved is not None and (saved.shape != value.shape or saved.dtype != value.dtype):
            problems.append(f"{name} is {saved.dtype}{list(saved.shape)} in the file but "
                            f"{value.dtype}{list(value.shape)} in the model")
    if problems:
        raise CheckpointError(f"{path!r} does not fit {type(model).__name__}: "
                              + "; ".join(problems))
    for name, value in params.items():
        value[...] = contents.params[name]


def _apply_rngs(path: str, contents: _Contents, model: Layer) -> None:
    rngs = model.named_rngs()
    missing = [r for r in rngs if r not in contents.model_rngs]
    extra = [r for r in contents.model_rngs if r not in rngs]
    if missing or extra:
        raise CheckpointError(f"{path!r} does not fit {type(model).__name__}: random "
                              f"generators missing: [{_list(missing)}], "
                              f"unexpected: [{_list(extra)}]")
    for name, generator in rngs.items():
        try:
            generator_from_state(contents.model_rngs[name], into=generator)
        except (ValueError, TypeError, KeyError) as error:
            raise CheckpointError(f"{path!r}: generator {name}: {error}") from None


def _result(path: str, contents: _Contents, model: "Model") -> Checkpoint:
    try:
        extra = {n: generator_from_state(s) for n, s in contents.extra_rngs.items()}
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path!r}: saved generator: {error}") from None
    return Checkpoint(path=path, model=model, optimizer_state=contents.optimizer_state,
                      rngs=extra, step=contents.step, epoch=contents.epoch,
                      metadata=contents.metadata)


def load(path: PathLike) -> Checkpoint:
    """Builds the saved model from its registered class and constructor arguments, and
    restores its parameters and generators; returns it with the rest of the state.

    The model class must be registered (defined or imported) in this process, or be
    importable from the module that defined it.

    Example::

        ckpt = condnn.load("best.h5")
        model = ckpt.model
        opt = SGD(model, lr=0.1, momentum=0.9); opt.load_state_dict(ckpt.optimizer_state)
    """
    path = os.fspath(path)
    contents = _read(path)
    try:
        cls = model_class(contents.model_class, contents.model_module)
    except LookupError as error:
        raise CheckpointError(f"{path!r}: {error}") from None
    model = build_from_config(cls, contents.model_config)
    _apply_params(path, contents, model)
    _apply_rngs(path, contents, model)
    return _result(path, contents, model)


def restore(path: PathLike, model: "Model") -> Checkpoint:
    """Like :func:`load`, into a model already built (of the same architecture)."""
    path = os.fspath(path)
    contents = _read(path)
    _apply_params(path, contents, model)
    _apply_rngs(path, contents, model)
    return _result(path, contents, model)


def load_params(path: PathLike, model: Layer) -> None:
    """Copies only the saved parameters into ``model``, in place (strict)."""
    path = os.fspath(path)
    _apply_params(path, _read(path), model)
