"""The micro-kernels' float16 to float32 conversion, on each of its paths: the F16C
instruction with 32-byte vectors (AVX2), its 64-byte form (AVX-512), and the portable one by
the bits (every other target).  The extension is built for this machine, so it has one of
them: here each is compiled into a small program, run where the CPU has it, and all 65536
half-precision values are compared with NumPy's conversion."""
import os
import platform
import shutil
import signal
import subprocess

import numpy as np
import pytest

HEADERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "condnn")
COMPILER = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")

PROGRAM = r"""
#include <stdio.h>
#include "_microkernels.h"

int main(void) {
    uint16_t all[65536];
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    const int lanes = (int)(sizeof(condnn_vf32) / sizeof(float));
    for (uint32_t i = 0; i < 65536; i += lanes) {
        condnn_vf32 v = condnn_load_halves(all + i);      /* a vector at a time */
        for (int lane = 0; lane < lanes; lane++) {
            float one = condnn_half_to_float(all + i + lane), many = v[lane];
            uint32_t a, b;
            memcpy(&a, &one, sizeof a);
            memcpy(&b, &many, sizeof b);
            printf("%08x %08x\n", a, b);
        }
    }
    return 0;
}
"""

FLAGS = {"portable": ["-mno-f16c"] if platform.machine() in ("x86_64", "AMD64") else [],
         "f16c": ["-mavx2", "-mfma", "-mf16c"],
         "avx512": ["-mavx512f", "-mavx2", "-mfma", "-mf16c"]}


@pytest.mark.skipif(COMPILER is None, reason="no C compiler")
@pytest.mark.parametrize("path", sorted(FLAGS))
def test_every_float16_converts_exactly(path, tmp_path):
    if path != "portable" and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("F16C is an x86 instruction")
    source = tmp_path / "convert.c"
    source.write_text(PROGRAM)
    binary = tmp_path / "convert"
    subprocess.run([COMPILER, "-O2", "-std=c11", *FLAGS[path], f"-I{HEADERS}", str(source),
                    "-o", str(binary)], check=True, capture_output=True)
    run = subprocess.run([str(binary)], capture_output=True, text=True)
    if run.returncode == -signal.SIGILL:
        pytest.skip(f"this CPU lacks {path}")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split()
    got = np.array([int(word, 16) for word in lines], np.uint32).reshape(65536, 2)
    want = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(
        np.float32)
    for column, name in ((0, "condnn_half_to_float"), (1, "condnn_load_halves")):
        values = got[:, column].view(np.float32)
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(values), nan), name
        # Every number and infinity bit for bit (signed zeros and subnormals included).
        assert np.array_equal(values[~nan].view(np.uint32), want[~nan].view(np.uint32)), name
