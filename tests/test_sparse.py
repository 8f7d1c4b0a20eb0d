"""Correctness of ``condnn.sparse_dot`` and ``condnn.sparse_dot_backward``.

Every variant (``ss``, ``sf``, ``fs``, dense), forward and backward, is compared with the float64
reference of :mod:`condnn.sparse_reference` over random shapes, block sizes 1..128, mask
densities and patterns, dtypes and memory layouts of every argument.

Tolerance: the forward error bound of a dot product, elementwise,

    |computed - exact| <= (terms + 2) * eps * (|A_m| @ |B| + |c|)

(``terms`` the length of the dot product, ``eps`` the machine epsilon of the dtype), so a result
passes only if some order of rounding in that dtype could have produced it.  Entries whose bound
is 0 (inactive outputs, ``da`` where ``amask`` is off) must be exactly 0.  The tests
``test_tolerance_*`` show that the bound rejects a single missing product term and a float64
result computed with float32 accuracy, at the sizes used here.

Arguments that must never be read (inactive blocks of ``a`` and ``grad_out``, rows of ``b``
that only meet inactive input blocks, columns of ``b`` and entries of ``c`` that only feed
inactive outputs) are "poisoned" with NaN and inf for the kernel, while the reference sees
finite values there: the result must not change.
"""
import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import condnn
from condnn import _sparse
from condnn.sparse import variant as variant_of
from condnn.sparse_reference import (expand_mask, reference_sparse_dot,
                                     reference_sparse_dot_backward)

VARIANTS = ("ss", "sf", "fs", "dense")
SPARSE_VARIANTS = ("ss", "sf", "fs")
DTYPES = (np.float32, np.float64)
# Powers of two, their neighbours, and sizes that are not a multiple of any vector width.
BLOCK_SIZES = (1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 40, 48, 63, 64, 65,
               96, 100, 127, 128)
DENSITIES = (0.0, 0.05, 0.5, 1.0)
MASK_PATTERNS = ("bernoulli", "same_rows", "last_block", "one_row", "checker")
MASK_DTYPES = (np.bool_, np.int8, np.uint8)
# "F" is Fortran order, which is also what a transposed view of a C array is.  "cols2",
# "rows2": every other column / row of a larger array.  "rev_*": negative strides.  "offset":
# a window of a larger array (unit-stride rows, row stride larger than the width, start not
# aligned to a vector).  "readonly": a C array whose view is not writeable.
LAYOUTS_2D = ("C", "F", "cols2", "rows2", "rev_rows", "rev_cols", "rev_both", "offset",
              "readonly")
LAYOUTS_1D = ("C", "strided", "reversed", "offset", "readonly")
OUT_LAYOUTS = ("C", "F", "cols2", "rows2", "rev_rows", "offset")


# ----------------------------------------------------------------------------------------------
# Memory layouts


def _buffer_shape(shape: Tuple[int, ...], layout: str) -> Tuple[int, ...]:
    """Shape of the base array a view of ``shape`` in ``layout`` is cut from."""
    if len(shape) == 1:
        (m,) = shape
        return {"strided": (2 * m + 1,), "offset": (m + 3,)}.get(layout, (m,))
    r, c = shape
    return {"F": (c, r), "cols2": (r, 2 * c + 1), "rows2": (2 * r + 1, c),
            "offset": (r + 2, c + 3)}.get(layout, (r, c))


def _view_of(buf: np.ndarray, layout: str, shape: Tuple[int, ...]) -> np.ndarray:
    """The view of ``buf`` that ``layout`` names (``buf`` of ``_buffer_shape(shape, layout)``)."""
    if len(shape) == 1:
        (m,) = shape
        return {"C": buf, "readonly": buf, "strided": buf[1::2], "reversed": buf[::-1],
                "offset": buf[1:m + 1]}[layout]
    r, c = shape
    views = {"C": lambda: buf, "readonly": lambda: buf, "F": lambda: buf.T,
             "cols2": lambda: buf[:, 1::2], "rows2": lambda: buf[1::2],
             "rev_rows": lambda: buf[::-1], "rev_cols": lambda: buf[:, ::-1],
             "rev_both": lambda: buf[::-1, ::-1], "offset": lambda: buf[1:r + 1, 2:c + 2]}
    return views[layout]()


def in_layout(x: np.ndarray, layout: str, fill) -> np.ndarray:
    """A new array equal to ``x`` laid out as ``layout``; memory around and between it holds
    ``fill``, so a kernel that ignores the strides reads ``fill``."""
    buf = np.full(_buffer_shape(x.shape, layout), fill, dtype=x.dtype)
    view = _view_of(buf, layout, x.shape)
    assert view.shape == x.shape
    view[...] = x
    if layout == "readonly":
        view.flags.writeable = False
    return view


def out_buffer(shape: Tuple[int, int], dtype, layout: str) -> Tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """``(out, buf, outside)``: an ``out`` array full of NaN in ``layout``, its base ``buf``
    (also NaN) and the boolean mask of the entries of ``buf`` that are not part of ``out``."""
    buf = np.full(_buffer_shape(shape, layout), np.nan, dtype=dtype)
    outside = np.ones(buf.shape, dtype=bool)
    _view_of(outside, layout, shape)[...] = False
    return _view_of(buf, layout, shape), buf, outside


