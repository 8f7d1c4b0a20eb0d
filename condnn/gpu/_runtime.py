"""The PyCUDA side of the GPU backend: availability, the context, the compiled kernels, and
the :class:`condnn.gpu._plan.Backend` that runs plans on the device.

PyCUDA is imported only when :func:`available`, :func:`unavailable_reason` or a GPU function
is first called, never by ``import condnn`` or ``import condnn.gpu``.

Context: condnn uses the CUDA context current when it is first called (as made by
``pycuda.autoinit`` or ``pycuda.autoprimaryctx``); if none is, it makes the primary context
of the device current, through ``pycuda.autoprimaryctx`` (``CUDA_DEVICE`` picks the device).
The primary context is the one the CUDA runtime, cuBLAS, CuPy and PyTorch use, so arrays can
be shared with them.  Kernels, GEMMs and copies all go to the legacy default stream, in order.
"""
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from condnn.gpu import _plan
from condnn._checks import ArrayKind
from condnn.gpu._cublas import Cublas, CublasError

__all__ = ["available", "unavailable_reason", "array_type", "runtime", "Runtime", "SOURCES"]

_HERE = Path(__file__).resolve().parent
SOURCES = ("block_sparse.cu", "masks.cu", "training.cu")

_lock = threading.RLock()
_reason: Optional[str] = None
_probed = False
_runtimes: Dict[int, "Runtime"] = {}


def _nvcc() -> Optional[str]:
    """The nvcc PyCUDA compiles the kernels with: PATH's, else the CUDA toolkit's."""
    found = shutil.which("nvcc")
    if found:
        return found
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"):
        root = os.environ.get(var)
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    default = "/usr/local/cuda/bin/nvcc"
    return default if os.access(default, os.X_OK) else None


def device_extent(x) -> Tuple[int, int]:
    """The [start, end) device addresses a GPUArray's elements occupy (empty: (0, 0))."""
    if x.gpudata is None or x.size == 0:
        return 0, 0
    start = end = int(x.gpudata)
    for size, stride in zip(x.shape, x.strides):
        if stride < 0:
            start += (size - 1) * stride
        else:
            end += (size - 1) * stride
    return start, end + x.dtype.itemsize


def shares_device_memory(x, y) -> bool:
    """True if the element extents of two GPUArrays overlap (a conservative test)."""
    x0, x1 = device_extent(x)
    y0, y1 = device_extent(y)
    return x0 < x1 and y0 < y1 and x0 < y1 and y0 < x1


def _probe() -> Optional[str]:
    try:
        import pycuda.driver as drv
    except Exception as e:  # ImportError, or a PyCUDA built against a missing libcuda
        return (f"PyCUDA is not installed or does not load ({type(e).__name__}: {e}); "
                f"install the GPU extra: pip install \"condnn[gpu]\"")
    try:
        drv.init()
    except drv.Error as e:
        return f"the CUDA driver could not be initialised ({e})"
    try:
        if drv.Device.count() == 0:
            return "no CUDA device is visible"
        if drv.Context.get_current() is None:
            import pycuda.autoprimaryctx  # noqa: F401  (makes the primary context current)
    except drv.Error as e:
        return f"no CUDA context could be made current ({e})"
    if _nvcc() is None:
        return "nvcc, which PyCUDA compiles the kernels with, is neither on PATH nor in CUDA_HOME"
    try:
        _runtime_for_current_context()
    except CublasError as e:
        return f"cuBLAS could not be used ({e})"
    return None


def unavailable_reason() -> Optional[str]:
    """Why the GPU backend cannot be used here, or None if it can.

    The first call imports PyCUDA, initialises the driver and, if no context is current,
    makes the device's primary context current; its answer is kept for the process.
    """
    global _reason, _probed
    with _lock:
        if not _probed:
            _reason = _probe()
            _probed = True
        return _reason


def available() -> bool:
    """True if PyCUDA, a CUDA device, nvcc and cuBLAS are all usable."""
    return unavailable_reason() is None


def _runtime_for_current_context() -> "Runtime":
    import pycuda.driver as drv
    context = drv.Context.get_current()
    if context is None:
        raise RuntimeError("condnn.gpu needs a current CUDA context; none is current "
                           "on this thread")
    key = int(context.handle)
    with _lock:
        rt = _runtimes.get(key)
        if rt is None:
            rt = _runtimes[key] = Runtime()
        return rt


