"""Runs condnn.gpu's plans on the host: the .cu kernels compiled with emulator/emu_cuda.h,
NumPy for cuBLAS's GEMM.

Device memory is NumPy buffers addressed by their real host addresses, so the plans' pointer
arguments work unchanged.  Temporaries start filled with garbage bytes, as fresh device memory
may be, and every launch is checked against the kernel's C parameter list (count and sizes).
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from condnn import _checks
from condnn.gpu import _plan

HERE = Path(__file__).resolve().parent
SOURCES = HERE.parents[1] / "condnn" / "gpu"
_GARBAGE = 0xA7


def unavailable_reason() -> Optional[str]:
    """Why the emulator cannot be built here, or None."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "no C++ compiler (g++ or $CXX) to build the kernel emulator"
    return None


_LIB: Optional[ctypes.CDLL] = None


def library() -> ctypes.CDLL:
    """The emulator library, built once per source version into the temp directory."""
    global _LIB
    if _LIB is not None:
        return _LIB
    files = [HERE / "emulator" / "emu_cuda.h", HERE / "emulator" / "emu_kernels.cpp",
             *sorted(SOURCES.glob("*.cu"))]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"condnn-gpu-emulator-{digest}.so"
    if not target.exists():
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        cmd = [os.environ.get("CXX", "g++"), "-std=c++20", "-O1", "-pthread", "-shared",
               "-fPIC", "-Wall", "-Wno-unknown-pragmas", f"-I{HERE / 'emulator'}",
               f"-I{SOURCES}", str(HERE / "emulator" / "emu_kernels.cpp"), "-o", str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the kernel emulator failed:\n{done.stderr}")
        os.replace(tmp, target)
    lib = ctypes.CDLL(str(target))
    lib.emu_param_sizes.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    lib.emu_param_sizes.restype = ctypes.c_int
    lib.emu_launch.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint),
                               ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_void_p)]
    lib.emu_launch.restype = ctypes.c_int
    _LIB = lib
    return lib


class EmulatorBackend:
    """A :class:`condnn.gpu._plan.Backend` over host memory."""

    def __init__(self, arrays: Dict[str, np.ndarray]):
        self.lib = library()
        self.buffers: Dict[int, np.ndarray] = {}
        for x in arrays.values():
            self._register(x)
        self.launched = []
        self.allocations = []      # temporaries, in allocation order

    def _register(self, x: np.ndarray) -> int:
        assert x.flags.c_contiguous
        flat = x.reshape(-1).view(np.uint8)
        self.buffers[flat.ctypes.data] = flat
        return flat.ctypes.data

    def _bytes_at(self, ptr: int, nbytes: int) -> np.ndarray:
        for base, flat in self.buffers.items():
            if base <= ptr and ptr + nbytes <= base + flat.size:
                return flat[ptr - base: ptr - base + nbytes]
        raise AssertionError(f"no buffer holds {nbytes} bytes at {ptr:#x}")

    def allocate(self, nbytes: int) -> Tuple[int, object]:
        buf = np.full(nbytes, _GARBAGE, dtype=np.uint8)
        self.allocations.append(buf)
        return self._register(buf), buf

    def launch(self, kernel: str, grid, block, args: Sequence[np.number]) -> None:
        sizes = (ctypes.c_int * 64)()
        count = self.lib.emu_param_sizes(kernel.encode(), sizes, 64)
        assert count >= 0, f"the emulator has no kernel {kernel}"
        assert count == len(args), f"{kernel} takes {count} parameters, given {len(args)}"
        for i, x in enumerate(args):
            assert isinstance(x, np.number), f"{kernel} parameter {i} is {type(x).__name__}"
            assert x.dtype.itemsize == sizes[i], (
                f"{kernel} parameter {i} is {sizes[i]} bytes in C, {x.dtype} in the plan")
            if isinstance(x, np.uintp) and int(x):
                self._bytes_at(int(x), 1)    # a pointer must point into a known buffer
        # Each value sits in a buffer of garbage-padded 8 bytes, so a size mismatch that the
        # assertion above missed would still read wrong bytes.
        cells = [np.full(8, _GARBAGE, dtype=np.uint8) for _ in args]
        for cell, x in zip(cells, args):
            cell[:x.dtype.itemsize] = np.frombuffer(x.tobytes(), dtype=np.uint8)
        params = (ctypes.c_void_p * max(len(args), 1))(*[c.ctypes.data for c in cells])
        g = (ctypes.c_uint * 3)(*grid)
        b = (ctypes.c_uint * 3)(*block)
        assert self.lib.emu_launch(kernel.encode(), g, b, params) == 0
        self.launched.append(kernel)

    def _matrix(self, ptr: int, dtype: np.dtype, rows: int, cols: int, ld: int) -> np.ndarray:
        """The column-major (rows, cols) matrix with leading dimension ld at ptr."""
        assert ld >= max(1, rows), (rows, ld)
        nbytes = ((cols - 1) * ld + rows) * dtype.itemsize
        flat = self._bytes_at(ptr, nbytes).view(dtype)
        return np.lib.stride_tricks.as_strided(flat, (rows, cols),
                                               (dtype.itemsize, ld * dtype.itemsize))

    def gemm(self, step: _plan.Gemm, a: int, b: int, c: int) -> None:
        # cuBLAS: C (m, n) = op(A) @ op(B), op(A) (m, k), op(B) (k, n), all column-major.
        dt = np.dtype(step.dtype)
        am = self._matrix(a, dt, *((step.k, step.m) if step.transa else (step.m, step.k)),
                          step.lda)
        bm = self._matrix(b, dt, *((step.n, step.k) if step.transb else (step.k, step.n)),
                          step.ldb)
        cm = self._matrix(c, dt, step.m, step.n, step.ldc)
        opa = am.T if step.transa else am
        opb = bm.T if step.transb else bm
        cm[...] = (opa.astype(np.float64) @ opb.astype(np.float64)).astype(dt)
        self.launched.append("gemm")

    def zero(self, ptr: int, nbytes: int) -> None:
        self._bytes_at(ptr, nbytes)[...] = 0

    def read_int32(self, ptr: int) -> int:
        return int(self._bytes_at(ptr, 4).view(np.int32)[0])


