"""Benchmark of condnn's block-sparse product against the fastest dense NumPy equivalent.

Usage::

    python benchmarks/sparse_dot.py --quick          # a tiny grid, a few seconds
    python benchmarks/sparse_dot.py                  # the full grid (long; takes every core)
    python benchmarks/sparse_dot.py --n 1024 --k 4096 --bs 64 --density 0.25 0.1 \\
        --variants ss --threads 1                    # a subset
    python benchmarks/sparse_dot.py --gpu [options]  # the GPU benchmark (sparse_dot_gpu.py)

The full grid is n in {1, 64, 256, 1024}, k = m in {1024, 4096}, block size in
{16, 32, 64, 128}, density in {0.5, 0.25, 0.1} (the same for both masks, independent
Bernoulli per example and block), variants ss, sf and fs, forward and backward, 1 and 2 threads,
float32 (``--dtype float64`` for double).

What is timed
-------------
condnn: ``condnn.sparse_dot(a, amask, b, omask, c, bs, out=out)`` with ``out`` allocated once,
and ``condnn.sparse_dot_backward(grad_out, a, amask, b, omask, bs)``, which allocates its three
results as the API does.  Argument validation is included: it is what a caller pays.  The pass
``fwd-blocks`` (``--passes fwd-blocks``, not in the default grid) is the forward product with
b given as ``condnn.BlockWeights(b, bs)``, built once outside the timing, as a frozen model
stores its weights; its baseline is the same dense forward product.

The dense baseline computes the same result from the same inputs in the fastest way NumPy
offers, and is given every advantage:

* forward: ``np.multiply(a, Am, out=ab); np.matmul(ab, b, out=o); o += c; o *= Om``, with only
  the masks the variant has (sf: no ``Om``; fs: no ``Am``, ``a`` used directly);
* backward: ``G = dO * Om; da = (G @ b.T) * Am; db = (a * Am).T @ G; dc = G.sum(0)``, again
  with only the variant's masks;
* the element masks ``Am``, ``Om`` are expanded from the block masks once, outside the timing,
  as 0/1 arrays of the dtype (a dense implementation would have to expand them on every call);
  every buffer is preallocated and passed as ``out=``, so no allocation is timed;
* multiplying by 0 lets NaN of inactive entries through, which condnn does not; that does
  not change the time;
* the BLAS gets as many threads as condnn (threadpoolctl);
* it runs in two subprocesses, one with the environment as is and one without
  ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (so OpenBLAS picks its kernels for the CPU it
  detects instead of the ones the environment forces); the faster of the two is the baseline.
  Both times are reported, with the OpenBLAS core type each process ran (threadpoolctl).

The dense computation does the same work whatever the masks hold, so its time does not depend
on the block size or the density: it is measured once per (variant, pass, n, k, m, threads,
dtype) and shared by the points that differ only in block size or density.

Times are medians over several samples (see ``benchlib.time_call``): each sample lasts at least
1 ms, a point gets at least ``--min-time`` seconds of samples (3 at least, 50 at most), and slow
points get fewer samples, down to one, to stay near ``--max-time``.

Useful GFLOP/s counts 2 x the multiply-adds of the active blocks only, from the masks actually
used (backward: the da and db products; dc is not counted).  The speedup is the faster dense
time over condnn's time: below 1 means condnn is slower.

Output: a table on stdout, and ``<name>.csv`` and ``<name>.md`` in ``--out-dir`` (default
``benchmarks/results``), written atomically.  The default name says what was run:
``sparse_dot_cpu`` (the full grid), ``sparse_dot_cpu_quick``, ``sparse_dot_cpu_subset``,
with ``_float64`` appended for double precision.
"""
import argparse
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:    # benchlib sits next to this script
    sys.path.insert(0, HERE)

import benchlib  # noqa: E402
from benchlib import Point, Timing  # noqa: E402

DEFAULT_RESULTS = os.path.join(HERE, "results")
# Variables that make OpenBLAS use other kernels than it would pick for the CPU.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

FULL_GRID = {"n": [1, 64, 256, 1024], "k": [1024, 4096], "bs": [16, 32, 64, 128],
             "density": [0.5, 0.25, 0.1], "variants": ["ss", "sf", "fs"],
             "passes": ["fwd", "bwd"], "threads": [1, 2]}
