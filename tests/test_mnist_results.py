"""``benchmarks/mnist_results.py --quick`` runs and writes well-formed results (its numbers
are those of a smoke run: no check on them), and how it reads the dense nets' curve."""
import csv
import importlib.util
import json
import os

from benchmark_scripts import ROOT, run_benchmark

_spec = importlib.util.spec_from_file_location(
    "_bench_mnist_results", os.path.join(ROOT, "benchmarks", "mnist_results.py"))
mnist_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mnist_results)

DENSE = [{"family": "dense", "setting": "256x256", "test_error_pct": 1.8, "batch1_s": 0.02,
          "batch256_s": 0.04},
         {"family": "dense", "setting": "384x384", "test_error_pct": 1.6, "batch1_s": 0.03,
          "batch256_s": 0.06},
         {"family": "dense", "setting": "512x512", "test_error_pct": 1.7, "batch1_s": 0.04,
          "batch256_s": 0.08}]


def test_the_best_dense_net_no_slower_is_chosen():
    best = mnist_results.best_dense_within
    assert best(DENSE, "batch256_s", 0.01) is None                  # none that fast
    assert best(DENSE, "batch256_s", 0.04)["setting"] == "256x256"  # no slower: equal counts
    assert best(DENSE, "batch256_s", 0.059)["setting"] == "256x256"
    assert best(DENSE, "batch1_s", 0.035)["setting"] == "384x384"
    # A slower dense net that is less accurate does not replace a faster, better one.
    assert best(DENSE, "batch256_s", 1.0)["setting"] == "384x384"


def test_every_condnet_is_set_against_the_dense_nets_no_slower():
    condnets = [{"family": "condnet", "setting": "tau 0.15", "test_error_pct": 1.7,
                 "batch1_s": 0.025, "batch256_s": 0.07},
                {"family": "condnet float16", "setting": "tau 0.15", "test_error_pct": 1.7,
                 "batch1_s": 0.01, "batch256_s": 0.045}]
    rows = mnist_results.against_dense(DENSE + condnets)
    assert [r["condnet"] for r in rows] == ["tau 0.15", "tau 0.15, float16"]
    first, second = rows
    assert first["dense_no_slower_batch256"] == "384x384"
    assert first["dense_error_batch256_pct"] == 1.6 and first["below_dense_batch256"] is False
    assert first["dense_no_slower_batch1"] == "256x256"
    assert first["dense_error_batch1_pct"] == 1.8 and first["below_dense_batch1"] is True
    assert second["dense_no_slower_batch1"] == "none" and second["below_dense_batch1"] is True
    assert second["dense_error_batch1_pct"] == "" and second["batch1_s"] == 0.01
    assert second["dense_no_slower_batch256"] == "256x256"


def test_quick_run_writes_the_table_and_the_plot(tmp_path):
    run_benchmark("mnist_results.py", "--quick", "--out-dir", str(tmp_path),
                  CONDNN_NUM_THREADS="1")
    with open(tmp_path / "mnist_results_quick.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"].split()[0] for r in rows] == ["(a)", "(a')", "(a16)", "(b)", "(c)",
                                                     "(d)", "(e)"]
    for r in rows:
        assert 0 <= float(r["test_error_pct"]) <= 100 and float(r["batch256_s"]) > 0
    with open(tmp_path / "mnist_results_quick.json") as f:
        results = json.load(f)
    assert {p["family"] for p in results["pareto"]} == {"condnet", "condnet float16", "dense"}
    assert results["reports"]["condnet float16"]["weight_storage"] == "float16"
    assert len(results["against_dense"]) == len([p for p in results["pareto"]
                                                 if p["family"] != "dense"])
    assert "| model |" in (tmp_path / "mnist_results_quick.md").read_text()
    with open(tmp_path / "mnist_pareto_quick.png", "rb") as f:
        assert f.read(4) == b"\x89PNG"
