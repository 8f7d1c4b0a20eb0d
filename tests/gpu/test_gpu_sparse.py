"""condnn.gpu on a real device: every kernel against the float64 reference, the error paths,
and determinism.  Skipped, with the reason, where PyCUDA or a GPU is missing.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import condnn.gpu

if not condnn.gpu.available():
    pytest.skip(condnn.gpu.unavailable_reason(), allow_module_level=True)

import pycuda.gpuarray as ga  # noqa: E402  (only importable where the backend is)
from _problems import (  # noqa: E402
    BACKWARD_CASES,
    FORWARD_CASES,
    MASK_DTYPES,
    check_backward,
    check_forward,
    make_case,
)
from test_gpu_checks import _backward_cases, _forward_cases  # noqa: E402

import condnn.sparse as cpu  # noqa: E402

GPU_NAME = "pycuda.gpuarray.GPUArray"


def gpu(x):
    return None if x is None else ga.to_gpu(np.ascontiguousarray(x))


def run_forward(case, method="auto", out=None, check_masks=True):
    o = condnn.gpu.sparse_dot(gpu(case.a), gpu(case.amask), gpu(case.b), gpu(case.omask),
                              gpu(case.c), case.bs, out=out, method=method,
                              check_masks=check_masks)
    return o.get()


def run_backward(case, method="auto"):
    da, db, dc = condnn.gpu.sparse_dot_backward(gpu(case.grad_out), gpu(case.a),
                                                gpu(case.amask), gpu(case.b), gpu(case.omask),
                                                case.bs, method=method)
    return da.get(), db.get(), dc.get()


# Sizes beyond what the emulated tests can afford: many row tiles, long row lists, several
# thousand thread blocks, the block sizes of the benchmarks.
LARGE_CASES = [
    (2048, 1024, 1024, 64, np.float32, 0.25, 0.25, "auto"),
    (4096, 512, 512, 32, np.float32, 0.1, 0.1, "auto"),
    (1500, 768, 640, 128, np.float32, 0.5, 0.5, "auto"),
    (3000, 256, 256, 16, np.float32, 0.3, 0.3, "auto"),
    (1024, 512, 512, 64, np.float64, 0.25, 0.25, "auto"),
    (1024, 512, 512, 64, np.float32, 0.25, None, "sparse"),
    (1024, 512, 512, 64, np.float32, None, 0.25, "sparse"),
    (1024, 512, 512, 64, np.float32, 0.25, 0.25, "gemm"),
]


@pytest.mark.parametrize("n,k,m,bs,dtype,da,do,method", FORWARD_CASES + LARGE_CASES)
def test_forward_matches_reference(n, k, m, bs, dtype, da, do, method):
    case = make_case(np.random.default_rng([n, k, m, bs]), n, k, m, bs, dtype, da, do)
    check_forward(run_forward(case, method), case)


@pytest.mark.parametrize("n,k,m,bs,dtype,da,do,method", BACKWARD_CASES + LARGE_CASES)
def test_backward_matches_reference(n, k, m, bs, dtype, da, do, method):
    case = make_case(np.random.default_rng([n, k, m, bs, 1]), n, k, m, bs, dtype, da, do,
                     with_c=False)
    check_backward(*run_backward(case, method), case)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 600), kb=st.integers(0, 12), mb=st.integers(0, 12),
       bs=st.sampled_from([1, 2, 5, 8, 16, 17, 32, 33, 64, 100, 128]),
       dtype=st.sampled_from([np.float32, np.float64]),
       da=st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]),
       do=st.sampled_from([None, 0.0, 0.1, 0.5, 1.0]),
       method=st.sampled_from(["auto", "sparse", "gemm"]),
       mask_dtype=st.sampled_from(MASK_DTYPES), seed=st.integers(0, 2**32 - 1))
def test_random_problems(n, kb, mb, bs, dtype, da, do, method, mask_dtype, seed):
    rng = np.random.default_rng(seed)
    # Dense sides get sizes that are not multiples of bs, to reach partial last blocks.
    k = kb * bs if da is not None else kb * bs + int(rng.integers(0, bs))
    m = mb * bs if do is not None else mb * bs + int(rng.integers(0, bs))
    case = make_case(rng, n, k, m, bs, dtype, da, do, mask_dtype=mask_dtype)
    check_forward(run_forward(case, method), case)
    check_backward(*run_backward(case, method), case)


@pytest.mark.parametrize("method", ["auto", "sparse", "gemm"])
def test_results_are_bitwise_reproducible(method):
    case = make_case(np.random.default_rng(11), 2048, 512, 512, 32, np.float32, 0.3, 0.3)
    args = [gpu(x) for x in (case.a, case.amask, case.b, case.omask, case.c)]
    first = condnn.gpu.sparse_dot(*args, case.bs, method=method).get()
    grads = [x.get() for x in condnn.gpu.sparse_dot_backward(
        gpu(case.grad_out), args[0], args[1], args[2], args[3], case.bs, method=method)]
    for _ in range(3):
        again = condnn.gpu.sparse_dot(*args, case.bs, method=method).get()
        assert np.array_equal(first, again)
        grads2 = [x.get() for x in condnn.gpu.sparse_dot_backward(
            gpu(case.grad_out), args[0], args[1], args[2], args[3], case.bs, method=method)]
        for x, y in zip(grads, grads2):
            assert np.array_equal(x, y, equal_nan=True)


def test_inactive_outputs_are_exactly_zero_whatever_the_inputs():
    case = make_case(np.random.default_rng(12), 256, 256, 256, 32, np.float32, 0.5, 0.5)
    case.b[:] = np.nan
    case.c[:] = np.inf
    for method in ("sparse", "gemm"):
        out = run_forward(case, method)
        inactive = ~np.repeat(case.omask.astype(bool), case.bs, axis=1)
        assert np.all(out[inactive] == 0)


def test_out_is_filled_and_returned():
    case = make_case(np.random.default_rng(13), 100, 128, 96, 32, np.float32, 0.5, 0.5)
    out = ga.to_gpu(np.full((case.n, case.m), np.nan, np.float32))
    result = condnn.gpu.sparse_dot(gpu(case.a), gpu(case.amask), gpu(case.b),
                                   gpu(case.omask), gpu(case.c), case.bs, out=out)
    assert result is out
    check_forward(out.get(), case)


def test_more_column_tiles_than_one_grid_dimension_holds():
    case = make_case(np.random.default_rng(14), 3, 4, 70_000, 1, np.float32, 0.5, 0.5)
    check_forward(run_forward(case), case)


def test_empty_dimensions():
    for n, k, m in [(0, 32, 32), (5, 0, 32), (5, 32, 0), (0, 0, 0)]:
        case = make_case(np.random.default_rng(15), n, k, m, 16, np.float32, 0.5, 0.5)
        check_forward(run_forward(case), case)
        check_backward(*run_backward(case), case)


# -- errors ----------------------------------------------------------------------------

# Read-only arrays, views and NumPy subclasses have no GPUArray counterpart here.
_CPU_ONLY = {"out read-only", "out is b view", "out is c view", "out subclass", "a masked",
             "amask masked"}


def _error(fn, *args, **kwargs):
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    return type(info.value), str(info.value)


def _on_gpu(x):
    return gpu(x) if isinstance(x, np.ndarray) else x


@pytest.mark.parametrize("name", sorted(set(_forward_cases()) - _CPU_ONLY))
def test_forward_errors_match_cpu(name):
    args = _forward_cases()[name]
    kind, message = _error(lambda *x: cpu.sparse_dot(*x[:6], out=x[6]), *args)
    got = _error(lambda *x: condnn.gpu.sparse_dot(*x[:6], out=x[6]),
                 *[_on_gpu(x) for x in args])
    assert got == (kind, message.replace("numpy.ndarray", GPU_NAME))


@pytest.mark.parametrize("name", sorted(_backward_cases()))
def test_backward_errors_match_cpu(name):
    args = _backward_cases()[name]
    kind, message = _error(cpu.sparse_dot_backward, *args)
    got = _error(condnn.gpu.sparse_dot_backward, *[_on_gpu(x) for x in args])
    assert got == (kind, message.replace("numpy.ndarray", GPU_NAME))


def test_numpy_arrays_are_refused_by_name():
    a = np.ones((2, 4), np.float32)
    assert _error(condnn.gpu.sparse_dot, a, None, gpu(a.T.copy()), None, None, 2) == \
        (TypeError, f"a must be a {GPU_NAME}, got ndarray")


def test_out_overlapping_an_input_is_refused():
    big = ga.to_gpu(np.zeros((8, 8), np.float32))
    a = gpu(np.ones((4, 8), np.float32))
    b = gpu(np.ones((8, 8), np.float32))
    with pytest.raises(ValueError, match="^out must not share memory with a$"):
        condnn.gpu.sparse_dot(big[:4], None, b, None, None, 2, out=big[:4])
    mask = ga.to_gpu(np.ones((4, 4), np.uint8))
    out_over_mask = ga.GPUArray((4, 8), np.float32, gpudata=mask.gpudata)
    with pytest.raises(ValueError, match="^out must not share memory with omask$"):
        condnn.gpu.sparse_dot(a, None, b, mask, None, 2, out=out_over_mask)


def test_non_contiguous_arrays_are_refused():
    a = gpu(np.ones((4, 16), np.float32))[:, :8]
    b = gpu(np.ones((8, 8), np.float32))
    with pytest.raises(ValueError, match="^a must be C-contiguous"):
        condnn.gpu.sparse_dot(a, None, b, None, None, 2)


@pytest.mark.parametrize("which", ["amask", "omask"])
def test_mask_values_are_checked(which):
    case = make_case(np.random.default_rng(16), 10, 32, 32, 16, np.float32, 0.5, 0.5)
    getattr(case, which)[2, 1] = 3
    with pytest.raises(ValueError, match=f"^{which} must hold only 0 and 1$"):
        run_forward(case)
    with pytest.raises(ValueError, match=f"^{which} must hold only 0 and 1$"):
        run_backward(case)
    out = run_forward(case, check_masks=False)   # nonzero = on
    getattr(case, which)[2, 1] = 1
    check_forward(out, case)


def test_unknown_method_is_refused():
    case = make_case(np.random.default_rng(17), 4, 8, 8, 4, np.float32, 0.5, 0.5)
    with pytest.raises(ValueError, match="^method must be one of"):
        run_forward(case, method="fast")
