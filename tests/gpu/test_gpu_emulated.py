"""The GPU backend's plans and CUDA kernels, run on the host emulation (no GPU needed).

The .cu sources are compiled unchanged for the CPU with emulator/emu_cuda.h, every thread
of a thread block a real thread and __syncthreads a real barrier, and the plans the GPU
functions would run are carried out with them (cuBLAS's GEMMs by NumPy, following cuBLAS's
column-major conventions).  What these tests cannot see: PyCUDA and cuBLAS themselves, and
hardware behaviour such as memory ordering between warps beyond what barriers give.
"""
import re
from pathlib import Path

import _emulator
import numpy as np
import pytest
from _problems import (
    BACKWARD_CASES,
    FORWARD_CASES,
    MASK_DTYPES,
    check_backward,
    check_forward,
    make_case,
)

from condnn.gpu import _plan, _runtime
from condnn.gpu import sparse as gpu_sparse

reason = _emulator.unavailable_reason()
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")

SOURCES = Path(__file__).resolve().parents[2] / "condnn" / "gpu"


def emulate_forward(case, method="auto", check_masks=True):
    out = np.full((case.n, case.m), np.nan, case.dtype)  # unwritten entries stay NaN
    plan = _plan.forward(case.n, case.k, case.m, case.bs, case.dtype, case.amask is not None,
                         case.omask is not None, case.c is not None, method, check_masks)
    backend = _emulator.run(plan, {"a": case.a, "amask": case.amask, "b": case.b,
                                   "omask": case.omask, "c": case.c, "out": out})
    return out, backend.launched


def emulate_backward(case, method="auto", check_masks=True):
    da = np.full((case.n, case.k), np.nan, case.dtype)
    db = np.full((case.k, case.m), np.nan, case.dtype)
    dc = np.full(case.m, np.nan, case.dtype)
    plan = _plan.backward(case.n, case.k, case.m, case.bs, case.dtype, case.amask is not None,
                          case.omask is not None, method, check_masks)
    backend = _emulator.run(plan, {"grad_out": case.grad_out, "a": case.a,
                                   "amask": case.amask, "b": case.b, "omask": case.omask,
                                   "da": da, "db": db, "dc": dc})
    return da, db, dc, backend.launched


@pytest.mark.parametrize("n,k,m,bs,dtype,da,do,method", FORWARD_CASES)
def test_forward_matches_reference(n, k, m, bs, dtype, da, do, method):
    rng = np.random.default_rng([n, k, m, bs])
    case = make_case(rng, n, k, m, bs, dtype, da, do)
    out, launched = emulate_forward(case, method)
    check_forward(out, case)
    uses_gemm = "gemm" in launched
    assert uses_gemm == (method == "gemm" or (method == "auto" and (da is None or do is None)))


@pytest.mark.parametrize("n,k,m,bs,dtype,da,do,method", BACKWARD_CASES)
def test_backward_matches_reference(n, k, m, bs, dtype, da, do, method):
    rng = np.random.default_rng([n, k, m, bs, 1])
    case = make_case(rng, n, k, m, bs, dtype, da, do, with_c=False)
    d_a, d_b, d_c, _ = emulate_backward(case, method)
    check_backward(d_a, d_b, d_c, case)


@pytest.mark.parametrize("shape", [(0, 32, 32), (5, 0, 32), (5, 32, 0), (0, 0, 0)])
def test_empty_dimensions(shape):
    n, k, m = shape
    rng = np.random.default_rng(0)
    case = make_case(rng, n, k, m, 16, np.float32, 0.5, 0.5)
    out, _ = emulate_forward(case)
    check_forward(out, case)
    check_backward(*emulate_backward(case)[:3], case)


@pytest.mark.parametrize("mask_dtype", MASK_DTYPES)
def test_mask_dtypes(mask_dtype):
    rng = np.random.default_rng(3)
    case = make_case(rng, 24, 64, 64, 16, np.float32, 0.5, 0.5, mask_dtype=mask_dtype)
    check_forward(emulate_forward(case)[0], case)


def test_all_off_and_all_on_masks():
    rng = np.random.default_rng(4)
    for density in (0.0, 1.0):
        case = make_case(rng, 40, 64, 64, 32, np.float32, density, density)
        out, _ = emulate_forward(case)
        check_forward(out, case)
        if density == 0.0:
            assert np.all(out == 0)
        check_backward(*emulate_backward(case)[:3], case)


def test_inactive_outputs_are_zero_with_nan_everywhere_else():
    rng = np.random.default_rng(5)
    case = make_case(rng, 30, 64, 64, 16, np.float32, 0.5, 0.5)
    case.b[:] = np.nan
    case.c[:] = np.nan
    out, _ = emulate_forward(case)
    inactive = ~np.repeat(case.omask.astype(bool), case.bs, axis=1)
    assert np.all(out[inactive] == 0)