QUICK_GRID = {"n": [1, 64], "k": [256], "bs": [16, 64], "density": [0.25],
              "variants": ["ss", "sf", "fs"], "passes": ["fwd", "bwd"], "threads": [1]}
QUICK_TIMING = {"min_time": 0.01, "max_time": 0.2, "min_samples": 3, "max_samples": 5}

COLUMNS = ("variant", "pass", "n", "k", "m", "bs", "density", "threads", "dtype",
           "condnn_ms", "condnn_calls", "useful_gflops", "dense_env_ms", "dense_env_core",
           "dense_env_method", "dense_unset_ms", "dense_unset_core", "dense_unset_method",
           "dense_gflops", "speedup")
SCREEN_COLUMNS = ("variant", "pass", "n", "k", "bs", "density", "threads", "condnn_ms",
                  "useful_gflops", "dense_env_ms", "dense_unset_ms", "speedup")


# ----------------------------------------------------------------------------------------------
# The grid


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny grid that runs in seconds")
    p.add_argument("--gpu", action="store_true",
                   help="run benchmarks/sparse_dot_gpu.py with the other arguments")
    p.add_argument("--n", type=int, nargs="+", help="batch sizes")
    p.add_argument("--k", type=int, nargs="+", help="input widths (and m, unless --m)")
    p.add_argument("--m", type=int, nargs="+", help="output widths (default: m = k)")
    p.add_argument("--bs", type=int, nargs="+", help="block sizes")
    p.add_argument("--density", type=float, nargs="+", help="fractions of blocks on")
    p.add_argument("--variants", nargs="+", choices=benchlib.VARIANTS)
    p.add_argument("--passes", nargs="+", choices=benchlib.PASSES)
    p.add_argument("--threads", type=int, nargs="+")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--min-time", type=float,
                   help="seconds of samples per point at least (default 0.2)")
    p.add_argument("--max-time", type=float,
                   help="seconds per point at most, for slow points (default 10)")
    p.add_argument("--out-dir", default=DEFAULT_RESULTS, help="where the CSV and markdown go")
    p.add_argument("--name", help="base name of the output files")
    return p.parse_args(argv)


def grid_points(args: argparse.Namespace) -> List[Point]:
    """The points the options select; --quick changes the defaults, explicit options win."""
    base = QUICK_GRID if args.quick else FULL_GRID
    pick = {key: getattr(args, key) or base[key] for key in base}
    sizes = [(k, m) for k in pick["k"] for m in (args.m or [k])]
    points, skipped = [], {}
    for n, (k, m), bs, density, variant in itertools.product(
            pick["n"], sizes, pick["bs"], pick["density"], pick["variants"]):
        if (variant in ("ss", "sf") and k % bs) or (variant in ("ss", "fs") and m % bs):
            skipped[f"{variant} with bs {bs} at k={k}, m={m}"] = None
            continue
        points += [Point(variant, pass_, n, k, m, bs, density, threads, args.dtype)
                   for pass_ in pick["passes"] for threads in pick["threads"]]
    for what in skipped:
        print(f"skipped {what}: the block size does not divide a masked dimension",
              file=sys.stderr)
    return points


def default_name(args: argparse.Namespace) -> str:
    selected = any(getattr(args, key) for key in FULL_GRID) or args.m
    name = "sparse_dot_cpu" + ("_quick" if args.quick else "_subset" if selected else "")
    return name + ("_float64" if args.dtype == "float64" else "")


# ----------------------------------------------------------------------------------------------
# The dense baseline (run in subprocesses)


def _expand(mask: np.ndarray, bs: int, dtype) -> np.ndarray:
    return np.repeat(mask, bs, axis=1).astype(dtype)


