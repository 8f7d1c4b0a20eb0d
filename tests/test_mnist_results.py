"""``benchmarks/mnist_results.py --quick`` runs and writes well-formed results (its numbers
are those of a smoke run: no check on them)."""
import csv
import json

from benchmark_scripts import run_benchmark


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
    assert "| model |" in (tmp_path / "mnist_results_quick.md").read_text()
    with open(tmp_path / "mnist_pareto_quick.png", "rb") as f:
        assert f.read(4) == b"\x89PNG"