# ----------------------------------------------------------------------------------------------
# Tolerance


def tolerance_violation(got: np.ndarray, want: np.ndarray, scale: np.ndarray, terms: int,
                        dtype) -> Optional[str]:
    """None if ``|got - want| <= (terms + 2) * eps * scale`` everywhere, else a description of
    the first violation.  ``want`` and ``scale`` are float64; NaN in ``got`` always violates."""
    eps = np.finfo(dtype).eps
    tol = (terms + 2) * eps * scale
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= tol)
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{int(bad.sum())} of {bad.size} entries out of tolerance; first at {idx}: "
            f"got {got[idx]!r}, reference {want[idx]!r}, allowed error {tol[idx]:.3g}")


def assert_close(name: str, got: np.ndarray, want: np.ndarray, scale: np.ndarray, terms: int,
                 dtype, context: str) -> None:
    """Fails with the argument name and the case if ``got`` is not ``want`` within tolerance."""
    assert isinstance(got, np.ndarray), f"{name}: got a {type(got).__name__}; {context}"
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}; {context}"
    assert got.dtype == np.dtype(dtype), f"{name}: dtype {got.dtype}, expected {dtype}; {context}"
    problem = tolerance_violation(got, want, scale, terms, dtype)
    if problem is not None:
        pytest.fail(f"{name}: {problem}; {context}")


# ----------------------------------------------------------------------------------------------
# Problems


