"""Shared pieces of condnn's benchmark scripts: problems, flop counts, timing, output files.

Only NumPy is needed here (not condnn), so that the dense baselines can run in processes that
never load condnn's kernels or their OpenMP runtime.
"""
import csv
import io
import math
import os
import platform
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

VARIANTS = ("ss", "sf", "fs")
# "fwd-blocks": the forward pass with the weights stored block by block (condnn.BlockWeights,
# built once, outside the timing), against the same dense forward baseline.
PASSES = ("fwd", "bwd", "fwd-blocks")


@dataclass(frozen=True)
class Point:
    """One measurement: a kernel variant and pass on one problem size, at a thread count."""
    variant: str      # "ss", "sf" or "fs"
    pass_: str        # "fwd", "bwd" or "fwd-blocks"
    n: int
    k: int
    m: int
    bs: int
    density: float
    threads: int
    dtype: str        # "float32" or "float64"

    @property
    def problem_key(self) -> Tuple[int, int, int, int, float, str]:
        """What determines the arrays: points with the same key share them."""
        return (self.n, self.k, self.m, self.bs, self.density, self.dtype)

    @property
    def dense_key(self) -> Tuple[str, str, int, int, int, int, str]:
        """What determines the dense baseline's time: not the block size or the density,
        since the dense computation does the same work whatever the masks hold."""
        return (self.variant, self.dense_pass, self.n, self.k, self.m, self.threads,
                self.dtype)

    @property
    def dense_pass(self) -> str:
        """The pass of the dense baseline: the forward one for "fwd-blocks"."""
        return "bwd" if self.pass_ == "bwd" else "fwd"


@dataclass
class Problem:
    """The arrays of one problem; masks are (n, blocks) uint8 of 0/1."""
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    grad_out: np.ndarray
    amask: np.ndarray
    omask: np.ndarray


def make_problem(n: int, k: int, m: int, bs: int, density: float, dtype: str) -> Problem:
    """Random data with independent Bernoulli(density) masks per example and block.

    The seed depends only on the arguments, so every process builds the same problem.
    Masks are only built for the dimensions bs divides (the others cannot be masked).
    """
    # Not hash(): it is salted per process for strings.
    seed = zlib.crc32(repr((n, k, m, bs, round(density, 6), dtype)).encode())
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    a = rng.standard_normal((n, k), dtype=dt)
    b = rng.standard_normal((k, m), dtype=dt)
    b *= 1.0 / math.sqrt(max(k, 1))     # keeps outputs O(1): no overflow, no denormals
    c = rng.standard_normal(m, dtype=dt)
    grad_out = rng.standard_normal((n, m), dtype=dt)
    amask = (rng.random((n, k // bs)) < density).astype(np.uint8) if k % bs == 0 else None
    omask = (rng.random((n, m // bs)) < density).astype(np.uint8) if m % bs == 0 else None
    return Problem(a, b, c, grad_out, amask, omask)


def useful_flops(variant: str, pass_: str, amask: Optional[np.ndarray],
                 omask: Optional[np.ndarray], n: int, k: int, m: int, bs: int) -> float:
    """2 x the multiply-adds of the active blocks, counted from the masks actually used.

    Row i of the forward pass multiplies its active input columns (all k when the input is
    not masked) by its active output columns (all m when the output is not masked).  The
    backward pass does that product twice, once for da and once for db; the column sums of
    dc are not counted.
    """
    active_in = (amask.sum(axis=1, dtype=np.int64) * bs if variant in ("ss", "sf")
                 else np.full(n, k, dtype=np.int64))
    active_out = (omask.sum(axis=1, dtype=np.int64) * bs if variant in ("ss", "fs")
                  else np.full(n, m, dtype=np.int64))
    macs = float(np.dot(active_in.astype(np.float64), active_out.astype(np.float64)))
    return 2.0 * macs * (2 if pass_ == "bwd" else 1)


@dataclass
class Timing:
    """Median seconds per call, over ``samples`` samples of ``inner`` calls each."""
    seconds: float
    samples: int
    inner: int

    @property
    def calls(self) -> int:
        return self.samples * self.inner


def time_call(fn: Callable[[], object], min_time: float = 0.2, min_samples: int = 3,
              max_samples: int = 50, max_time: float = 10.0,
              min_sample_time: float = 1e-3) -> Timing:
    """Times ``fn`` adaptively: the median over samples, each sample averaging enough calls
    to last ``min_sample_time`` (so the timer's resolution does not matter for microsecond
    calls), with as many samples as fit in ``min_time`` (at least ``min_samples``, at most
    ``max_samples``) - except that slow calls get fewer samples, down to 1, so that a point
    takes about ``max_time`` at most."""
    start = time.perf_counter()
    fn()    # warm-up: page faults, thread start-up, caches; also the first estimate
    first = time.perf_counter() - start
    inner = 1 if first >= min_sample_time else \
        int(min(10_000, math.ceil(min_sample_time / max(first, 1e-7))))
    # A better estimate for fast calls, whose first run is dominated by the warm-up.
    if inner > 1:
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        first = (time.perf_counter() - start) / inner
        inner = int(min(10_000, math.ceil(min_sample_time / max(first, 1e-9))))
    sample = first * inner
    samples = int(min(max_samples, max(min_samples, math.ceil(min_time / sample))))
    if samples * sample > max_time:
        samples = max(1, int(max_time // sample))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return Timing(float(np.median(times)), samples, inner)


def blas_info() -> Dict[str, str]:
    """The BLAS NumPy uses in this process: library, version and core type (threadpoolctl)."""
    from threadpoolctl import threadpool_info
    for entry in threadpool_info():
        if entry.get("user_api") == "blas":
            return {"library": str(entry.get("internal_api", "?")),
                    "version": str(entry.get("version", "?")),
                    "core": str(entry.get("architecture", "?"))}
    return {"library": "none found", "version": "?", "core": "?"}


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def atomic_write(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see the old file or the new one, never a
    half-written one: a temporary file in the same directory, then a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def csv_text(columns: Sequence[str], rows: Sequence[Dict[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row[c] for c in columns})
    return out.getvalue()


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def text_table(columns: Sequence[str], rows: Sequence[Dict[str, object]],
               min_width: int = 0) -> List[str]:
    """Lines of a fixed-width table (header first), for the terminal.  With ``min_width``
    wide enough for the values, tables printed a row at a time line up."""
    cells = [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max([len(c), min_width] + [len(row[i]) for row in cells])
              for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return lines


def markdown_table(columns: Sequence[str], rows: Sequence[Dict[str, object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