def dense_candidates(variant: str, pass_: str, prob: benchlib.Problem,
                     bs: int) -> Dict[str, Callable[[], object]]:
    """Equivalent dense NumPy computations of the result (see the module docstring), each
    returning it (out, or da, db, dc); the fastest one on this machine is the baseline.
    ``np.matmul`` and ``np.dot`` reach BLAS by different paths, and for a single row the
    weight gradient is an outer product, which ``np.multiply`` computes much faster than a
    GEMM with an inner dimension of 1."""
    a, b, c, g = prob.a, prob.b, prob.c, prob.grad_out
    dt = a.dtype
    am = _expand(prob.amask, bs, dt) if variant in ("ss", "sf") else None
    om = _expand(prob.omask, bs, dt) if variant in ("ss", "fs") else None
    n, k, m = a.shape[0], a.shape[1], b.shape[1]
    ab = np.empty_like(a)

    def masked_a() -> np.ndarray:
        return a if am is None else np.multiply(a, am, out=ab)

    if pass_ == "fwd":
        o = np.empty((n, m), dt)

        def forward(product) -> Callable[[], np.ndarray]:
            def run() -> np.ndarray:
                product(masked_a(), b, out=o)
                np.add(o, c, out=o)
                if om is not None:
                    np.multiply(o, om, out=o)
                return o
            return run
        return {"matmul": forward(np.matmul), "dot": forward(np.dot)}

    gm = np.empty_like(g)
    da, db, dc = np.empty((n, k), dt), np.empty((k, m), dt), np.empty(m, dt)

    def outer(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
        np.multiply(x[:, :1], y[:1], out=out)    # x is (k, 1), y is (1, m)

    def backward(product, weight_product) -> Callable[[], Tuple[np.ndarray, ...]]:
        def run() -> Tuple[np.ndarray, ...]:
            gg = g if om is None else np.multiply(g, om, out=gm)
            product(gg, b.T, out=da)
            if am is not None:
                np.multiply(da, am, out=da)
            weight_product(masked_a().T, gg, out=db)
            np.sum(gg, axis=0, out=dc)
            return da, db, dc
        return run
    candidates = {"matmul": backward(np.matmul, np.matmul), "dot": backward(np.dot, np.dot)}
    if n == 1:
        candidates["matmul+outer"] = backward(np.matmul, outer)
    return candidates


def fastest_dense(variant: str, pass_: str, prob: benchlib.Problem, bs: int,
                  timing: Dict[str, float]) -> Tuple[str, Timing]:
    """Screens the candidates with a short timing, then times the fastest fully."""
    candidates = dense_candidates(variant, pass_, prob, bs)
    screen = {"min_time": 0.0, "max_time": timing["max_time"] / 4, "min_samples": 2,
              "max_samples": 2}
    best = min(candidates, key=lambda name: benchlib.time_call(candidates[name],
                                                               **screen).seconds)
    return best, benchlib.time_call(candidates[best], **timing)


def dense_worker() -> None:
    """Subprocess entry: times the dense baselines of the request on stdin, answers on stdout
    in JSON, with the BLAS core type this process runs."""
    from threadpoolctl import threadpool_limits
    request = json.load(sys.stdin)
    timing = request["timing"]
    results = []
    for spec in request["points"]:
        p = Point(**spec)
        prob = benchlib.make_problem(p.n, p.k, p.m, p.bs, p.density, p.dtype)
        with threadpool_limits(limits=p.threads, user_api="blas"):
            method, t = fastest_dense(p.variant, p.dense_pass, prob, p.bs, timing)
        results.append({"point": spec, "seconds": t.seconds, "samples": t.samples,
                        "inner": t.inner, "method": method})
        print(f"  dense {p.variant} {p.pass_} n={p.n} k={p.k} m={p.m} threads={p.threads}: "
              f"{t.seconds * 1e3:.3f} ms ({method})", file=sys.stderr, flush=True)
    json.dump({"blas": benchlib.blas_info(), "results": results}, sys.stdout)


def measure_dense(points: Sequence[Point], timing: Dict[str, float],
                  unset_overrides: bool) -> Tuple[Dict[tuple, Tuple[Timing, str]], str]:
    """(time, fastest method) per ``Point.dense_key``, measured in a subprocess, and the
    subprocess's BLAS core type.

    With ``unset_overrides`` the subprocess runs without the OpenBLAS variables that force a
    core type."""
    representatives = {}
    for p in points:
        representatives.setdefault(p.dense_key, p)
    env = dict(os.environ)
    if unset_overrides:
        for name in OPENBLAS_OVERRIDES:
            env.pop(name, None)
    request = {"timing": timing,
               "points": [vars(p) for p in representatives.values()]}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--dense-worker"],
                          input=json.dumps(request), stdout=subprocess.PIPE, text=True,
                          env=env, check=True)
    answer = json.loads(proc.stdout)
    times = {Point(**r["point"]).dense_key:
             (Timing(r["seconds"], r["samples"], r["inner"]), r["method"])
             for r in answer["results"]}
    return times, answer["blas"]["core"]


