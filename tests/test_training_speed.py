"""``benchmarks/training_speed.py --quick`` runs and writes its table (a smoke run: its
numbers are not checked); without a GPU it says so and measures the CPU."""
import csv
import os
import subprocess
import sys

import condnn.gpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_run_writes_the_table(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "training_speed.py"),
                           "--quick", "--out-dir", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(tmp_path / "training_speed_quick.csv") as f:
        rows = list(csv.DictReader(f))
    devices = {(r["model"], r["device"], r["threads"]) for r in rows}
    assert ("condnet", "cpu", "1") in devices and ("dense twin", "cpu", "1") in devices
    assert all(float(r["seconds_per_epoch"]) > 0 for r in rows)
    if condnn.gpu.available():
        assert ("condnet", "gpu", "") in devices
    else:
        assert "GPU not measured: " in done.stdout
        assert all(r["device"] == "cpu" for r in rows)
    assert "| model |" in (tmp_path / "training_speed_quick.md").read_text()
