"""Every CUDA source under condnn/ compiles with nvcc, without warnings, for sm_80 and sm_90.

``-cubin`` runs ptxas too, which rejects kernels over the static shared-memory limit; a
``-ptx`` build would not.  Skipped where nvcc is not installed.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "condnn").rglob("*.cu"))
NVCC = shutil.which("nvcc")


def test_there_are_cuda_sources():
    assert SOURCES, "no .cu file under condnn/"


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_cuda_source_compiles(source, arch, tmp_path):
    done = subprocess.run([NVCC, "-cubin", f"-arch={arch}", "-Werror", "all-warnings",
                           "-o", str(tmp_path / "out.cubin"), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
