"""Runs the project's scripts (benchmarks) in a subprocess, the checkout first on the path."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_benchmark(name: str, *args: str, timeout: float = 600,
                  **env: str) -> subprocess.CompletedProcess:
    """``python benchmarks/<name> args...`` with extra environment variables ``env``;
    asserts that it exits with status 0 (showing the end of its output if not)."""
    environ = dict(os.environ, **env)
    environ["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                          capture_output=True, text=True, env=environ, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done
