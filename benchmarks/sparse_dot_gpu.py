"""Benchmark of condnn.gpu's block-sparse product against cuBLAS dense GEMM on the same inputs.

Usage::

    python benchmarks/sparse_dot_gpu.py              # the full grid
    python benchmarks/sparse_dot_gpu.py --quick      # a small grid, seconds
    python benchmarks/sparse_dot_gpu.py --n 4096 --k 8192 --bs 64 --density 0.25 0.1 \\
        --variants ss                                # a subset
    python benchmarks/sparse_dot.py --gpu [options]  # the same, from the CPU benchmark

The full grid is n in {256, 4096}, k = m in {4096, 8192}, block size in {32, 64, 128},
density in {0.5, 0.25, 0.1} (the same for both masks, independent Bernoulli per example and
block), forward for ss, sf and fs, backward for ss, float32 (``--dtype float64`` for double).

What is timed
-------------
Device time between two CUDA events around a run of calls on the default stream, after two
warm-up calls (the first compiles the kernels); each sample runs enough calls to last
``--min-sample-ms``, the reported time is the median of ``--samples`` samples, per call.

* condnn: ``condnn.gpu.sparse_dot(a, amask, b, omask, c, bs, out=out, method=...)`` and
  ``condnn.gpu.sparse_dot_backward(grad_out, a, amask, b, omask, bs, method=...)`` (the
  latter allocates its results, as the API does, from condnn.gpu's memory pool).  Mask
  values are not re-checked (``check_masks=False``, unless ``--check-masks``): the check
  reads a flag back from the device, a host round trip per call that a training loop passing
  masks it built itself would turn off.  sf and fs run with both methods: ``gemm`` (cuBLAS
  plus masking kernels, the default) and ``sparse`` (the block-sparse kernel), to show which
  should be the default.
* dense: cuBLAS's GEMM on the same arrays, with nothing else: ``a @ b`` forward, ``g @ b.T``
  and ``a.T @ g`` backward (no masks, no bias, no column sums), in float32 arithmetic
  (CUBLAS_DEFAULT_MATH, not TF32: the precision the sparse kernels compute in).  It does the
  same work whatever the masks hold, so it is measured once per (pass, n, k, m).

Useful GFLOP/s counts 2 x the multiply-adds of the active blocks only (backward: da and db;
dc not counted).  ``speedup`` is dense time / condnn time (below 1: condnn slower).
``max_err`` is the largest difference between condnn's result and the cuBLAS path's
(``method="gemm"``, computed once per point) over the largest magnitude of the latter: it
shows the timed kernels computed the right thing.

Output: a table on stdout, and ``<name>.csv`` and ``<name>.md`` in ``--out-dir`` (default
``benchmarks/results``), rewritten after every point so an interrupted run keeps what it
measured.  The default name is ``sparse_dot_gpu`` (``_quick`` for --quick, ``_float64`` for
double precision).
"""
import argparse
import math
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import benchlib  # noqa: E402

DEFAULT_RESULTS = os.path.join(HERE, "results")
FULL = {"n": [256, 4096], "k": [4096, 8192], "bs": [32, 64, 128], "density": [0.5, 0.25, 0.1]}
QUICK = {"n": [256], "k": [1024], "bs": [64], "density": [0.25, 0.1]}
COLUMNS = ["n", "k", "m", "bs", "density", "variant", "pass", "method", "ms", "dense_ms",
           "speedup", "useful_gflops", "dense_gflops", "max_err"]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small grid that runs in seconds")
    p.add_argument("--n", type=int, nargs="+", help="batch sizes")
    p.add_argument("--k", type=int, nargs="+", help="input widths (and m, unless --m)")
    p.add_argument("--m", type=int, nargs="+", help="output widths (default: m = k)")
    p.add_argument("--bs", type=int, nargs="+", help="block sizes")
    p.add_argument("--density", type=float, nargs="+", help="fractions of blocks on")
    p.add_argument("--variants", nargs="+", choices=("ss", "sf", "fs"),
                   default=["ss", "sf", "fs"])
    p.add_argument("--backward", nargs="*", choices=("ss", "sf", "fs"), default=["ss"],
                   help="variants whose backward pass is timed too (default: ss)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--samples", type=int, default=5, help="timed samples per point")
    p.add_argument("--min-sample-ms", type=float, default=20.0,
                   help="each sample repeats the call until it lasts this long")
    p.add_argument("--check-masks", action="store_true",
                   help="time with the device-side mask value check on")
    p.add_argument("--out-dir", default=DEFAULT_RESULTS, help="where the CSV and markdown go")
    p.add_argument("--name", help="base name of the output files")
    return p.parse_args(argv)


