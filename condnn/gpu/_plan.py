"""The work of one GPU call, as data: kernel launches, dense GEMMs and temporaries.

:func:`forward` and :func:`backward` turn the shapes and flags of a call into a :class:`Plan`;
:func:`run` carries a plan out on a :class:`Backend`.  Keeping the decisions (which kernel, what
grid, which argument goes where, which cuBLAS transposes) in plain Python, apart from PyCUDA,
lets the same plans run on a host emulation of the kernels in the tests, on machines without
a GPU; only the thin PyCUDA and cuBLAS layers of :mod:`condnn.gpu._runtime` are left over.

Plans name buffers rather than hold pointers: the call's arrays are ``a``, ``amask``, ``b``,
``omask``, ``c`` and ``out`` (forward) or ``grad_out``, ``a``, ``amask``, ``b``, ``omask``,
``da``, ``db``, ``dc`` (backward); every other name is a temporary the plan lists.  All arrays
are C-contiguous, so a matrix's row pitch is its number of columns.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from condnn._checks import mask_values_message

__all__ = ["Buf", "Launch", "Gemm", "Zero", "RaiseIfFlagged", "Plan", "Backend", "forward",
           "backward", "run", "METHODS"]

METHODS = ("auto", "gemm", "sparse")

# Largest extents the kernels index with 32-bit ints, and CUDA's limit on grid y and z.
_INT32_MAX = 2**31 - 1
_GRID_YZ_MAX = 65535


@dataclass(frozen=True)
class Buf:
    """A device buffer, by name: an array of the call or a temporary of the plan."""

    name: str


Arg = Union[Buf, None, np.number]   # None is a null pointer


@dataclass(frozen=True)
class Launch:
    """A kernel launch; ``args`` match the kernel's parameters in order and in C size."""

    kernel: str
    grid: Tuple[int, int, int]
    block: Tuple[int, int, int]
    args: Tuple[Arg, ...]


@dataclass(frozen=True)
class Gemm:
    """``C = op(A) @ op(B)`` in cuBLAS's column-major terms, with alpha 1 and beta 0."""

    dtype: np.dtype
    transa: bool
    transb: bool
    m: int
    n: int
    k: int
    a: Buf
    lda: int
    b: Buf
    ldb: int
    c: Buf
    ldc: int


@dataclass(frozen=True)
class Zero:
    """Sets the first ``nbytes`` bytes of ``buf`` to 0."""

    buf: Buf
    nbytes: int


@dataclass(frozen=True)
class RaiseIfFlagged:
    """Reads the int32 ``flag`` (waiting for the device) and raises ValueError with the
    message of the first bit set."""

    flag: Buf
    messages: Tuple[Tuple[int, str], ...]


Step = Union[Launch, Gemm, Zero, RaiseIfFlagged]


@dataclass(frozen=True)
class Plan:
    temps: Tuple[Tuple[str, int], ...]   # (name, bytes)
    steps: Tuple[Step, ...]


@dataclass(frozen=True)
class _ForwardTiles:
    suffix: str
    threads: int
    rows: int       # R: output rows per thread block
    cols: int       # TN: output columns per thread block


@dataclass(frozen=True)
class _WeightGradTiles:
    suffix: str
    threads: int
    rows: int       # DM: rows of db per thread block
    cols: int       # TN: columns of db per thread block


# These mirror the instantiations at the end of block_sparse.cu.  Block sizes up to
# _NARROW_MAX use the narrow float32 tiles, which waste less on small blocks.
_NARROW_MAX = 16
_FORWARD_TILES = {
    ("f32", False): _ForwardTiles("f32", 128, 256, 32),
    ("f32", True): _ForwardTiles("f32_narrow", 128, 256, 16),
    ("f64", False): _ForwardTiles("f64", 128, 128, 32),
    ("f64", True): _ForwardTiles("f64", 128, 128, 32),
}
_WEIGHT_GRAD_TILES = {
    ("f32", False): _WeightGradTiles("f32", 128, 64, 32),
    ("f32", True): _WeightGradTiles("f32_narrow", 32, 16, 32),
    ("f64", False): _WeightGradTiles("f64", 128, 64, 32),
    ("f64", True): _WeightGradTiles("f64", 128, 64, 32),
}


