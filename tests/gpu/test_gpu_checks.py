"""The GPU backend's argument checks and plans, without a GPU.

The checks of condnn/gpu/_checks.py are backend-neutral: run on NumPy arrays they must raise
exactly what condnn.sparse raises, message included, which is what lets the GPU functions
promise the CPU functions' errors.
"""
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import condnn.sparse as cpu
from condnn import _checks
from condnn.gpu import _plan
from condnn.gpu._runtime import device_extent, shares_device_memory

f32, f64 = np.float32, np.float64


def _arrays():
    a = np.ones((4, 8), f32)
    b = np.ones((8, 6), f32)
    c = np.ones(6, f32)
    am = np.ones((4, 4), np.uint8)
    om = np.ones((4, 3), np.uint8)
    return a, am, b, om, c


def _forward_cases():
    a, am, b, om, c = _arrays()
    ro = np.empty((4, 6), f32)
    ro.flags.writeable = False
    big = np.empty((8, 8), f32)
    return {
        "bs zero": (a, am, b, om, c, 0, None),
        "bs negative": (a, am, b, om, c, -2, None),
        "bs bool": (a, am, b, om, c, True, None),
        "bs float": (a, am, b, om, c, 2.0, None),
        "a list": (a.tolist(), am, b, om, c, 2, None),
        "a int": (a.astype(np.int32), am, b, om, c, 2, None),
        "a 1-D": (a[0], None, b, None, None, 2, None),
        "a 3-D": (a[None], None, b, None, None, 2, None),
        "b list": (a, am, b.tolist(), om, c, 2, None),
        "b float16": (a, am, b.astype(np.float16), om, c, 2, None),
        "b mixed": (a, am, b.astype(f64), om, c, 2, None),
        "b rows": (a, am, np.ones((7, 6), f32), om, c, 2, None),
        "c 2-D": (a, am, b, om, c[None], 2, None),
        "c length": (a, am, b, om, np.ones(5, f32), 2, None),
        "c mixed": (a, am, b, om, c.astype(f64), 2, None),
        "amask list": (a, am.tolist(), b, om, c, 2, None),
        "amask float": (a, am.astype(f32), b, om, c, 2, None),
        "amask shape": (a, am[:, :3], b, om, c, 2, None),
        "amask bs": (a, np.ones((4, 2), np.uint8), b, om, c, 3, None),
        "omask int32": (a, am, b, om.astype(np.int32), c, 2, None),
        "omask shape": (a, am, b, om[:3], c, 2, None),
        "omask bs": (a, None, b, np.ones((4, 1), np.uint8), c, 4, None),
        "out list": (a, am, b, om, c, 2, [0]),
        "out shape": (a, am, b, om, c, 2, np.empty((4, 5), f32)),
        "out dtype": (a, am, b, om, c, 2, np.empty((4, 6), f64)),
        "out read-only": (a, am, b, om, c, 2, ro),
        "out is b view": (a, am, big[:, :6], om, c, 2, big[:4, :6]),
        "out is c view": (a, am, b, om, big[3, :6], 2, big[:4, :6]),
        "out subclass": (a, am, b, om, c, 2, np.empty((4, 6), f32).view(np.recarray)),
        "a masked": (np.ma.masked_array(a), am, b, om, c, 2, None),
        "amask masked": (a, np.ma.masked_array(am), b, om, c, 2, None),
        "b big-endian": (a, am, b.astype(">f4"), om, c, 2, None),
    }


def _backward_cases():
    a, am, b, om, _ = _arrays()
    g = np.ones((4, 6), f32)
    return {
        "bs zero": (g, a, am, b, om, 0),
        "grad_out list": (g.tolist(), a, am, b, om, 2),
        "grad_out 1-D": (g[0], a, am, b, om, 2),
        "grad_out shape": (g[:, :5], a, am, b, om, 2),
        "grad_out mixed": (g.astype(f64), a, am, b, om, 2),
        "a float16": (g, a.astype(np.float16), am, b, om, 2),
        "b rows": (g, a, am, np.ones((9, 6), f32), om, 2),
        "b mixed": (g, a, am, b.astype(f64), om, 2),
        "amask shape": (g, a, am[:2], b, om, 2),
        "omask dtype": (g, a, am, b, om.astype(f32), 2),
        "omask bs": (g, a, None, b, om, 5),
    }


def _raised(fn, *args):
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("name", sorted(_forward_cases()))
def test_forward_errors_match_cpu(name):
    args = _forward_cases()[name]
    expected = _raised(lambda *x: cpu.sparse_dot(*x[:6], out=x[6]), *args)
    got = _raised(lambda *x: _checks.check_forward(*x, kind=_checks.NUMPY), *args)
    assert got == expected


@pytest.mark.parametrize("name", sorted(_backward_cases()))
def test_backward_errors_match_cpu(name):
    args = _backward_cases()[name]
    expected = _raised(cpu.sparse_dot_backward, *args)
    got = _raised(lambda *x: _checks.check_backward(*x, kind=_checks.NUMPY), *args)
    assert got == expected