def run(plan: _plan.Plan, arrays: Dict[str, Optional[np.ndarray]]) -> EmulatorBackend:
    """Runs ``plan`` on the given host arrays (None for absent ones)."""
    present = {name: x for name, x in arrays.items() if x is not None}
    backend = EmulatorBackend(present)
    pointers = {name: (x.ctypes.data if x.size else 0) for name, x in present.items()}
    _plan.run(plan, pointers, backend)
    return backend


class HostRuntime:
    """Stands in for condnn.gpu's PyCUDA runtime: NumPy arrays, plans run on the emulator.
    New arrays start as NaN (or 0xA7 bytes), as fresh device memory holds anything."""

    kind = _checks.NUMPY

    @staticmethod
    def empty(shape, dtype):
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            return np.full(shape, np.nan, dtype)
        return np.full(shape, _GARBAGE, dtype)

    @staticmethod
    def run(plan, arrays):
        run(plan, arrays)


class DeviceArray:
    """A stand-in for PyCUDA's GPUArray over a host buffer: the parts of it condnn uses.
    Its memory is host memory, so the emulated kernels read and write it directly; being
    its own type, it makes condnn's layers take their GPU paths (see :class:`Device`)."""

    def __init__(self, host: np.ndarray):
        assert host.flags.c_contiguous
        self.host = host

    shape = property(lambda self: self.host.shape)
    dtype = property(lambda self: self.host.dtype)
    size = property(lambda self: self.host.size)
    ndim = property(lambda self: self.host.ndim)
    nbytes = property(lambda self: self.host.nbytes)
    strides = property(lambda self: self.host.strides)
    flags = property(lambda self: self.host.flags)
    gpudata = property(lambda self: self.host.ctypes.data)

    def get(self) -> np.ndarray:
        return self.host.copy()

    def set(self, values) -> None:
        self.host[...] = values

    def fill(self, value) -> "DeviceArray":
        self.host.fill(value)
        return self

    def __iadd__(self, other: "DeviceArray") -> "DeviceArray":
        assert isinstance(other, DeviceArray), "a device array added to a host one"
        self.host += other.host
        return self

    def __len__(self) -> int:
        return len(self.host)


class Device:
    """Stands in for condnn.gpu's runtime with :class:`DeviceArray`s: plans run on the
    emulator.  Patch ``condnn.gpu._runtime.runtime`` and ``.array_type`` with it
    (:func:`patch`)."""

    kind = _checks.ArrayKind(
        DeviceArray, "DeviceArray",
        lambda x, y: np.may_share_memory(x.host, y.host), lambda x: True)

    @staticmethod
    def empty(shape, dtype):
        return DeviceArray(HostRuntime.empty(shape, dtype))

    @staticmethod
    def to_device(host: np.ndarray) -> DeviceArray:
        return DeviceArray(np.array(host, order="C"))

    @staticmethod
    def to_host(x: DeviceArray) -> np.ndarray:
        return x.get()

    @staticmethod
    def run(plan, arrays):
        run(plan, {name: (x.host if isinstance(x, DeviceArray) else x)
                   for name, x in arrays.items()})


def patch(monkeypatch) -> None:
    """Makes condnn's GPU backend the emulated :class:`Device` for one test."""
    from condnn.gpu import _runtime
    monkeypatch.setattr(_runtime, "runtime", lambda: Device)
    monkeypatch.setattr(_runtime, "array_type", lambda: DeviceArray)
