"""A minimal ctypes binding to cuBLAS: a handle and the two dense GEMMs condnn needs.

Why a hand-written binding.  The backend needs ``cublasSgemm`` / ``cublasDgemm`` on raw device
pointers that PyCUDA owns, in PyCUDA's current context.  The candidates:

* scikit-cuda (``skcuda.cublas``) did exactly this, but its last release is from 2019 and it
  is no longer maintained;
* CuPy's ``cupy_backends.cuda.libs.cublas`` accepts raw pointers, but it is CuPy's internal
  module (no stability promise) and brings a whole second GPU array library, with its own
  device and memory-pool management, for five C functions;
* nvmath-python's ``nvmath.bindings.cublas`` is NVIDIA's maintained low-level binding and
  takes raw pointers, but it comes as compiled wheels per Python version and requires
  cuda-bindings, cuda-core and cuda-pathfinder, whose CUDA major version must match the
  driver's: three more compiled dependencies to install and keep in step, for five functions.

The cuBLAS v2 C API used here (create a handle, set the math mode, the version, two GEMMs)
has been stable since CUDA 9, so ctypes over whichever ``libcublas`` the machine
already has (the CUDA toolkit's, or the ``nvidia-cublas`` wheel that PyTorch and CuPy
install) adds no dependency and follows the installed CUDA.  Set ``CONDNN_CUBLAS`` to the path
of a ``libcublas.so`` to choose one.

The handle works on the CUDA context current when it is created, on the legacy default
stream (the stream PyCUDA launches kernels on when given none, so GEMMs and kernels are
ordered), and lives as long as the process.  The math mode is CUBLAS_DEFAULT_MATH: float32
GEMMs are computed in float32, not TF32, the precision of the block-sparse kernels they are
compared with.
"""
import ctypes
import glob
import os
from typing import List, Optional

import numpy as np

_OP_N, _OP_T = 0, 1
_DEFAULT_MATH = 0

_STATUS = {
    0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED",
    3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
    8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
    13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR",
    15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR",
}


class CublasError(RuntimeError):
    """A cuBLAS call failed, or no usable cuBLAS library was found."""


def _check(status: int, what: str) -> None:
    if status != 0:
        raise CublasError(f"{what} failed: {_STATUS.get(status, f'status {status}')}")


def library_candidates() -> List[str]:
    """Paths or names of libcublas to try, most specific first."""
    found: List[str] = []
    explicit = os.environ.get("CONDNN_CUBLAS")
    if explicit:
        return [explicit]
    try:  # the nvidia-cublas(-cuXX) wheels: nvidia/cublas/lib or nvidia/cuXX/lib
        import nvidia
        for root in list(getattr(nvidia, "__path__", [])):
            found += sorted(glob.glob(os.path.join(root, "*", "lib", "libcublas.so.*[0-9]")),
                            reverse=True)
    except ImportError:
        pass
    roots = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT")]
    for root in [r for r in roots if r] + ["/usr/local/cuda"]:
        for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"),
                    os.path.join("targets", "sbsa-linux", "lib")):
            found += sorted(glob.glob(os.path.join(root, sub, "libcublas.so*")), reverse=True)
    # Whatever the dynamic loader finds on its own search path.
    found += ["libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"]
    seen, unique = set(), []
    for path in found:
        key = os.path.realpath(path) if os.path.sep in path else path
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _load(path: str) -> ctypes.CDLL:
    # libcublas needs libcublasLt from the same release; load it first from the same folder
    # so that the loader does not pick another release's from its search path.
    folder = os.path.dirname(path)
    if folder:
        for lt in sorted(glob.glob(os.path.join(folder, "libcublasLt.so*")), reverse=True):
            try:
                ctypes.CDLL(lt, mode=ctypes.RTLD_GLOBAL)
                break
            except OSError:
                continue
    lib = ctypes.CDLL(path)
    handle_p = ctypes.POINTER(ctypes.c_void_p)
    lib.cublasCreate_v2.argtypes = [handle_p]
    lib.cublasGetVersion_v2.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    lib.cublasSetMathMode.argtypes = [ctypes.c_void_p, ctypes.c_int]
    gemm_args = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                 ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                 ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.cublasSgemm_v2.argtypes = gemm_args
    lib.cublasDgemm_v2.argtypes = gemm_args
    for fn in (lib.cublasCreate_v2, lib.cublasGetVersion_v2,
               lib.cublasSetMathMode, lib.cublasSgemm_v2, lib.cublasDgemm_v2):
        fn.restype = ctypes.c_int
    return lib


class Cublas:
    """A cuBLAS handle on the current CUDA context.

    Args:
        path: the libcublas to load; by default the first of :func:`library_candidates`
            that loads and creates a handle (a library newer than the driver fails there,
            and the next one is tried).
    """

    def __init__(self, path: Optional[str] = None):
        errors = []
        for candidate in ([path] if path else library_candidates()):
            try:
                lib = _load(candidate)
                handle = ctypes.c_void_p()
                _check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
            except (OSError, AttributeError, CublasError) as e:
                errors.append(f"{candidate}: {e}")
                continue
            self._lib, self._handle, self.path = lib, handle, candidate
            _check(lib.cublasSetMathMode(handle, _DEFAULT_MATH), "cublasSetMathMode")
            return
        raise CublasError("no usable cuBLAS library (tried " + "; ".join(errors) + ")")

    def version(self) -> int:
        """cuBLAS's version number, e.g. 120903 for 12.9.3."""
        v = ctypes.c_int()
        _check(self._lib.cublasGetVersion_v2(self._handle, ctypes.byref(v)), "cublasGetVersion")
        return v.value

    def gemm(self, dtype: np.dtype, transa: bool, transb: bool, m: int, n: int, k: int,
             a: int, lda: int, b: int, ldb: int, c: int, ldc: int) -> None:
        """Column-major ``C (m, n) = op(A) @ op(B)`` on device pointers; alpha 1, beta 0."""
        dtype = np.dtype(dtype)
        if dtype == np.float32:
            fn, scalar = self._lib.cublasSgemm_v2, ctypes.c_float
        elif dtype == np.float64:
            fn, scalar = self._lib.cublasDgemm_v2, ctypes.c_double
        else:
            raise TypeError(f"cuBLAS GEMM of {dtype} is not bound")
        alpha, beta = scalar(1.0), scalar(0.0)
        _check(fn(self._handle, _OP_T if transa else _OP_N, _OP_T if transb else _OP_N,
                  m, n, k, ctypes.byref(alpha), ctypes.c_void_p(a), lda, ctypes.c_void_p(b),
                  ldb, ctypes.byref(beta), ctypes.c_void_p(c), ldc),
               "cublasSgemm" if dtype == np.float32 else "cublasDgemm")