# ----------------------------------------------------------------------------------------------
# condnn


def kernel_description() -> str:
    """Which implementation of condnn's kernels is loaded (a compiled extension or not)."""
    import importlib.machinery
    from condnn import _sparse
    compiled = _sparse.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return ("compiled extension " if compiled else "NOT COMPILED (Python fallback) ") + \
        os.path.basename(_sparse.__file__)


def condnn_call(p: Point, prob: benchlib.Problem) -> Callable[[], object]:
    import condnn
    amask = prob.amask if p.variant in ("ss", "sf") else None
    omask = prob.omask if p.variant in ("ss", "fs") else None
    a, b, c, g, bs = prob.a, prob.b, prob.c, prob.grad_out, p.bs
    if p.pass_ in ("fwd", "fwd-blocks"):
        out = np.empty((p.n, p.m), a.dtype)
        weights = condnn.BlockWeights(b, bs) if p.pass_ == "fwd-blocks" else b
        return lambda: condnn.sparse_dot(a, amask, weights, omask, c, bs, out=out)
    return lambda: condnn.sparse_dot_backward(g, a, amask, b, omask, bs)


def measure_condnn(points: Sequence[Point], timing: Dict[str, float],
                   on_point: Callable[[Point, Timing, float], None]) -> None:
    """Times condnn at every point, building each problem once; calls
    ``on_point(point, timing, useful_flops)`` as each is done."""
    import condnn
    from threadpoolctl import threadpool_limits
    groups: Dict[tuple, List[Point]] = {}
    for p in points:
        groups.setdefault(p.problem_key, []).append(p)
    before = condnn.get_num_threads()
    try:
        for key, group in groups.items():
            prob = benchlib.make_problem(*key)
            for p in group:
                condnn.set_num_threads(p.threads)
                with threadpool_limits(limits=p.threads, user_api="blas"):
                    t = benchlib.time_call(condnn_call(p, prob), **timing)
                flops = benchlib.useful_flops(p.variant, p.pass_, prob.amask, prob.omask,
                                              p.n, p.k, p.m, p.bs)
                on_point(p, t, flops)
            del prob
    finally:
        condnn.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# Putting it together


