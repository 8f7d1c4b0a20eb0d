"""``benchmarks/training_speed.py --quick`` runs and writes its table (a smoke run: its
numbers are not checked); without a GPU it says so and measures the CPU."""
import csv

import condnn.gpu
from benchmark_scripts import run_benchmark


def test_quick_run_writes_the_table(tmp_path):
    done = run_benchmark("training_speed.py", "--quick", "--out-dir", str(tmp_path))
    with open(tmp_path / "training_speed_quick.csv") as f:
        rows = list(csv.DictReader(f))
    devices = {(r["model"], r["device"], r["threads"]) for r in rows}
    assert ("condnet", "cpu", "1") in devices and ("dense twin", "cpu", "1") in devices
    assert all(float(r["seconds_per_epoch"]) > 0 for r in rows)
    if condnn.gpu.available():
        assert ("condnet", "gpu", "") in devices and ("dense twin", "gpu", "") in devices
    else:
        assert "GPU not measured: " in done.stdout
        assert all(r["device"] == "cpu" for r in rows)
    assert "| model |" in (tmp_path / "training_speed_quick.md").read_text()
