"""Random block-sparse problems and their checks against condnn.sparse_reference, shared by
the emulated-kernel tests and the GPU tests.

A result passes if every inactive entry is exactly 0 and every active entry is within the
float rounding bound of a dot product of its length: ``|x - ref| <= (len + 2) * eps *
ref_abs``, where ``ref_abs`` is the reference computed on absolute values.  A missing or extra
term, a wrong index or an unwritten entry is far outside that bound.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from condnn.sparse_reference import (
    expand_mask,
    reference_sparse_dot,
    reference_sparse_dot_backward,
)

MASK_DTYPES = (np.uint8, np.bool_, np.int8)
F32, F64 = np.float32, np.float64

# (n, k, m, bs, dtype, amask density, omask density, method).  Chosen to reach every tile
# path: several row tiles (n > 256), chunks of more than 64 gathered rows, block sizes that
# are not multiples of the tile (3, 17, 40), several column tiles per block (bs > 32), the
# narrow float32 tiles (bs <= 16), partial last blocks when one side is dense (k or m not a
# multiple of bs), float64, and the cuBLAS paths.
FORWARD_CASES = [
    (40, 64, 64, 32, F32, 0.5, 0.5, "auto"),
    (300, 80, 80, 40, F32, 0.8, 0.7, "auto"),
    (33, 30, 45, 3, F32, 0.5, 0.5, "auto"),
    (20, 34, 51, 17, F32, 0.6, 0.6, "auto"),
    (65, 128, 64, 64, F32, 0.3, 0.9, "auto"),
    (50, 64, 48, 16, F64, 0.5, 0.5, "auto"),
    (40, 96, 80, 40, F64, 0.7, 0.5, "auto"),
    (7, 8, 8, 1, F32, 0.5, 0.5, "auto"),
    (50, 64, 48, 16, F32, 0.5, None, "auto"),
    (50, 64, 48, 16, F32, None, 0.5, "auto"),
    (50, 64, 48, 16, F32, None, None, "auto"),
    (30, 50, 70, 16, F32, None, 0.5, "sparse"),
    (30, 50, 70, 16, F32, 0.5, None, "sparse"),
    (30, 45, 70, 32, F64, None, None, "sparse"),
    (30, 64, 64, 32, F32, 0.5, 0.5, "gemm"),
    (30, 64, 64, 32, F64, 0.5, 0.5, "gemm"),
]

BACKWARD_CASES = [
    (40, 64, 64, 32, F32, 0.5, 0.5, "auto"),
    (70, 80, 120, 40, F32, 0.8, 0.7, "auto"),
    (33, 30, 45, 3, F32, 0.5, 0.5, "auto"),
    (20, 48, 80, 16, F32, 0.6, 0.4, "auto"),
    (50, 64, 48, 16, F64, 0.5, 0.5, "auto"),
    (1100, 32, 32, 32, F32, 0.6, 0.6, "auto"),   # > 1024 rows: several compactions
    (50, 64, 48, 16, F32, 0.5, None, "auto"),
    (50, 64, 48, 16, F32, None, 0.5, "auto"),
    (50, 64, 48, 16, F32, None, None, "auto"),
    (50, 64, 50, 16, F32, 0.5, None, "sparse"),
    (50, 60, 48, 16, F32, None, 0.5, "sparse"),
    (30, 64, 64, 32, F32, 0.5, 0.5, "gemm"),
]


@dataclass
class Case:
    n: int
    k: int
    m: int
    bs: int
    dtype: np.dtype
    a: np.ndarray
    amask: Optional[np.ndarray]
    b: np.ndarray
    omask: Optional[np.ndarray]
    c: Optional[np.ndarray]
    grad_out: np.ndarray

    def label(self) -> str:
        return (f"n={self.n} k={self.k} m={self.m} bs={self.bs} {np.dtype(self.dtype).name} "
                f"amask={self.amask is not None} omask={self.omask is not None}")


def _mask(rng, rows: int, blocks: int, density: float, dtype) -> np.ndarray:
    return (rng.random((rows, blocks)) < density).astype(dtype)


def make_case(rng: np.random.Generator, n: int, k: int, m: int, bs: int, dtype,
              amask_density: Optional[float], omask_density: Optional[float],
              with_c: bool = True, mask_dtype=np.uint8) -> Case:
    """A problem with NaN in every entry that must never be read: inactive blocks of a and
    of grad_out.  k (m) is rounded up to a multiple of bs when amask (omask) is given."""
    dtype = np.dtype(dtype)
    if amask_density is not None:
        k = -(-k // bs) * bs
    if omask_density is not None:
        m = -(-m // bs) * bs
    a = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal((k, m)).astype(dtype)
    g = rng.standard_normal((n, m)).astype(dtype)
    c = rng.standard_normal(m).astype(dtype) if with_c else None
    amask = _mask(rng, n, k // bs, amask_density, mask_dtype) if amask_density is not None \
        else None
    omask = _mask(rng, n, m // bs, omask_density, mask_dtype) if omask_density is not None \
        else None
    if amask is not None:
        a[~expand_mask(amask, bs, a.shape)] = np.nan
    if omask is not None:
        g[~expand_mask(omask, bs, g.shape)] = np.nan
    return Case(n, k, m, bs, dtype, a, amask, b, omask, c, g)


def _eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def _assert_within(name: str, x: np.ndarray, ref: np.ndarray, ref_abs: np.ndarray,
                   length: int, dtype, active: np.ndarray, label: str) -> None:
    assert x.shape == ref.shape, f"{name}: shape {x.shape}, expected {ref.shape} ({label})"
    assert x.dtype == dtype, f"{name}: dtype {x.dtype}, expected {dtype} ({label})"
    inactive = ~active
    assert np.all(x[inactive] == 0), (
        f"{name}: {np.count_nonzero(x[inactive] != 0) + np.isnan(x[inactive]).sum()} inactive "
        f"entries are not 0 ({label})")
    bound = (length + 2) * _eps(dtype) * ref_abs + np.finfo(dtype).tiny
    err = np.abs(x.astype(np.float64) - ref)
    bad = ~(err <= bound)                   # catches NaN too
    if bad.any():
        i = np.argwhere(bad)[0]
        raise AssertionError(f"{name}: {bad.sum()} of {bad.size} entries off, first at "
                             f"{tuple(i)}: {x[tuple(i)]!r} vs {ref[tuple(i)]!r} "
                             f"(bound {bound[tuple(i)]:.3g}) ({label})")


def check_forward(out: np.ndarray, case: Case) -> None:
    ref = reference_sparse_dot(case.a, case.amask, case.b, case.omask, case.c, case.bs)
    ref_abs = reference_sparse_dot(np.abs(case.a), case.amask, np.abs(case.b), case.omask,
                                   None if case.c is None else np.abs(case.c), case.bs)
    active = expand_mask(case.omask, case.bs, (case.n, case.m))
    _assert_within("out", out, ref, ref_abs, case.k, case.dtype, active, case.label())


def check_backward(da: np.ndarray, db: np.ndarray, dc: np.ndarray, case: Case) -> None:
    ra, rb, rc = reference_sparse_dot_backward(case.grad_out, case.a, case.amask, case.b,
                                               case.omask, case.bs)
    aa, ab, ac = reference_sparse_dot_backward(np.abs(case.grad_out), np.abs(case.a),
                                               case.amask, np.abs(case.b), case.omask, case.bs)
    label = case.label()
    _assert_within("da", da, ra, aa, case.m, case.dtype,
                   expand_mask(case.amask, case.bs, (case.n, case.k)), label)
    _assert_within("db", db, rb, ab, case.n, case.dtype, np.ones(rb.shape, bool), label)
    _assert_within("dc", dc, rc, ac, case.n, case.dtype, np.ones(rc.shape, bool), label)