def run(points: Sequence[Point], timing: Dict[str, float],
        echo: Callable[[str], None] = print) -> Tuple[List[Dict[str, object]], Dict[str, str]]:
    """Measures every point (dense baselines first, in subprocesses, then condnn) and returns
    the result rows and a description of the setup."""
    echo_err = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg()) \
        if hasattr(os, "getloadavg") else "unknown"
    dense_keys = len({p.dense_key for p in points})
    echo_err(f"dense baseline, environment as is: {dense_keys} configurations")
    dense_env, core_env = measure_dense(points, timing, unset_overrides=False)
    echo_err(f"dense baseline, without {' and '.join(OPENBLAS_OVERRIDES)}: "
             f"{dense_keys} configurations")
    dense_unset, core_unset = measure_dense(points, timing, unset_overrides=True)

    setup = {
        "cpu": f"{benchlib.cpu_model()} ({os.cpu_count()} CPUs visible)",
        "kernels": kernel_description(),
        "numpy": np.__version__,
        "blas": "{library} {version}".format(**benchlib.blas_info()),
        "environment": ", ".join(f"{v}={os.environ[v]}" for v in OPENBLAS_OVERRIDES
                                 if v in os.environ) or "no OpenBLAS core variables set",
        "dense cores": f"environment as is: {core_env}; variables unset: {core_unset}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        # Other work on the machine slows every measurement, multi-threaded ones most.
        "load average before the run": load_before,
    }
    rows: List[Dict[str, object]] = []
    lines_printed = [False]

    def on_point(p: Point, t: Timing, flops: float) -> None:
        (env_t, env_method), (unset_t, unset_method) = dense_env[p.dense_key], \
            dense_unset[p.dense_key]
        env_s, unset_s = env_t.seconds, unset_t.seconds
        dense_s = min(env_s, unset_s)
        row = {"variant": p.variant, "pass": p.pass_, "n": p.n, "k": p.k, "m": p.m,
               "bs": p.bs, "density": p.density, "threads": p.threads, "dtype": p.dtype,
               "condnn_ms": t.seconds * 1e3, "condnn_calls": t.calls,
               "useful_gflops": flops / t.seconds / 1e9,
               "dense_env_ms": env_s * 1e3, "dense_env_core": core_env,
               "dense_env_method": env_method,
               "dense_unset_ms": unset_s * 1e3, "dense_unset_core": core_unset,
               "dense_unset_method": unset_method,
               "dense_gflops": 2.0 * p.n * p.k * p.m * (2 if p.pass_ == "bwd" else 1)
               / dense_s / 1e9,
               "speedup": dense_s / t.seconds}
        rows.append(row)
        header, line = benchlib.text_table(SCREEN_COLUMNS, [row], min_width=7)
        if not lines_printed[0]:
            echo(header)
            lines_printed[0] = True
        echo(line)

    measure_condnn(points, timing, on_point)
    if hasattr(os, "getloadavg"):
        setup["load average after the run"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return rows, setup


def write_results(rows: Sequence[Dict[str, object]], setup: Dict[str, str], out_dir: str,
                  name: str, command: str) -> Tuple[str, str]:
    """Writes ``<name>.csv`` and ``<name>.md`` atomically; returns their paths."""
    csv_path = os.path.join(out_dir, name + ".csv")
    md_path = os.path.join(out_dir, name + ".md")
    benchlib.atomic_write(csv_path, benchlib.csv_text(COLUMNS, rows))
    md = [f"# condnn block-sparse product vs dense NumPy ({name})", "",
          f"Command: `{command}`", ""]
    md += [f"- {key}: {value}" for key, value in setup.items()]
    md += ["", "Times in ms (median); useful GFLOP/s counts active blocks only; speedup = "
           "faster dense time / condnn time (below 1: condnn slower). `dense_env` ran with "
           "the environment as is, `dense_unset` without OPENBLAS_CORETYPE and "
           "OPENBLAS_L2_SIZE.", "", benchlib.markdown_table(COLUMNS, rows)]
    benchlib.atomic_write(md_path, "\n".join(md))
    return csv_path, md_path


def run_gpu(argv: Sequence[str], directory: str = HERE) -> int:
    """Hands the arguments to ``sparse_dot_gpu.main`` in ``directory``, imported only now so
    that the CPU benchmark needs none of the GPU packages."""
    path = os.path.join(directory, "sparse_dot_gpu.py")
    if not os.path.exists(path):
        print(f"error: --gpu needs the GPU benchmark {path}, which is not in this checkout",
              file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("sparse_dot_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(list(argv))
    return int(result or 0)


def timing_options(args: argparse.Namespace) -> Dict[str, float]:
    """Timing settings: --quick shortens them; --min-time / --max-time always win."""
    timing = dict(QUICK_TIMING) if args.quick else \
        {"min_time": 0.2, "max_time": 10.0, "min_samples": 3, "max_samples": 50}
    if args.min_time is not None:
        timing["min_time"] = args.min_time
    if args.max_time is not None:
        timing["max_time"] = args.max_time
    return timing


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--dense-worker"]:
        dense_worker()
        return 0
    if "--gpu" in argv:
        return run_gpu([a for a in argv if a != "--gpu"])
    args = parse_args(argv)
    points = grid_points(args)
    if not points:
        print("error: the options select no point", file=sys.stderr)
        return 2
    print(f"{len(points)} points", file=sys.stderr)
    rows, setup = run(points, timing_options(args))
    command = "python benchmarks/sparse_dot.py " + " ".join(argv)
    paths = write_results(rows, setup, args.out_dir, args.name or default_name(args),
                          command.strip())
    print("wrote " + " and ".join(paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
