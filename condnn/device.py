"""Where arrays live: ``"cpu"`` (NumPy arrays) or ``"gpu"`` (the GPU backend's PyCUDA
``GPUArray``s), and moving them between the two.

Layers dispatch on their input: an array on the GPU runs the GPU kernels
(:mod:`condnn.gpu`), a NumPy array the CPU ones.  Nothing moves between devices implicitly:
:func:`to_device` is the one place that copies, and a model moves as a whole
(``model.to_gpu()``, ``model.to_cpu()``).
"""
from typing import Any

import numpy as np

DEVICES = ("cpu", "gpu")


def check_device(device: Any) -> str:
    """``device`` checked to be one of :data:`DEVICES`."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return device


def on_gpu(x: Any) -> bool:
    """True if x is an array of the GPU backend.  NumPy arrays answer at once; other
    objects make the GPU backend look for its array type (importing PyCUDA if present)."""
    if isinstance(x, np.ndarray) or x is None:
        return False
    from condnn.gpu import _runtime
    array_type = _runtime.array_type()
    return array_type is not None and isinstance(x, array_type)


def device_of(x: Any) -> str:
    """``"gpu"`` for an array of the GPU backend, else ``"cpu"``."""
    return "gpu" if on_gpu(x) else "cpu"


def device_mismatch(owner: str, x: Any, param: Any) -> str:
    """The message for an input on another device than ``owner``'s parameters."""
    return (f"x is on the {device_of(x)} but {owner}'s parameters are on the "
            f"{device_of(param)}; move one of them (model.to_gpu() / model.to_cpu(), or "
            f"condnn.device.to_device(x, ...))")


def check_same_device(owner: str, x: Any, param: Any) -> None:
    """Raises ValueError if x and param are on different devices."""
    if on_gpu(x) != on_gpu(param):
        raise ValueError(f"{owner}: {device_mismatch('the layer', x, param)}")


def to_device(x: Any, device: str) -> Any:
    """x on ``device``: the array itself if it is there already, else a copy there (None
    stays None).  Copies to the GPU need the GPU backend (:func:`condnn.gpu.available`)."""
    device = check_device(device)
    if x is None or device_of(x) == device:
        return x
    from condnn.gpu import _runtime
    rt = _runtime.runtime()
    return rt.to_device(np.ascontiguousarray(x)) if device == "gpu" else rt.to_host(x)
