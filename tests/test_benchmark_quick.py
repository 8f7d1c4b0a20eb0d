"""The benchmark scripts run and write well-formed results (never a check on timings)."""
import csv
import importlib.util
import math
import os
import subprocess
import sys
from types import ModuleType

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}",
                                                  os.path.join(BENCH, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sparse_dot = _load("sparse_dot")
benchlib = sparse_dot.benchlib    # the helper module the script itself uses


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Runs ``sparse_dot.py --quick`` once, as a user would, into a temporary directory."""
    out_dir = tmp_path_factory.mktemp("results")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "sparse_dot.py"), "--quick",
                           "--out-dir", str(out_dir)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out_dir, proc


def test_quick_writes_csv_and_markdown_only(quick_run) -> None:
    out_dir, _ = quick_run
    assert sorted(os.listdir(out_dir)) == ["sparse_dot_cpu_quick.csv",
                                           "sparse_dot_cpu_quick.md"]


def test_quick_csv_is_well_formed(quick_run) -> None:
    out_dir, _ = quick_run
    with open(out_dir / "sparse_dot_cpu_quick.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == sparse_dot.COLUMNS
        rows = list(reader)
    expected = sparse_dot.grid_points(sparse_dot.parse_args(["--quick"]))
    assert len(rows) == len(expected) > 0
    seen = {(r["variant"], r["pass"], int(r["n"]), int(r["k"]), int(r["m"]), int(r["bs"]),
             float(r["density"]), int(r["threads"]), r["dtype"]) for r in rows}
    assert seen == {(p.variant, p.pass_, p.n, p.k, p.m, p.bs, p.density, p.threads, p.dtype)
                    for p in expected}
    for r in rows:
        times = [float(r[c]) for c in ("condnn_ms", "dense_env_ms", "dense_unset_ms")]
        assert all(math.isfinite(t) and t > 0 for t in times), r
        assert int(r["condnn_calls"]) >= 1
        assert float(r["useful_gflops"]) >= 0 and float(r["dense_gflops"]) > 0
        assert r["dense_env_core"] and r["dense_unset_core"]
        assert r["dense_env_method"] and r["dense_unset_method"]
        # The speedup is against the faster of the two dense runs.
        dense = min(float(r["dense_env_ms"]), float(r["dense_unset_ms"]))
        assert float(r["speedup"]) == pytest.approx(dense / float(r["condnn_ms"]), rel=1e-9)


def test_quick_markdown_has_the_table(quick_run) -> None:
    out_dir, _ = quick_run
    text = (out_dir / "sparse_dot_cpu_quick.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| " + " | ".join(sparse_dot.COLUMNS) + " |"
    n_points = len(sparse_dot.grid_points(sparse_dot.parse_args(["--quick"])))
    assert len(table) == 2 + n_points
    assert all(line.count("|") == len(sparse_dot.COLUMNS) + 1 for line in table)
    assert "dense cores" in text and "kernels" in text


def test_quick_prints_the_table(quick_run) -> None:
    _, proc = quick_run
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == list(sparse_dot.SCREEN_COLUMNS)
    assert len(lines) == 1 + len(sparse_dot.grid_points(sparse_dot.parse_args(["--quick"])))


def test_subset_options_select_points() -> None:
    args = sparse_dot.parse_args(["--n", "1024", "--k", "4096", "--bs", "64", "--density",
                                  "0.25", "0.1", "--variants", "ss", "--threads", "1"])
    points = sparse_dot.grid_points(args)
    assert {(p.n, p.k, p.m, p.bs, p.variant, p.threads) for p in points} == \
        {(1024, 4096, 4096, 64, "ss", 1)}
    assert sorted({p.density for p in points}) == [0.1, 0.25]
    assert {p.pass_ for p in points} == {"fwd", "bwd"}
    assert sparse_dot.default_name(args) == "sparse_dot_cpu_subset"
    full = sparse_dot.parse_args([])
    assert len(sparse_dot.grid_points(full)) == 4 * 2 * 4 * 3 * 3 * 2 * 2
    assert sparse_dot.default_name(full) == "sparse_dot_cpu"


def test_useful_flops_counts_active_block_pairs() -> None:
    """The count equals a direct count over element masks, row by row."""
    rng = np.random.default_rng(0)
    n, k, m, bs = 7, 48, 32, 8
    amask = (rng.random((n, k // bs)) < 0.4).astype(np.uint8)
    omask = (rng.random((n, m // bs)) < 0.6).astype(np.uint8)
    a_on = np.repeat(amask, bs, axis=1).sum(axis=1)
    o_on = np.repeat(omask, bs, axis=1).sum(axis=1)
    expect = {"ss": 2 * int((a_on * o_on).sum()), "sf": 2 * int((a_on * m).sum()),
              "fs": 2 * int((k * o_on).sum())}
    for variant, flops in expect.items():
        assert benchlib.useful_flops(variant, "fwd", amask, omask, n, k, m, bs) == flops
        assert benchlib.useful_flops(variant, "bwd", amask, omask, n, k, m, bs) == 2 * flops


@pytest.mark.parametrize("variant", ["ss", "sf", "fs"])
@pytest.mark.parametrize("pass_", ["fwd", "bwd"])
def test_dense_baselines_compute_the_product(variant, pass_) -> None:
    """Every dense candidate computes what condnn computes (in float64 here, exactly enough)."""
    from condnn.sparse_reference import reference_sparse_dot, reference_sparse_dot_backward
    bs = 8
    prob = benchlib.make_problem(5, 32, 24, bs, 0.5, "float64")
    amask = prob.amask if variant in ("ss", "sf") else None
    omask = prob.omask if variant in ("ss", "fs") else None
    if pass_ == "fwd":
        want = [reference_sparse_dot(prob.a, amask, prob.b, omask, prob.c, bs)]
    else:
        want = reference_sparse_dot_backward(prob.grad_out, prob.a, amask, prob.b, omask, bs)
    for name, fn in sparse_dot.dense_candidates(variant, pass_, prob, bs).items():
        got = fn()
        got = [got] if pass_ == "fwd" else list(got)
        assert len(got) == len(want)
        for x, w in zip(got, want):
            assert np.allclose(x, w, rtol=1e-12, atol=1e-12), f"{name} {variant} {pass_}"


def test_time_call_reports_positive_median() -> None:
    calls = []
    t = benchlib.time_call(lambda: calls.append(1), min_time=0.001, max_samples=3)
    assert t.seconds > 0 and 1 <= t.samples <= 3 and t.inner >= 1
    assert len(calls) >= t.calls    # the warm-up and screening calls come on top


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path) -> None:
    path = tmp_path / "x.csv"
    benchlib.atomic_write(str(path), "old")
    benchlib.atomic_write(str(path), "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["x.csv"]


def test_gpu_option_says_when_the_gpu_benchmark_is_missing(tmp_path, capsys) -> None:
    assert sparse_dot.run_gpu(["--quick"], directory=str(tmp_path)) == 2
    assert "sparse_dot_gpu.py" in capsys.readouterr().err


def test_gpu_option_delegates_to_the_gpu_benchmark(tmp_path) -> None:
    (tmp_path / "sparse_dot_gpu.py").write_text(
        "import pathlib\n"
        "def main(argv):\n"
        "    pathlib.Path(__file__).with_name('argv.txt').write_text(' '.join(argv))\n"
        "    return 3\n")
    assert sparse_dot.run_gpu(["--quick", "--n", "4"], directory=str(tmp_path)) == 3
    assert (tmp_path / "argv.txt").read_text() == "--quick --n 4"