@pytest.mark.parametrize("value", [2, 255])
@pytest.mark.parametrize("which", ["amask", "omask"])
def test_mask_values_are_checked(which, value):
    rng = np.random.default_rng(6)
    case = make_case(rng, 10, 32, 32, 16, np.float32, 0.5, 0.5)
    getattr(case, which)[3, 1] = value
    with pytest.raises(ValueError, match=f"^{which} must hold only 0 and 1$"):
        emulate_forward(case)
    with pytest.raises(ValueError, match=f"^{which} must hold only 0 and 1$"):
        emulate_backward(case)
    # Unchecked, any nonzero byte counts as on.
    out, launched = emulate_forward(case, check_masks=False)
    assert "check_mask_values" not in launched
    getattr(case, which)[3, 1] = 1
    check_forward(out, case)


def test_mask_index_lists_and_bitsets():
    rng = np.random.default_rng(7)
    n, nb = 300, 5
    mask = (rng.random((n, nb)) < 0.4).astype(np.uint8)
    mask[:, 2] = 0
    mask[:, 3] = 1
    bld = _plan._Builder(np.float32)
    rows, counts, bits = bld.mask_index("omask", n, nb, rows=True, bits=True)
    plan = bld.plan()
    backend = _emulator.run(plan, {"omask": mask})
    temps = dict(zip([name for name, _ in plan.temps], backend.allocations))
    got_counts = temps[counts.name].view(np.int32)[:nb]
    got_rows = temps[rows.name].view(np.int32)[:nb * n].reshape(nb, n)
    nwords = -(-n // 32)
    got_bits = temps[bits.name].view(np.uint32)[:nb * nwords].reshape(nb, nwords)
    for j in range(nb):
        expected = np.flatnonzero(mask[:, j])
        assert got_counts[j] == expected.size
        np.testing.assert_array_equal(got_rows[j, :expected.size], expected)
        unpacked = np.unpackbits(got_bits[j].view(np.uint8), bitorder="little")[:n]
        np.testing.assert_array_equal(unpacked, mask[:, j])


def test_every_kernel_is_emulated():
    """Each extern "C" kernel of the sources is reachable by name in the emulator."""
    names = set()
    for path in SOURCES.glob("*.cu"):
        text = path.read_text()
        names |= set(re.findall(r"__global__ void __launch_bounds__\(\d+\) (\w+)\(", text))
        names |= set(re.findall(r"^SS_(?:FORWARD|WEIGHT_GRAD)\((\w+),", text, re.M))
        # Families instantiated per dtype by a macro: NAME_##SUFFIX, then MACRO(suffix, T).
        families = re.findall(r"__global__ void __launch_bounds__\(\d+\) (\w+)_##SUFFIX\(",
                              text)
        for suffix in re.findall(r"^(?:ELEMENTWISE|TRAINING)\((\w+),", text, re.M):
            names |= {f"{family}_{suffix}" for family in families}
    assert len(names) >= 46
    sizes = (_emulator.ctypes.c_int * 64)()
    missing = [n for n in sorted(names)
               if _emulator.library().emu_param_sizes(n.encode(), sizes, 64) < 0]
    assert not missing


def test_public_functions_through_the_emulator(monkeypatch):
    """condnn.gpu.sparse_dot and sparse_dot_backward end to end, PyCUDA aside."""
    monkeypatch.setattr(_runtime, "runtime", lambda: _emulator.HostRuntime)
    case = make_case(np.random.default_rng(8), 48, 64, 96, 32, np.float32, 0.5, 0.5)
    out = np.full((case.n, case.m), np.nan, np.float32)
    got = gpu_sparse.sparse_dot(case.a, case.amask, case.b, case.omask, case.c, case.bs,
                                out=out)
    assert got is out
    check_forward(out, case)
    check_backward(*gpu_sparse.sparse_dot_backward(case.grad_out, case.a, case.amask, case.b,
                                                   case.omask, case.bs), case)
    with pytest.raises(ValueError, match="^a must be C-contiguous"):
        gpu_sparse.sparse_dot(np.asfortranarray(case.a), case.amask, case.b, case.omask,
                              case.c, case.bs)
    # An out whose first bytes are the output mask's.
    buf = np.zeros(case.n * case.m * 4, np.uint8)
    omask = buf[:case.omask.nbytes].reshape(case.omask.shape)
    omask[...] = case.omask
    aliased = buf.view(np.float32).reshape(case.n, case.m)
    with pytest.raises(ValueError, match="^out must not share memory with omask$"):
        gpu_sparse.sparse_dot(case.a, case.amask, case.b, omask, case.c, case.bs, out=aliased)


def test_fused_relu_through_the_emulator(monkeypatch):
    """condnn.gpu.sparse_dot(relu=True) is the ReLU of the product."""
    monkeypatch.setattr(_runtime, "runtime", lambda: _emulator.HostRuntime)
    case = make_case(np.random.default_rng(9), 40, 64, 96, 32, np.float32, 0.5, 0.5)
    plain = gpu_sparse.sparse_dot(case.a, case.amask, case.b, case.omask, case.c, case.bs)
    fused = gpu_sparse.sparse_dot(case.a, case.amask, case.b, case.omask, case.c, case.bs,
                                  relu=True)
    assert (plain < 0).any() and np.array_equal(fused, np.maximum(plain, 0))