def _grid(args: argparse.Namespace, key: str) -> List:
    given = getattr(args, key)
    return list(given) if given else (QUICK if args.quick else FULL)[key]


def default_name(args: argparse.Namespace) -> str:
    name = "sparse_dot_gpu" + ("_quick" if args.quick else "")
    return name + ("_float64" if args.dtype == "float64" else "")


class Timer:
    """Median device milliseconds per call of ``fn``, from CUDA events."""

    def __init__(self, drv, samples: int, min_sample_ms: float):
        self.drv, self.samples, self.min_sample_ms = drv, samples, min_sample_ms

    def __call__(self, fn) -> float:
        drv = self.drv
        start, end = drv.Event(), drv.Event()
        for _ in range(2):
            fn()
        start.record()
        fn()
        end.record()
        end.synchronize()
        once = max(start.time_till(end), 1e-3)
        reps = max(1, min(1000, math.ceil(self.min_sample_ms / once)))
        times = []
        for _ in range(self.samples):
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            times.append(start.time_till(end) / reps)
        return float(np.median(times))


def _masks(rng, n: int, k: int, m: int, bs: int, density: float):
    amask = (rng.random((n, k // bs)) < density).astype(np.uint8) if k % bs == 0 else None
    omask = (rng.random((n, m // bs)) < density).astype(np.uint8) if m % bs == 0 else None
    return amask, omask


def _relative_error(x: np.ndarray, ref: np.ndarray) -> float:
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return float(np.max(np.abs(x.astype(np.float64) - ref))) / max(scale, 1e-30) \
        if ref.size else 0.0


def setup_lines(drv, rt, dtype: str, check_masks: bool) -> Dict[str, str]:
    dev = drv.Context.get_device()
    major, minor = dev.compute_capability()
    driver = drv.get_driver_version()
    return {
        "device": f"{dev.name()} (compute capability {major}.{minor}, "
                  f"{dev.total_memory() // 2**20} MiB)",
        "CUDA driver": f"{driver // 1000}.{driver % 1000 // 10}",
        "cuBLAS": f"{rt.cublas.version()} ({rt.cublas.path})",
        "dtype": dtype,
        "mask value check": "on" if check_masks else "off",
    }


def write_results(rows: List[Dict[str, object]], setup: Dict[str, str], out_dir: str,
                  name: str) -> None:
    csv_path = os.path.join(out_dir, name + ".csv")
    md_path = os.path.join(out_dir, name + ".md")
    benchlib.atomic_write(csv_path, benchlib.csv_text(COLUMNS, rows))
    md = ["# condnn.gpu block-sparse product vs cuBLAS dense GEMM", ""]
    md += [f"- {key}: {value}" for key, value in setup.items()]
    md += ["", "Times are medians of CUDA-event samples, in ms per call; `speedup` is "
           "dense_ms / ms (below 1: condnn slower); `useful_gflops` counts the active blocks' "
           "multiply-adds only; `max_err` is the difference from the cuBLAS path relative to "
           "its largest magnitude.", "", benchlib.markdown_table(COLUMNS, rows)]
    benchlib.atomic_write(md_path, "\n".join(md))


class Bench:
    """Measures the grid's points for one problem shape at a time and collects the rows."""

    def __init__(self, args: argparse.Namespace):
        import pycuda.driver as drv

        import condnn.gpu
        from condnn.gpu._runtime import runtime

        self.args = args
        self.gpu = condnn.gpu
        self.rt = runtime()
        self.dt = np.dtype(args.dtype)
        self.timer = Timer(drv, args.samples, args.min_sample_ms)
        self.setup = setup_lines(drv, self.rt, args.dtype, args.check_masks)
        self.name = args.name or default_name(args)
        self.rows: List[Dict[str, object]] = []

    def dense_gemm(self, c, a, b, rows: int, cols: int, inner: int, trans_a: bool = False,
                   trans_b: bool = False):
        """A call running one cuBLAS GEMM on GPUArrays: row-major C = op(A) @ op(B)."""
        from condnn.gpu import _plan

        bld = _plan._Builder(self.dt)
        bld.gemm(_plan.Buf("c"), _plan.Buf("a"), _plan.Buf("b"), rows, cols, inner,
                 lda=a.shape[1], ldb=b.shape[1], ldc=cols, trans_a=trans_a, trans_b=trans_b)
        plan = bld.plan()
        return lambda: self.rt.run(plan, {"a": a, "b": b, "c": c})

    def shape(self, n: int, k: int, m: int) -> None:
        import pycuda.gpuarray as ga

        dt = self.dt
        rng = np.random.default_rng([n, k, m])
        a = ga.to_gpu(rng.standard_normal((n, k), dtype=np.float32).astype(dt))
        b = ga.to_gpu((rng.standard_normal((k, m), dtype=np.float32) / math.sqrt(k)).astype(dt))
        g = ga.to_gpu(rng.standard_normal((n, m), dtype=np.float32).astype(dt))
        c = ga.to_gpu(rng.standard_normal(m, dtype=np.float32).astype(dt))
        out, da, db = ga.empty((n, m), dt), ga.empty((n, k), dt), ga.empty((k, m), dt)
        dense_fwd = self.dense_gemm(out, a, b, n, m, k)
        dense_da = self.dense_gemm(da, g, b, n, k, m, trans_b=True)
        dense_db = self.dense_gemm(db, a, g, k, m, n, trans_a=True)
        dense = {"fwd": self.timer(dense_fwd),
                 "bwd": self.timer(lambda: (dense_da(), dense_db()))}
        for bs in _grid(self.args, "bs"):
            for density in _grid(self.args, "density"):
                seed = [n, k, m, bs, int(round(density * 1000))]
                am_h, om_h = _masks(np.random.default_rng(seed), n, k, m, bs, density)
                masks = (None if am_h is None else ga.to_gpu(am_h),
                         None if om_h is None else ga.to_gpu(om_h))
                for variant in self.args.variants:
                    amask = masks[0] if variant in ("ss", "sf") else None
                    omask = masks[1] if variant in ("ss", "fs") else None
                    if (variant in ("ss", "sf") and amask is None) or \
                            (variant in ("ss", "fs") and omask is None):
                        continue                # bs does not divide the masked dimension
                    passes = ["fwd"] + (["bwd"] if variant in self.args.backward else [])
                    for pass_ in passes:
                        self.point(variant, pass_, (a, amask, b, omask, c, g, out), bs,
                                   density, dense[pass_], (am_h, om_h))

    def point(self, variant: str, pass_: str, arrays, bs: int, density: float,
              dense_ms: float, host_masks) -> None:
        a, amask, b, omask, c, g, out = arrays
        n, k = a.shape
        m = b.shape[1]
        gpu, check = self.gpu, self.args.check_masks

        def call(method: str):
            if pass_ == "fwd":
                return gpu.sparse_dot(a, amask, b, omask, c, bs, out=out, method=method,
                                      check_masks=check)
            return gpu.sparse_dot_backward(g, a, amask, b, omask, bs, method=method,
                                           check_masks=check)

        def fetch(result) -> List[np.ndarray]:
            return [result.get()] if pass_ == "fwd" else [x.get() for x in result]

        reference = fetch(call("gemm"))
        flops = benchlib.useful_flops(variant, pass_, host_masks[0], host_masks[1], n, k, m, bs)
        dense_flops = 2.0 * n * k * m * (2 if pass_ == "bwd" else 1)
        for method in (["sparse"] if variant == "ss" else ["gemm", "sparse"]):
            err = max(_relative_error(x, r) for x, r in zip(fetch(call(method)), reference))
            ms = self.timer(lambda method=method: call(method))
            row = {"n": n, "k": k, "m": m, "bs": bs, "density": density, "variant": variant,
                   "pass": pass_, "method": method, "ms": ms, "dense_ms": dense_ms,
                   "speedup": dense_ms / ms, "useful_gflops": flops / ms / 1e6,
                   "dense_gflops": dense_flops / dense_ms / 1e6, "max_err": err}
            self.rows.append(row)
            lines = benchlib.text_table(COLUMNS, [row], min_width=8)
            if len(self.rows) == 1:
                print(lines[0], flush=True)
            print(lines[1], flush=True)
            write_results(self.rows, self.setup, self.args.out_dir, self.name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    import condnn.gpu
    if not condnn.gpu.available():
        print(f"error: condnn.gpu is not available: {condnn.gpu.unavailable_reason()}",
              file=sys.stderr)
        return 2
    bench = Bench(args)
    for key, value in bench.setup.items():
        print(f"{key}: {value}", file=sys.stderr)
    for n in _grid(args, "n"):
        for k in _grid(args, "k"):
            for m in (_grid(args, "m") if args.m else [k]):
                bench.shape(n, k, m)
    if not bench.rows:
        print("error: the options select no point", file=sys.stderr)
        return 2
    print()
    print("\n".join(benchlib.text_table(COLUMNS, bench.rows)))
    print(f"\nwrote {os.path.join(args.out_dir, bench.name)}.csv and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