def _cdiv(x: int, y: int) -> int:
    return -(-x // y)


def _i32(x: int) -> np.int32:
    if not 0 <= x <= _INT32_MAX:
        raise ValueError(f"a dimension of {x} is beyond what the GPU kernels index (2**31 - 1)")
    return np.int32(x)


def _i64(x: int) -> np.int64:
    return np.int64(x)


def _split_grid(total: int) -> Tuple[int, int]:
    """(y, z) with y * z >= total and both within CUDA's grid limits."""
    y = min(total, _GRID_YZ_MAX)
    z = _cdiv(total, y)
    if z > _GRID_YZ_MAX:
        raise ValueError(f"{total} column tiles are more than one GPU launch can hold")
    return y, z


class _Builder:
    def __init__(self, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        self.suffix = "f32" if self.dtype == np.float32 else "f64"
        self.temps: Dict[str, int] = {}
        self.steps: List[Step] = []

    def plan(self) -> Plan:
        return Plan(tuple(self.temps.items()), tuple(self.steps))

    def temp(self, name: str, nbytes: int) -> Buf:
        assert name not in self.temps, name
        self.temps[name] = max(int(nbytes), 4)
        return Buf(name)

    def launch(self, kernel: str, grid, block, *args: Arg) -> None:
        self.steps.append(Launch(kernel, tuple(int(g) for g in grid),
                                 tuple(int(b) for b in block), tuple(args)))

    # -- steps --------------------------------------------------------------------------

    def check_mask_values(self, masks: Sequence[Tuple[str, int]]) -> None:
        """Flags masks holding values other than 0 and 1, then raises for the first one."""
        masks = [(name, size) for name, size in masks if size > 0]
        if not masks:
            return
        flag = self.temp("mask_flag", 4)
        self.steps.append(Zero(flag, 4))
        messages = []
        for bit, (name, size) in zip((1, 2), masks):
            self.launch("check_mask_values", (min(_cdiv(size, 256), 1024), 1, 1), (256, 1, 1),
                        Buf(name), _i64(size), flag, np.int32(bit))
            messages.append((bit, mask_values_message(name)))
        self.steps.append(RaiseIfFlagged(flag, tuple(messages)))

    def mask_index(self, mask: str, n: int, nb: int, rows: bool,
                   bits: bool) -> Tuple[Optional[Buf], Optional[Buf], Optional[Buf]]:
        """Device-built lists of the rows where each mask column is on, and bitsets of them."""
        nwords = _cdiv(n, 32)
        rows_buf = self.temp(f"{mask}_rows", 4 * n * nb) if rows else None
        counts_buf = self.temp(f"{mask}_counts", 4 * nb) if rows else None
        bits_buf = self.temp(f"{mask}_bits", 4 * nwords * nb) if bits else None
        if n and nb:
            self.launch("mask_index", (nb, 1, 1), (256, 1, 1), Buf(mask), _i32(n), _i32(nb),
                        rows_buf, counts_buf, bits_buf, _i32(nwords))
        return rows_buf, counts_buf, bits_buf

    def ss_forward(self, a: Buf, lda: int, amask: Optional[Buf], b: Buf, ldb: int,
                   rows: Optional[Buf], counts: Optional[Buf], c: Optional[Buf], o: Buf,
                   ldo: int, n: int, k: int, m: int, bs: int, trans_b: bool) -> None:
        """Active outputs of ``(a * Am) @ op(b) + c`` (op = transpose if trans_b), for the
        rows each output block lists (all rows if ``rows`` is None)."""
        tiles = _FORWARD_TILES[self.suffix, bs <= _NARROW_MAX]
        kb, mb = _cdiv(k, bs), _cdiv(m, bs)
        col_tiles = _cdiv(bs, tiles.cols)
        total = mb * col_tiles
        if n == 0 or total == 0:
            return
        gy, gz = _split_grid(total)
        kernel = f"ss_forward{'_bt' if trans_b else ''}_{tiles.suffix}"
        self.launch(kernel, (_cdiv(n, tiles.rows), gy, gz), (tiles.threads, 1, 1),
                    a, _i64(lda), amask, b, _i64(ldb), rows, counts, c, o, _i64(ldo),
                    _i32(n), _i32(k), _i32(m), _i32(kb), _i32(mb), _i32(bs), _i32(col_tiles))

    def weight_grad(self, a: Buf, g: Buf, abits: Optional[Buf], obits: Optional[Buf], db: Buf,
                    n: int, k: int, m: int, bs: int) -> None:
        """db = (a masked by Am).T @ (g masked by Om), every entry written."""
        if k == 0 or m == 0:
            return
        tiles = _WEIGHT_GRAD_TILES[self.suffix, bs <= _NARROW_MAX]
        kb, mb = _cdiv(k, bs), _cdiv(m, bs)
        row_tiles, col_tiles = _cdiv(bs, tiles.rows), _cdiv(bs, tiles.cols)
        gy, gz = _split_grid(mb * col_tiles)
        self.launch(f"ss_weight_grad_{tiles.suffix}", (kb * row_tiles, gy, gz),
                    (tiles.threads, 1, 1), a, _i64(k), g, _i64(m), abits, obits, db, _i64(m),
                    _i32(n), _i32(k), _i32(m), _i32(mb), _i32(bs), _i32(row_tiles),
                    _i32(col_tiles))

    def colsum(self, g: Buf, mask: Optional[Buf], n: int, m: int, bs: int, out: Buf) -> None:
        """out = column sums of g masked by the block mask, in a fixed order."""
        if m == 0:
            return
        rows_per_seg = max(64, _cdiv(n, _GRID_YZ_MAX))
        nseg = _cdiv(n, rows_per_seg)
        nb = m // bs if mask is not None else 0
        partial = None
        if nseg:
            partial = self.temp("colsum_partial", nseg * m * self.itemsize)
            self.launch(f"colsum_partial_{self.suffix}", (_cdiv(m, 32), nseg, 1), (32, 8, 1),
                        g, _i64(m), mask, _i32(nb), _i32(n), _i32(m), _i32(bs),
                        _i32(rows_per_seg), partial)
        self.launch(f"colsum_final_{self.suffix}", (_cdiv(m, 256), 1, 1), (256, 1, 1),
                    partial, _i32(nseg), _i32(m), out)

    def _elementwise(self, kernel: str, rows: int, cols: int, *args: Arg) -> None:
        if rows and cols:
            self.launch(f"{kernel}_{self.suffix}", (_cdiv(cols, 256), min(rows, _GRID_YZ_MAX), 1),
                        (256, 1, 1), *args)

    def masked_copy(self, dst: Buf, src: Buf, mask: Buf, rows: int, cols: int, bs: int) -> None:
        self._elementwise("masked_copy", rows, cols, dst, _i64(cols), src, _i64(cols), mask,
                          _i32(cols // bs), _i32(rows), _i32(cols), _i32(bs))

    def mask_epilogue(self, o: Buf, mask: Optional[Buf], c: Optional[Buf], rows: int, cols: int,
                      bs: int) -> None:
        nb = cols // bs if mask is not None else 0
        self._elementwise("mask_epilogue", rows, cols, o, _i64(cols), mask, _i32(nb), c,
                          _i32(rows), _i32(cols), _i32(bs))

    def zero_inactive(self, o: Buf, mask: Buf, rows: int, cols: int, bs: int) -> None:
        self._elementwise("zero_inactive", rows, cols, o, _i64(cols), mask, _i32(cols // bs),
                          _i32(rows), _i32(cols), _i32(bs))

    def gemm(self, c: Buf, a: Buf, b: Buf, rows: int, cols: int, inner: int, lda: int, ldb: int,
             ldc: int, trans_a: bool = False, trans_b: bool = False) -> None:
        """Row-major ``C (rows, cols) = op(A) @ op(B)``.

        A row-major matrix is the column-major matrix of its transpose, so this is the
        column-major ``C.T = op(B).T @ op(A).T``: cuBLAS gets B first, and each operand's
        transpose flag is that of the row-major product.
        """
        if rows == 0 or cols == 0:
            return
        if inner == 0:
            self.steps.append(Zero(c, rows * cols * self.itemsize))
            return
        self.steps.append(Gemm(self.dtype, transa=trans_b, transb=trans_a, m=cols, n=rows,
                               k=inner, a=b, lda=max(ldb, 1), b=a, ldb=max(lda, 1), c=c,
                               ldc=max(ldc, 1)))


def _kernel_method(method: str, has_amask: bool, has_omask: bool) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, "
                         f"got {method!r}")
    if method == "auto":
        # The block-sparse kernels for ss; cuBLAS where one side is dense, as the seed
        # measured on GPUs of its time.  benchmarks/sparse_dot_gpu.py measures both.
        return "sparse" if has_amask and has_omask else "gemm"
    return method


def _value_checks(n: int, k: int, m: int, bs: int, has_amask: bool,
                  has_omask: bool) -> List[Tuple[str, int]]:
    masks = []
    if has_amask:
        masks.append(("amask", n * (k // bs)))
    if has_omask:
        masks.append(("omask", n * (m // bs)))
    return masks


@lru_cache(maxsize=256)
def forward(n: int, k: int, m: int, bs: int, dtype: np.dtype, has_amask: bool, has_omask: bool,
            has_c: bool, method: str = "auto", check_masks: bool = True) -> Plan:
    """The plan of ``out = (dot(a * Am, b) + c) * Om``; arguments as validated by _checks."""
    kernel_method = _kernel_method(method, has_amask, has_omask)
    bld = _Builder(dtype)
    if check_masks:
        bld.check_mask_values(_value_checks(n, k, m, bs, has_amask, has_omask))
    if n == 0 or m == 0:
        return bld.plan()
    a, b, out = Buf("a"), Buf("b"), Buf("out")
    amask = Buf("amask") if has_amask else None
    omask = Buf("omask") if has_omask else None
    c = Buf("c") if has_c else None

    if kernel_method == "sparse":
        rows = counts = None
        if has_omask:
            rows, counts, _ = bld.mask_index("omask", n, m // bs, rows=True, bits=False)
            bld.zero_inactive(out, omask, n, m, bs)
        bld.ss_forward(a, k, amask, b, m, rows, counts, c, out, m, n, k, m, bs, trans_b=False)
    else:
        if has_amask:
            # The kernel must not assume a is already 0 in its inactive blocks.
            a = bld.temp("a_masked", n * k * bld.itemsize)
            bld.masked_copy(a, Buf("a"), amask, n, k, bs)
        bld.gemm(out, a, b, n, m, k, lda=k, ldb=m, ldc=m)
        if has_omask or has_c:
            bld.mask_epilogue(out, omask, c, n, m, bs)
    return bld.plan()


@lru_cache(maxsize=256)
def backward(n: int, k: int, m: int, bs: int, dtype: np.dtype, has_amask: bool,
             has_omask: bool, method: str = "auto", check_masks: bool = True) -> Plan:
    """The plan of ``(da, db, dc)``; with G = grad_out masked by Om:
    da = (G @ b.T) masked by Am, db = (a masked by Am).T @ G, dc = column sums of G."""
    kernel_method = _kernel_method(method, has_amask, has_omask)
    bld = _Builder(dtype)
    if check_masks:
        bld.check_mask_values(_value_checks(n, k, m, bs, has_amask, has_omask))
    g, a, b = Buf("grad_out"), Buf("a"), Buf("b")
    da, db, dc = Buf("da"), Buf("db"), Buf("dc")
    amask = Buf("amask") if has_amask else None
    omask = Buf("omask") if has_omask else None

    if kernel_method == "sparse":
        arows = acounts = abits = obits = None
        if has_amask:
            arows, acounts, abits = bld.mask_index("amask", n, k // bs, rows=True, bits=True)
        if has_omask:
            _, _, obits = bld.mask_index("omask", n, m // bs, rows=False, bits=True)
        # da is the ss product G @ b.T with input mask Om and output mask Am.
        if n and k and has_amask:
            bld.zero_inactive(da, amask, n, k, bs)
        bld.ss_forward(g, m, omask, b, m, arows, acounts, None, da, k, n, m, k, bs, trans_b=True)
        bld.weight_grad(a, g, abits, obits, db, n, k, m, bs)
    else:
        gm = g
        if has_omask:
            gm = bld.temp("g_masked", n * m * bld.itemsize)
            bld.masked_copy(gm, g, omask, n, m, bs)
        bld.gemm(da, gm, b, n, k, m, lda=m, ldb=m, ldc=k, trans_b=True)
        if has_amask:
            bld.zero_inactive(da, amask, n, k, bs)
        am = a
        if has_amask:
            am = bld.temp("a_masked", n * k * bld.itemsize)
            bld.masked_copy(am, a, amask, n, k, bs)
        bld.gemm(db, am, gm, k, m, n, lda=k, ldb=m, ldc=m, trans_a=True)
    bld.colsum(g, omask, n, m, bs, dc)
    return bld.plan()


class Backend(Protocol):
    """Where a plan runs: the PyCUDA runtime, or the host emulation in the tests."""

    def allocate(self, nbytes: int) -> Tuple[int, object]:
        """A temporary of nbytes: its device address and an object keeping it alive."""

    def launch(self, kernel: str, grid: Tuple[int, int, int], block: Tuple[int, int, int],
               args: Sequence[np.number]) -> None:
        """Launches ``kernel``; pointers arrive as ``numpy.uintp``."""

    def gemm(self, step: Gemm, a: int, b: int, c: int) -> None:
        """Runs ``step`` on the given device addresses."""

    def zero(self, ptr: int, nbytes: int) -> None:
        """Sets nbytes at ptr to 0."""

    def read_int32(self, ptr: int) -> int:
        """The int32 at ptr, once all work queued before has finished."""


def run(plan: Plan, pointers: Dict[str, int], backend: Backend) -> None:
    """Carries out ``plan`` with the call's arrays at ``pointers`` (name -> device address).

    Temporaries live until every step is queued; device work is ordered on one stream, so a
    temporary handed back to a memory pool afterwards is reused only by later work.
    """
    addresses = dict(pointers)
    keep_alive = []
    for name, nbytes in plan.temps:
        addresses[name], handle = backend.allocate(nbytes)
        keep_alive.append(handle)

    def address(arg: Arg) -> np.number:
        if arg is None:
            return np.uintp(0)
        if isinstance(arg, Buf):
            return np.uintp(addresses[arg.name])
        return arg

    for step in plan.steps:
        if isinstance(step, Launch):
            backend.launch(step.kernel, step.grid, step.block, [address(x) for x in step.args])
        elif isinstance(step, Gemm):
            backend.gemm(step, addresses[step.a.name], addresses[step.b.name],
                         addresses[step.c.name])
        elif isinstance(step, Zero):
            backend.zero(addresses[step.buf.name], step.nbytes)
        elif isinstance(step, RaiseIfFlagged):
            value = backend.read_int32(addresses[step.flag.name])
            for bit, message in step.messages:
                if value & bit:
                    raise ValueError(message)
        else:  # pragma: no cover - the plan builders make only the steps above
            raise TypeError(f"unknown plan step {step!r}")
    del keep_alive