def make_mask(rng: np.random.Generator, rows: int, blocks: int, density: float,
              pattern: str) -> np.ndarray:
    """A (rows, blocks) boolean block mask."""
    if pattern == "bernoulli":
        return rng.random((rows, blocks)) < density
    if pattern == "same_rows":    # every row uses the same blocks: maximal reuse of b
        return np.repeat(rng.random((1, blocks)) < density, rows, axis=0)
    mask = np.zeros((rows, blocks), dtype=bool)
    if pattern == "last_block" and blocks:    # only the block at the edge of the matrix
        mask[:, -1] = True
    elif pattern == "one_row" and rows:    # a single row is active, in every block
        mask[rows // 2] = True
    elif pattern == "checker":
        mask[:] = (np.add.outer(np.arange(rows), np.arange(blocks)) % 2) == 0
    return mask


@dataclass
class Problem:
    """One call of sparse_dot (and its backward), with everything needed to check it."""
    variant: str
    dtype: type
    bs: int
    n: int
    k: int
    m: int
    has_bias: bool = True
    densities: Tuple[float, float] = (0.5, 0.5)
    patterns: Tuple[str, str] = ("bernoulli", "bernoulli")
    mask_dtype: type = np.uint8
    layouts: Dict[str, str] = field(default_factory=dict)    # argument name -> layout
    poison: bool = False
    seed: int = 0
    blocked: bool = False      # b given as condnn.BlockWeights (forward only)
    half: bool = False         # ... storing float16 weights (float32 only): b is drawn
                               # as float16 values, so that storage changes none of them

    def describe(self) -> str:
        return (f"variant={self.variant} dtype={np.dtype(self.dtype).name} bs={self.bs} "
                f"n={self.n} k={self.k} m={self.m} bias={self.has_bias} "
                f"densities={self.densities} patterns={self.patterns} "
                f"mask_dtype={np.dtype(self.mask_dtype).name} layouts={self.layouts} "
                f"poison={self.poison} seed={self.seed} blocked={self.blocked} "
                f"half={self.half}")


@dataclass
class Arrays:
    """The clean arrays (seen by the reference) and the kernel's arguments (laid out and
    possibly poisoned)."""
    a: np.ndarray
    b: np.ndarray
    c: Optional[np.ndarray]
    g: np.ndarray
    amask: Optional[np.ndarray]    # boolean, for the reference
    omask: Optional[np.ndarray]
    args: Dict[str, Optional[np.ndarray]]


def _poisoned(x: np.ndarray, where: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x with NaN, +inf or -inf at ``where``."""
    x = x.copy()
    values = np.array([np.nan, np.inf, -np.inf], dtype=x.dtype)
    x[where] = rng.choice(values, size=int(where.sum()))
    return x


def build(p: Problem) -> Arrays:
    """The arrays of problem ``p``, deterministic in ``p.seed``."""
    rng = np.random.default_rng(p.seed)
    dtype = p.dtype
    a = rng.standard_normal((p.n, p.k)).astype(dtype)
    b = rng.standard_normal((p.k, p.m)).astype(dtype)
    if p.half:
        b = b.astype(np.float16).astype(dtype)
    c = rng.standard_normal(p.m).astype(dtype) if p.has_bias else None
    g = rng.standard_normal((p.n, p.m)).astype(dtype)
    amask = omask = None
    if p.variant in ("ss", "sf"):
        amask = make_mask(rng, p.n, p.k // p.bs, p.densities[0], p.patterns[0])
    if p.variant in ("ss", "fs"):
        omask = make_mask(rng, p.n, p.m // p.bs, p.densities[1], p.patterns[1])

    ka, kb, kc, kg = a, b, c, g
    if p.poison:
        am = expand_mask(amask, p.bs, a.shape)
        om = expand_mask(omask, p.bs, (p.n, p.m))
        ka = _poisoned(a, ~am, rng)
        kg = _poisoned(g, ~om, rng)
        unread_rows = ~am.any(axis=0)     # input columns off in every row: rows of b unread
        unread_cols = ~om.any(axis=0)     # outputs off in every row: columns of b, entries of c
        kb = _poisoned(b, np.logical_or.outer(unread_rows, unread_cols), rng)
        if c is not None:
            kc = _poisoned(c, unread_cols, rng)

    lay = p.layouts
    args = {
        "a": in_layout(ka, lay.get("a", "C"), np.nan),
        "b": in_layout(kb, lay.get("b", "C"), np.nan),
        "c": None if kc is None else in_layout(kc, lay.get("c", "C"), np.nan),
        "grad_out": in_layout(kg, lay.get("grad_out", "C"), np.nan),
    }
    for name, mask in (("amask", amask), ("omask", omask)):
        args[name] = None if mask is None else in_layout(
            mask.astype(p.mask_dtype), lay.get(name, "C"), 1)
    return Arrays(a, b, c, g, amask, omask, args)


def block_weights(b: np.ndarray, p: Problem) -> condnn.BlockWeights:
    """b stored block by block as problem p asks."""
    return condnn.BlockWeights(b, p.bs, storage=np.float16 if p.half else None)


def _snapshot(args: Dict[str, Optional[np.ndarray]]) -> Dict[str, Optional[np.ndarray]]:
    return {name: None if x is None else x.copy() for name, x in args.items()}


def _assert_unchanged(before, after, context: str) -> None:
    """The kernels must not write into their inputs (e.g. mask them in place)."""
    for name, x in before.items():
        if x is not None:
            assert np.array_equal(x, after[name], equal_nan=True), \
                f"{name} was modified by the call; {context}"


def check_forward(p: Problem, out_layout: Optional[str] = None, relu: bool = False) -> None:
    """Runs sparse_dot on ``p`` (with ``relu``, its fused ReLU) and compares it with the
    reference."""
    arr = build(p)
    args = arr.args
    context = p.describe() + f" out={out_layout} relu={relu}"
    want = reference_sparse_dot(arr.a, arr.amask, arr.b, arr.omask, arr.c, p.bs)
    if relu:
        want = np.maximum(want, 0)
    absc = None if arr.c is None else np.abs(arr.c)
    scale = reference_sparse_dot(np.abs(arr.a), arr.amask, np.abs(arr.b), arr.omask, absc, p.bs)
    before = _snapshot(args)

    out = buf = outside = None
    if out_layout is not None:
        out, buf, outside = out_buffer((p.n, p.m), p.dtype, out_layout)
    b = block_weights(args["b"], p) if p.blocked else args["b"]
    got = condnn.sparse_dot(args["a"], args["amask"], b, args["omask"], args["c"], p.bs,
                            out=out, relu=relu)
    if out is not None:
        assert got is out, f"sparse_dot did not return out; {context}"
        assert np.isnan(buf[outside]).all(), f"wrote outside out; {context}"
    assert_close("out", got, want, scale, p.k, p.dtype, context)
    _assert_unchanged(before, args, context)


def check_backward(p: Problem, into: bool = False) -> None:
    """Runs sparse_dot_backward on ``p`` and compares da, db, dc with the reference; with
    ``into``, db is added into an accumulator of random values (``db_into``)."""
    arr = build(p)
    args = arr.args
    context = p.describe()
    want = list(reference_sparse_dot_backward(arr.g, arr.a, arr.amask, arr.b, arr.omask,
                                              p.bs))
    scale = list(reference_sparse_dot_backward(np.abs(arr.g), np.abs(arr.a), arr.amask,
                                               np.abs(arr.b), arr.omask, p.bs))
    extra = {}
    if into:
        start = np.random.default_rng(p.seed).standard_normal((p.k, p.m)).astype(p.dtype)
        extra["db_into"] = start.copy()
        want[1] = want[1] + start
        scale[1] = scale[1] + np.abs(start)
    before = _snapshot(args)
    got = condnn.sparse_dot_backward(args["grad_out"], args["a"], args["amask"], args["b"],
                                     args["omask"], p.bs, **extra)
    assert isinstance(got, tuple) and len(got) == 3, f"expected (da, db, dc); {context}"
    if into:
        assert got[1] is extra["db_into"], f"db is not db_into; {context}"
    for name, g, w, s, terms in zip(("da", "db", "dc"), got, want, scale,
                                    (p.m, p.n + into, p.n)):
        assert_close(name, g, w, s, terms, p.dtype, context)
    _assert_unchanged(before, args, context)


# ----------------------------------------------------------------------------------------------
# Property-based comparison with the reference


@st.composite
def problems(draw) -> Problem:
    """Random problems: every variant, dtype, block size, layout; small enough to be quick."""
    variant = draw(st.sampled_from(VARIANTS))
    bs = draw(st.sampled_from(BLOCK_SIZES))
    max_blocks = max(2, min(24, 384 // bs))
    n = draw(st.one_of(st.sampled_from((0, 1, 2, 3)), st.integers(0, 70)))
    # A masked dimension is a multiple of bs; an unmasked one can be any size.
    k = bs * draw(st.integers(0, max_blocks)) if variant in ("ss", "sf") \
        else draw(st.integers(0, 200))
    m = bs * draw(st.integers(0, max_blocks)) if variant in ("ss", "fs") \
        else draw(st.integers(0, 200))
    layouts = {name: draw(st.sampled_from(LAYOUTS_2D))
               for name in ("a", "b", "grad_out", "amask", "omask")}
    layouts["c"] = draw(st.sampled_from(LAYOUTS_1D))
    return Problem(
        variant=variant, dtype=draw(st.sampled_from(DTYPES)), bs=bs, n=n, k=k, m=m,
        has_bias=draw(st.booleans()),
        densities=(draw(st.sampled_from(DENSITIES)), draw(st.sampled_from(DENSITIES))),
        patterns=(draw(st.sampled_from(MASK_PATTERNS)), draw(st.sampled_from(MASK_PATTERNS))),
        mask_dtype=draw(st.sampled_from(MASK_DTYPES)), layouts=layouts,
        poison=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 32 - 1)))


_PROPERTY = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
# The layout of ``out``, or no ``out``.
OPTIONAL_OUT = st.one_of(st.none(), st.sampled_from(OUT_LAYOUTS))


@_PROPERTY
@given(p=problems(), out_layout=OPTIONAL_OUT)
def test_forward_matches_reference(p: Problem, out_layout: Optional[str]) -> None:
    check_forward(p, out_layout)


@_PROPERTY
@given(p=problems(), out_layout=OPTIONAL_OUT)
def test_forward_with_block_weights_matches_reference(p: Problem,
                                                      out_layout: Optional[str]) -> None:
    check_forward(dataclasses.replace(p, blocked=True), out_layout)


@_PROPERTY
@given(p=problems())
def test_backward_matches_reference(p: Problem) -> None:
    check_backward(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_backward_into_an_accumulator_matches_reference(p: Problem) -> None:
    check_backward(p, into=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_without_da_gives_the_same_db_and_dc(variant: str) -> None:
    p = Problem(variant=variant, dtype=np.float32, bs=16, n=37, k=64, m=48, seed=3)
    args = build(p).args
    call = [args["grad_out"], args["a"], args["amask"], args["b"], args["omask"], p.bs]
    full = condnn.sparse_dot_backward(*call)
    da, db, dc = condnn.sparse_dot_backward(*call, compute_da=False)
    assert da is None
    assert np.array_equal(db, full[1]) and np.array_equal(dc, full[2])


# ----------------------------------------------------------------------------------------------
# The kernels' paths: from a batch size up, the product sums each output block in a buffer
# and reads the inputs packed ("staged"), unless packing would take too much memory, and it
# cuts batches whose buffers would be too large into chunks of rows; from a number of rows
# of an output block, it fetches weights two pairs of blocks ahead.  The tests' batches are
# small, so these lower the limits to reach every path.

KERNEL_LIMITS = st.tuples(st.sampled_from((1, 3, 10 ** 9)),     # staged from this many rows
                          st.sampled_from((1, 300, 4 << 20)),   # bytes of a block's buffer
                          st.sampled_from((0, 2000, 64 << 20)),  # bytes of packed inputs
                          st.sampled_from((1, 64)))             # two ahead from these rows


@contextlib.contextmanager
def kernel_limits(limits: Tuple[int, int, int, int]):
    previous = _sparse._set_limits(*limits)
    try:
        yield
    finally:
        _sparse._set_limits(*previous)


def _results(p: Problem) -> Tuple[np.ndarray, ...]:
    args = build(p).args
    b = block_weights(args["b"], p) if p.blocked else args["b"]
    out = condnn.sparse_dot(args["a"], args["amask"], b, args["omask"], args["c"], p.bs)
    grads = condnn.sparse_dot_backward(args["grad_out"], args["a"], args["amask"], args["b"],
                                       args["omask"], p.bs)
    return (out,) + tuple(grads)


@_PROPERTY
@given(p=problems(), limits=KERNEL_LIMITS, blocked=st.booleans(), out_layout=OPTIONAL_OUT)
def test_every_kernel_path_matches_reference_and_staging_changes_no_bit(
        p: Problem, limits: Tuple[int, int, int, int], blocked: bool,
        out_layout: Optional[str]) -> None:
    """Also the fused ReLU, on every path: the reference's, and bit for bit the ReLU of
    the plain product."""
    p = dataclasses.replace(p, blocked=blocked)
    with kernel_limits(limits):
        check_forward(p, out_layout)
        check_forward(p, out_layout, relu=True)
        check_backward(p)
        got = _results(p)
        args = build(p).args
        b = block_weights(args["b"], p) if p.blocked else args["b"]
        fused = condnn.sparse_dot(args["a"], args["amask"], b, args["omask"], args["c"],
                                  p.bs, relu=True)
    assert np.array_equal(fused, np.maximum(got[0], 0), equal_nan=True), p.describe()
    if limits[1] < 4 << 20:
        # Chunks of rows: a pair of blocks can have few enough rows in a chunk to take
        # another kernel (for transposed weights), with another order of operations.
        return
    # Staged or not, every output is the same sum in the same order.
    for name, x, y in zip(("out", "da", "db", "dc"), got, _results(p)):
        assert np.array_equal(x, y), f"{name} differs from the default path's; " \
            f"limits={limits} {p.describe()}"


@_PROPERTY
@given(p=problems(), limits=KERNEL_LIMITS, out_layout=OPTIONAL_OUT)
def test_forward_with_float16_weights_matches_reference_and_float32_bitwise(
        p: Problem, limits: Tuple[int, int, int, int], out_layout: Optional[str]) -> None:
    """Weights stored in float16 are converted exactly: the product is the reference's,
    and bit for bit that of the same (float16-valued) weights stored in float32."""
    p = dataclasses.replace(p, dtype=np.float32, blocked=True, half=True)
    with kernel_limits(limits):
        check_forward(p, out_layout)
        args = build(p).args
        call = lambda b: condnn.sparse_dot(args["a"], args["amask"], b, args["omask"],
                                           args["c"], p.bs)
        half = call(block_weights(args["b"], p))
        single = call(condnn.BlockWeights(args["b"], p.bs))
    assert half.dtype == np.float32
    assert np.array_equal(half, single, equal_nan=True), p.describe()


@pytest.mark.parametrize("variant", SPARSE_VARIANTS)
def test_fused_relu_keeps_nan_and_zeroes_negatives_as_numpy_maximum(variant: str) -> None:
    p = Problem(variant=variant, dtype=np.float32, bs=8, n=9, k=16, m=16,
                densities=(1.0, 1.0), seed=5)
    args = build(p).args
    a = args["a"].copy()
    a[0, 0] = np.nan                      # every output of row 0 is NaN
    got = condnn.sparse_dot(a, args["amask"], args["b"], args["omask"], args["c"], p.bs,
                            relu=True)
    plain = condnn.sparse_dot(a, args["amask"], args["b"], args["omask"], args["c"], p.bs)
    assert np.isnan(got[0]).all() and (plain[1:] < 0).any()
    assert np.array_equal(got, np.maximum(plain, 0), equal_nan=True)


# ----------------------------------------------------------------------------------------------
# Systematic sweeps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", SPARSE_VARIANTS)
def test_every_block_size_from_1_to_128(variant: str, dtype) -> None:
    """Each block size 1..128, forward and backward, with an odd batch (partial row tiles)
    and, for the unmasked dimension, a size that is not a multiple of anything."""
    failures = []
    for bs in range(1, 129):
        k = 3 * bs if variant in ("ss", "sf") else 37
        m = 2 * bs if variant in ("ss", "fs") else 45
        # Vary layouts and poisoning with bs so each appears with many block sizes.
        layouts = {"a": "offset" if bs % 5 == 0 else "C", "b": "offset" if bs % 3 == 0 else "C",
                   "c": "strided" if bs % 2 == 0 else "C",
                   "grad_out": "cols2" if bs % 4 == 1 else "C"}
        p = Problem(variant, dtype, bs, n=13, k=k, m=m, poison=bs % 2 == 1, seed=bs,
                    layouts=layouts)
        for check in (check_forward, check_backward):
            try:
                check(p)
            except (Exception, pytest.fail.Exception) as e:  # collect every failing size
                failures.append(f"bs={bs} {check.__name__}: {str(e).splitlines()[0]}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])


ROW_COUNTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47,
              48, 49, 63, 64, 65, 127, 128, 129, 255, 256, 257)


@pytest.mark.parametrize("density", (0.5, 1.0))
@pytest.mark.parametrize("variant", SPARSE_VARIANTS)
def test_row_counts_around_tile_boundaries(variant: str, density: float) -> None:
    """Batches of every size around the usual row-tile and row-group sizes (powers of two,
    multiples of 6 and 8, plus and minus one); at density 1 every row is in every block."""
    failures = []
    for n in ROW_COUNTS:
        p = Problem(variant, np.float32, 16, n=n, k=80, m=48, densities=(density, density),
                    seed=n)
        for check in (check_forward, check_backward):
            try:
                check(p)
            except (Exception, pytest.fail.Exception) as e:  # collect every failing size
                failures.append(f"n={n} {check.__name__}: {str(e).splitlines()[0]}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])


# Shapes past typical cache blocking (k or m over 1000) with tails everywhere.
LARGE_SHAPES = [
    ("ss", 48, 67, 48 * 23, 48 * 11), ("ss", 16, 33, 16 * 70, 16 * 65), ("ss", 128, 9, 1280, 768),
    ("ss", 24, 130, 24 * 43, 24 * 7),
    ("sf", 64, 41, 64 * 17, 1037), ("sf", 8, 19, 8 * 131, 301),
    ("fs", 32, 37, 1037, 32 * 21), ("fs", 100, 5, 2003, 700),
    ("dense", 16, 21, 1029, 515),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant,bs,n,k,m", LARGE_SHAPES)
def test_large_shapes(variant: str, bs: int, n: int, k: int, m: int, dtype) -> None:
    p = Problem(variant, dtype, bs, n, k, m, densities=(0.3, 0.6), poison=True, seed=n)
    check_forward(p, out_layout="offset")
    check_backward(p)


# ----------------------------------------------------------------------------------------------
# Semantics


@pytest.mark.parametrize("variant", SPARSE_VARIANTS)
def test_nan_and_inf_in_unread_blocks_never_reach_outputs(variant: str) -> None:
    """NaN/inf wherever the kernel must not look: every output stays finite, inactive
    outputs and da where amask is off are exactly 0."""
    p = Problem(variant, np.float32, 8, n=11, k=8 * 6, m=8 * 5, densities=(0.4, 0.4),
                poison=True, seed=3)
    arr = build(p)
    assert any(not np.isfinite(x).all() for x in arr.args.values()
               if x is not None and x.dtype.kind == "f"), "the test poisoned nothing"
    args = arr.args
    out = condnn.sparse_dot(args["a"], args["amask"], args["b"], args["omask"], args["c"], p.bs)
    da, db, dc = condnn.sparse_dot_backward(args["grad_out"], args["a"], args["amask"],
                                            args["b"], args["omask"], p.bs)
    for name, x in (("out", out), ("da", da), ("db", db), ("dc", dc)):
        assert np.isfinite(x).all(), f"{name} holds NaN/inf from an unread entry ({variant})"
    om = expand_mask(arr.omask, p.bs, out.shape)
    am = expand_mask(arr.amask, p.bs, da.shape)
    assert (out[~om] == 0).all() and (da[~am] == 0).all()
    check_forward(p)
    check_backward(p)


@pytest.mark.parametrize("variant", ("ss", "sf"))
def test_nan_in_inactive_block_of_a_reaches_nothing(variant: str) -> None:
    """A single NaN in an inactive block of a, in a column that other rows use actively."""
    bs, n, k, m = 16, 6, 64, 48
    rng = np.random.default_rng(7)
    a = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal((k, m)).astype(np.float32)
    g = rng.standard_normal((n, m)).astype(np.float32)
    amask = np.ones((n, k // bs), dtype=bool)
    amask[2, 1] = False
    poisoned = a.copy()
    poisoned[2, 1 * bs + 5] = np.nan
    omask = np.ones((n, m // bs), dtype=bool) if variant == "ss" else None
    out = condnn.sparse_dot(poisoned, amask, b, omask, None, bs)
    grads = condnn.sparse_dot_backward(g, poisoned, amask, b, omask, bs)
    for name, x in zip(("out", "da", "db", "dc"), (out,) + tuple(grads)):
        assert not np.isnan(x).any(), f"NaN of an inactive block of a reached {name}"
    # And the results are those of the clean a.
    want = reference_sparse_dot(a, amask, b, omask, None, bs)
    scale = reference_sparse_dot(np.abs(a), amask, np.abs(b), omask, None, bs)
    assert_close("out", out, want, scale, k, np.float32, variant)
    want = reference_sparse_dot_backward(g, a, amask, b, omask, bs)
    scale = reference_sparse_dot_backward(np.abs(g), np.abs(a), amask, np.abs(b), omask, bs)
    for name, x, w, s, terms in zip(("da", "db", "dc"), grads, want, scale, (m, n, n)):
        assert_close(name, x, w, s, terms, np.float32, variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bias_added_only_where_output_is_active(variant: str) -> None:
    """With a = 0 the result is exactly c on active outputs and exactly 0 elsewhere."""
    bs, n, k, m = 4, 9, 12, 20
    rng = np.random.default_rng(1)
    a = np.zeros((n, k), np.float32)
    b = rng.standard_normal((k, m)).astype(np.float32)
    c = rng.standard_normal(m).astype(np.float32)
    amask = rng.random((n, k // bs)) < 0.5 if variant in ("ss", "sf") else None
    omask = rng.random((n, m // bs)) < 0.5 if variant in ("ss", "fs") else None
    out = condnn.sparse_dot(a, amask, b, omask, c, bs)
    om = expand_mask(omask, bs, (n, m))
    assert np.array_equal(out, np.where(om, np.broadcast_to(c, (n, m)), 0).astype(np.float32))


@pytest.mark.parametrize("variant", ("ss", "fs"))
def test_nan_in_bias_only_where_output_is_active(variant: str) -> None:
    """NaN in c shows exactly on the active outputs of its column, never on inactive ones."""
    bs, n, k, m = 4, 10, 8, 16
    rng = np.random.default_rng(2)
    a = rng.standard_normal((n, k)).astype(np.float64)
    b = rng.standard_normal((k, m)).astype(np.float64)
    c = rng.standard_normal(m)
    c[5] = np.nan    # column 5 is in output block 1
    amask = rng.random((n, k // bs)) < 0.5 if variant == "ss" else None
    omask = rng.random((n, m // bs)) < 0.5
    omask[0, 1], omask[1, 1] = True, False
    out = condnn.sparse_dot(a, amask, b, omask, c, bs)
    assert np.array_equal(np.isnan(out[:, 5]), omask[:, 1])
    assert np.isnan(out).sum() == omask[:, 1].sum()
    assert (out[~expand_mask(omask, bs, (n, m))] == 0).all()


@pytest.mark.parametrize("out_layout", OUT_LAYOUTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_out_is_overwritten_and_returned(variant: str, out_layout: str) -> None:
    """out is pre-filled with NaN: every entry is written (inactive ones with 0), nothing
    around it is, and the very array is returned."""
    p = Problem(variant, np.float32, 8, n=7, k=24, m=40, densities=(0.5, 0.3), seed=11)
    check_forward(p, out_layout=out_layout)


def test_mask_dtypes_give_identical_results() -> None:
    """bool, int8 and uint8 masks holding the same 0/1 give bitwise the same results."""
    for variant in SPARSE_VARIANTS:
        results = []
        for mask_dtype in MASK_DTYPES:
            p = Problem(variant, np.float32, 8, n=9, k=32, m=24, mask_dtype=mask_dtype, seed=5)
            args = build(p).args
            out = condnn.sparse_dot(args["a"], args["amask"], args["b"], args["omask"],
                                    args["c"], p.bs)
            grads = condnn.sparse_dot_backward(args["grad_out"], args["a"], args["amask"],
                                               args["b"], args["omask"], p.bs)
            results.append((out,) + tuple(grads))
        for other in results[1:]:
            for x, y in zip(results[0], other):
                assert np.array_equal(x, y), f"mask dtype changed the result ({variant})"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n,k,m", [(0, 32, 16), (1, 32, 16), (5, 0, 16), (5, 32, 0), (0, 0, 0)])
def test_empty_and_single_row(variant: str, n: int, k: int, m: int, dtype) -> None:
    """n = 0 or 1, k = 0 or m = 0: right shapes, zero gradients from nothing, bias only."""
    p = Problem(variant, dtype, 8, n, k, m, seed=n + k + m)
    check_forward(p)
    check_forward(p, out_layout="C")
    check_backward(p)


def test_empty_batch_gives_zero_weight_gradients() -> None:
    """With no rows there is nothing to accumulate: db and dc are exactly 0 (not garbage)."""
    for variant in VARIANTS:
        p = Problem(variant, np.float32, 16, n=0, k=64, m=48)
        args = build(p).args
        da, db, dc = condnn.sparse_dot_backward(args["grad_out"], args["a"], args["amask"],
                                                args["b"], args["omask"], 16)
        assert da.shape == (0, 64) and db.shape == (64, 48) and dc.shape == (48,)
        assert not db.any() and not dc.any(), variant


@pytest.mark.parametrize("m", (1, 3, 10, 17, 100))
def test_unmasked_output_of_any_size(m: int) -> None:
    """sf: the output dimension needs no relation to the block size (here bs = 16)."""
    check_forward(Problem("sf", np.float32, 16, n=6, k=64, m=m, seed=m), out_layout="offset")
    check_backward(Problem("sf", np.float32, 16, n=6, k=64, m=m, seed=m))


@pytest.mark.parametrize("k", (1, 3, 10, 17, 100))
def test_unmasked_input_of_any_size(k: int) -> None:
    """fs: the input dimension needs no relation to the block size (here bs = 16)."""
    check_forward(Problem("fs", np.float32, 16, n=6, k=k, m=64, seed=k), out_layout="offset")
    check_backward(Problem("fs", np.float32, 16, n=6, k=k, m=64, seed=k))


@pytest.mark.parametrize("variant", VARIANTS)
def test_read_only_inputs(variant: str) -> None:
    """Read-only a, b, c, masks and grad_out are accepted (nothing is written into them)."""
    names = ("a", "b", "c", "grad_out", "amask", "omask")
    p = Problem(variant, np.float32, 8, n=10, k=32, m=24, layouts={x: "readonly" for x in names})
    check_forward(p)
    check_backward(p)


@pytest.mark.parametrize("variant", VARIANTS)
def test_broadcast_inputs_with_zero_strides(variant: str) -> None:
    """a and b given as broadcasts (row stride 0, read-only): every row of a is the same."""
    bs, n, k, m = 8, 6, 32, 24
    rng = np.random.default_rng(4)
    a_row = rng.standard_normal(k).astype(np.float32)
    b_row = rng.standard_normal(m).astype(np.float32)
    a = np.broadcast_to(a_row, (n, k))
    b = np.broadcast_to(b_row, (k, m))
    amask = rng.random((n, k // bs)) < 0.5 if variant in ("ss", "sf") else None
    omask = rng.random((n, m // bs)) < 0.5 if variant in ("ss", "fs") else None
    g = np.broadcast_to(rng.standard_normal(m).astype(np.float32), (n, m))
    want = reference_sparse_dot(a, amask, b, omask, None, bs)
    scale = reference_sparse_dot(np.abs(a), amask, np.abs(b), omask, None, bs)
    assert_close("out", condnn.sparse_dot(a, amask, b, omask, None, bs), want, scale, k,
                 np.float32, variant)
    grads = condnn.sparse_dot_backward(g, a, amask, b, omask, bs)
    want = reference_sparse_dot_backward(g, a, amask, b, omask, bs)
    scale = reference_sparse_dot_backward(np.abs(g), np.abs(a), amask, np.abs(b), omask, bs)
    for name, x, w, s, terms in zip(("da", "db", "dc"), grads, want, scale, (m, n, n)):
        assert_close(name, x, w, s, terms, np.float32, variant)


def _unaligned(x: np.ndarray) -> np.ndarray:
    """A copy of x whose data starts one byte past an aligned address (numpy's aligned flag off)."""
    raw = np.zeros(x.nbytes + 1, dtype=np.uint8)
    y = raw[1:].view(x.dtype).reshape(x.shape)
    y[...] = x
    assert not y.flags.aligned
    return y


@pytest.mark.parametrize("variant", VARIANTS)
def test_unaligned_inputs(variant: str) -> None:
    """Arrays whose elements are not aligned to their size still give the right result."""
    p = Problem(variant, np.float32, 8, n=5, k=32, m=24, seed=9)
    arr = build(p)
    a, b, c, g = (_unaligned(x) for x in (arr.a, arr.b, arr.c, arr.g))
    want = reference_sparse_dot(arr.a, arr.amask, arr.b, arr.omask, arr.c, p.bs)
    scale = reference_sparse_dot(np.abs(arr.a), arr.amask, np.abs(arr.b), arr.omask,
                                 np.abs(arr.c), p.bs)
    out = _unaligned(np.full((p.n, p.m), np.nan, np.float32))
    got = condnn.sparse_dot(a, arr.amask, b, arr.omask, c, p.bs, out=out)
    assert got is out
    assert_close("out", got, want, scale, p.k, np.float32, variant)
    grads = condnn.sparse_dot_backward(g, a, arr.amask, b, arr.omask, p.bs)
    want = reference_sparse_dot_backward(arr.g, arr.a, arr.amask, arr.b, arr.omask, p.bs)
    scale = reference_sparse_dot_backward(np.abs(arr.g), np.abs(arr.a), arr.amask,
                                          np.abs(arr.b), arr.omask, p.bs)
    for name, x, w, s, terms in zip(("da", "db", "dc"), grads, want, scale, (p.m, p.n, p.n)):
        assert_close(name, x, w, s, terms, np.float32, variant)


def test_variant_names() -> None:
    m = np.ones((1, 1), bool)
    assert [variant_of(m, m), variant_of(m, None), variant_of(None, m),
            variant_of(None, None)] == ["ss", "sf", "fs", "dense"]


# ----------------------------------------------------------------------------------------------
# The tolerance itself is tight enough to catch real errors


def _largest_case() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference, scale and inputs of a float32 ss problem as long (k) as the tests use."""
    p = Problem("ss", np.float32, 16, n=8, k=16 * 32, m=16 * 4, densities=(1.0, 1.0), seed=21)
    arr = build(p)
    want = reference_sparse_dot(arr.a, arr.amask, arr.b, arr.omask, arr.c, p.bs)
    scale = reference_sparse_dot(np.abs(arr.a), arr.amask, np.abs(arr.b), arr.omask,
                                 np.abs(arr.c), p.bs)
    return want, scale, arr


def test_tolerance_accepts_correctly_rounded_float32() -> None:
    want, scale, arr = _largest_case()
    assert tolerance_violation(want.astype(np.float32), want, scale, arr.a.shape[1],
                               np.float32) is None


def test_tolerance_catches_a_missing_term() -> None:
    """Dropping one product term of median size from one output is flagged at k = 512."""
    want, scale, arr = _largest_case()
    terms = arr.a[3].astype(np.float64) * arr.b[:, 7]
    median_term = terms[np.argsort(np.abs(terms))[terms.size // 2]]
    got = want.astype(np.float32)
    got[3, 7] = np.float32(want[3, 7] - median_term)
    assert tolerance_violation(got, want, scale, arr.a.shape[1], np.float32) is not None


def test_tolerance_catches_float32_accuracy_in_float64() -> None:
    """A float64 result rounded through float32 is rejected by the float64 bound."""
    want, scale, arr = _largest_case()
    got = want.astype(np.float32).astype(np.float64)
    assert tolerance_violation(got, want, scale, arr.a.shape[1], np.float64) is not None