def test_mask_value_message_matches_cpu():
    a, am, b, om, c = _arrays()
    am[1, 1] = 2
    assert _raised(cpu.sparse_dot, a, am, b, om, c, 2)[1] == \
        _checks.mask_values_message("amask")


def test_valid_arguments_give_dimensions():
    a, am, b, om, c = _arrays()
    assert _checks.check_forward(a, am, b, om, c, 2, np.empty((4, 6), f32),
                                 kind=_checks.NUMPY) == (4, 8, 6, 2)
    assert _checks.check_backward(np.ones((4, 6), f32), a, None, b, om, 2,
                                  kind=_checks.NUMPY) == (4, 8, 6, 2)


def _fake_gpuarray(ptr, shape, strides, itemsize=4):
    size = int(np.prod(shape))
    return SimpleNamespace(gpudata=ptr, shape=shape, strides=strides, size=size,
                           dtype=np.dtype(f"f{itemsize}"))


def test_device_extent_and_overlap():
    x = _fake_gpuarray(1000, (4, 8), (32, 4))
    assert device_extent(x) == (1000, 1128)
    col = _fake_gpuarray(1000 + 4 * 7, (4,), (32,))        # last column of x
    assert device_extent(col) == (1028, 1028 + 3 * 32 + 4)
    after = _fake_gpuarray(1128, (2, 2), (8, 4))
    reversed_rows = _fake_gpuarray(1096, (4, 8), (-32, 4))
    empty = _fake_gpuarray(None, (0, 8), (32, 4))
    assert shares_device_memory(x, col)
    assert not shares_device_memory(x, after)
    assert device_extent(reversed_rows) == (1000, 1128)
    assert shares_device_memory(x, reversed_rows)
    assert not shares_device_memory(x, empty) and device_extent(empty) == (0, 0)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method must be one of 'auto', 'gemm', 'sparse', "
                                         "got 'fast'"):
        _plan.forward(4, 8, 8, 4, np.dtype(f32), True, True, False, "fast")


def test_plans_are_cached():
    args = (64, 128, 128, 32, np.dtype(f32), True, True, True)
    assert _plan.forward(*args) is _plan.forward(*args)


def test_ss_forward_does_not_touch_cublas_and_sf_does():
    ss = _plan.forward(64, 128, 128, 32, np.dtype(f32), True, True, True)
    sf = _plan.forward(64, 128, 128, 32, np.dtype(f32), True, False, True)
    assert not any(isinstance(s, _plan.Gemm) for s in ss.steps)
    assert any(isinstance(s, _plan.Gemm) for s in sf.steps)
    # The masked copy comes before the GEMM: a is never assumed zero where amask is off.
    kinds = [s.kernel if isinstance(s, _plan.Launch) else type(s).__name__ for s in sf.steps]
    assert kinds.index("masked_copy_f32") < kinds.index("Gemm")


def test_large_grids_fold_into_z():
    assert _plan._split_grid(10) == (10, 1)
    y, z = _plan._split_grid(200_000)
    assert y <= 65535 and z <= 65535 and y * z >= 200_000


def test_tile_tables_match_the_kernel_instantiations():
    text = (Path(_plan.__file__).parent / "block_sparse.cu").read_text()
    forward = {m[0]: tuple(map(int, m[2:4])) + (int(m[1]),) for m in re.findall(
        r"^SS_FORWARD\(ss_forward_(\w+),\s+\w+,\s+(\d+),\s+(\d+),\s+(\d+),", text, re.M)}
    for tiles in _plan._FORWARD_TILES.values():
        assert forward[tiles.suffix] == (tiles.rows, tiles.cols, tiles.threads)
        assert forward["bt_" + tiles.suffix] == forward[tiles.suffix]
    grads = {m[0]: (int(m[2]), int(m[3]), int(m[1])) for m in re.findall(
        r"^SS_WEIGHT_GRAD\(ss_weight_grad_(\w+),\s+\w+,\s+(\d+),\s+(\d+),\s+(\d+),", text,
        re.M)}
    for tiles in _plan._WEIGHT_GRAD_TILES.values():
        assert grads[tiles.suffix] == (tiles.rows, tiles.cols, tiles.threads)


def test_cublas_library_choice_and_missing_library(monkeypatch, tmp_path):
    from condnn.gpu import _cublas

    missing = str(tmp_path / "libcublas.so.99")
    monkeypatch.setenv("CONDNN_CUBLAS", missing)
    assert _cublas.library_candidates() == [missing]
    with pytest.raises(_cublas.CublasError, match="^no usable cuBLAS library \\(tried "):
        _cublas.Cublas()
    monkeypatch.delenv("CONDNN_CUBLAS")
    assert "libcublas.so" in _cublas.library_candidates()