def array_type() -> Optional[type]:
    """PyCUDA's GPUArray class, or None where PyCUDA does not import.  Does not initialise
    the driver: telling a GPU array from others needs no device."""
    try:
        import pycuda.gpuarray as gpuarray
    except Exception:  # ImportError, or a PyCUDA built against a missing libcuda
        return None
    return gpuarray.GPUArray


def runtime() -> "Runtime":
    """The runtime of the current context; RuntimeError if the backend is unavailable."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"condnn.gpu is not available: {reason}")
    return _runtime_for_current_context()


class Runtime:
    """Kernels, cuBLAS handle and memory pool of one CUDA context; runs plans there."""

    def __init__(self):
        import pycuda.driver as drv
        import pycuda.gpuarray as gpuarray
        import pycuda.tools as tools

        self._drv = drv
        self._gpuarray = gpuarray
        self.kind = ArrayKind(gpuarray.GPUArray, "pycuda.gpuarray.GPUArray",
                              shares_device_memory, lambda x: True)
        self.cublas = Cublas()
        # Temporaries (index lists, masked copies) and results come from a pool: allocating
        # device memory anew on every call would cost more than small products take.
        self._pool = tools.DeviceMemoryPool()
        self._modules = None
        self._functions: Dict[str, Any] = {}

    # -- kernels ------------------------------------------------------------------------

    def _compile(self):
        from pycuda.compiler import SourceModule

        modules = []
        for name in SOURCES:
            source = (_HERE / name).read_text()
            # no_extern_c: the sources are C++ templates exported under extern "C" names.
            modules.append(SourceModule(source, nvcc=_nvcc() or "nvcc", no_extern_c=True,
                                        include_dirs=[str(_HERE)]))
        return modules

    def function(self, name: str):
        """The kernel ``name``, compiling the sources the first time (PyCUDA caches the
        binaries on disk, so later processes skip nvcc)."""
        fn = self._functions.get(name)
        if fn is None:
            with _lock:
                if self._modules is None:
                    self._modules = self._compile()
            for module in self._modules:
                try:
                    fn = module.get_function(name)
                    break
                except self._drv.LogicError:
                    continue
            else:
                raise RuntimeError(f"no kernel {name} in {', '.join(SOURCES)}")
            self._functions[name] = fn
        return fn

    # -- arrays ---------------------------------------------------------------------------

    def empty(self, shape, dtype):
        """A new GPUArray from the memory pool: results of every call would otherwise pay
        a cuMemAlloc and, when freed, a cuMemFree, which can wait for the device.  Freed
        arrays go back to the pool, which keeps the memory for later calls."""
        return self._gpuarray.empty(shape, dtype, allocator=self._pool.allocate)

    def to_device(self, host: np.ndarray):
        """A GPUArray copy of a C-contiguous host array, from the memory pool."""
        return self._gpuarray.to_gpu(host, allocator=self._pool.allocate)

    @staticmethod
    def to_host(x) -> np.ndarray:
        """A NumPy copy of a GPUArray (waits for the work that writes it)."""
        return x.get()

    def run(self, plan: _plan.Plan, arrays: Mapping[str, Any]) -> None:
        """Runs ``plan`` on the call's GPUArrays (None for absent arguments)."""
        pointers = {name: (0 if x.gpudata is None else int(x.gpudata))
                    for name, x in arrays.items() if x is not None}
        _plan.run(plan, pointers, self)

    # -- the Backend protocol -------------------------------------------------------------

    def allocate(self, nbytes: int):
        allocation = self._pool.allocate(nbytes)
        return int(allocation), allocation

    def launch(self, kernel, grid, block, args) -> None:
        self.function(kernel)(*args, grid=grid, block=block)

    def gemm(self, step: _plan.Gemm, a: int, b: int, c: int) -> None:
        self.cublas.gemm(step.dtype, step.transa, step.transb, step.m, step.n, step.k,
                         a, step.lda, b, step.ldb, c, step.ldc)

    def zero(self, ptr: int, nbytes: int) -> None:
        self._drv.memset_d8(ptr, 0, nbytes)

    def read_int32(self, ptr: int) -> int:
        host = np.empty(1, np.int32)
        self._drv.memcpy_dtoh(host, ptr)
        return int(host[0])
