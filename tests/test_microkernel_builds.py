"""The micro-kernels as each kind of machine compiles them: 64-byte vectors with AVX-512,
32-byte ones with AVX2, and the compiler's generic vector code elsewhere.  The extension is
built for this machine only, so here the kernels are compiled into a small C program once
per instruction set, run where the CPU has it, and compared with a plain double-precision
loop over many shapes: every tile width, the tails of partial vectors, gathered rows."""
import os
import platform
import shutil
import signal
import subprocess

import pytest

HEADERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "condnn")
COMPILER = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
X86 = platform.machine() in ("x86_64", "AMD64")

PROGRAM = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "_microkernels.h"

static uint32_t state = 12345;
static double uniform(void) {          /* in [-1, 1) */
    state = state * 1664525u + 1013904223u;
    return (double)(state >> 8) / (1 << 23) - 1.0;
}

/* A finite half: sign, exponent 1..29 (no overflow in the sums), any mantissa. */
static uint16_t some_half(void) {
    uint16_t sign = uniform() < 0 ? 0x8000 : 0;
    uint16_t exponent = (uint16_t)(1 + (state >> 3) % 29);
    return (uint16_t)(sign | (exponent << 10) | ((state >> 11) & 0x3ff));
}

enum { MAXR = 14, MAXK = 70, MAXN = 140, LD = 160 };
static int failures = 0, checks = 0;

static void check(const char *what, int nrows, int kb, int nb, double got, double want,
                  double scale, double tolerance) {
    checks++;
    if (!(fabs(got - want) <= tolerance * scale)) {
        if (failures++ < 10)
            printf("%s nrows=%d kb=%d nb=%d: %.9g, expected %.9g\n", what, nrows, kb, nb,
                   got, want);
    }
}

int main(void) {
    static float a32[MAXR * LD], b32[MAXK * LD], o32[MAXR * LD], g32[MAXR * LD];
    static double a64[MAXR * LD], b64[MAXK * LD], o64[MAXR * LD], g64[MAXR * LD];
    static double start[MAXR * LD], d64[MAXK * LD];
    static float d32[MAXK * LD];
    static uint16_t b16[MAXK * LD];
    static ptrdiff_t rows[MAXR];
    const int kbs[] = {1, 3, 8, 17, 64, 70};
    const int nbs[] = {1, 5, 7, 8, 9, 15, 16, 17, 31, 33, 44, 64, 100, 128, 140};
    for (int i = 0; i < MAXR * LD; i++) {
        a64[i] = uniform(); a32[i] = (float)a64[i];
        g64[i] = uniform(); g32[i] = (float)g64[i];
        start[i] = uniform();
    }
    for (int i = 0; i < MAXK * LD; i++) {
        b64[i] = uniform(); b32[i] = (float)b64[i]; b16[i] = some_half();
    }
    for (int nrows = 1; nrows <= MAXR; nrows++) {
        for (int t = 0; t < nrows; t++) rows[t] = nrows - 1 - t;    /* gathered, reversed */
        for (size_t ik = 0; ik < sizeof kbs / sizeof *kbs; ik++) {
            for (size_t in = 0; in < sizeof nbs / sizeof *nbs; in++) {
                int kb = kbs[ik], nb = nbs[in];
                for (int i = 0; i < MAXR * LD; i++) { o32[i] = (float)start[i]; o64[i] = start[i]; }
                gemm_rows_f32(nrows, a32, LD, rows, b32, LD, kb, nb, o32, LD, NULL, NULL);
                gemm_rows_f64(nrows, a64, LD, NULL, b64, LD, kb, nb, o64, LD, rows, NULL);
                for (int t = 0; t < nrows; t++) {
                    for (int c = 0; c < nb; c++) {
                        double w32 = (float)start[t * LD + c], w64 = start[rows[t] * LD + c];
                        double s32 = fabs(w32), s64 = fabs(w64);
                        for (int q = 0; q < kb; q++) {
                            w32 += (double)a32[rows[t] * LD + q] * b32[q * LD + c];
                            s32 += fabs((double)a32[rows[t] * LD + q] * b32[q * LD + c]);
                            w64 += a64[t * LD + q] * b64[q * LD + c];
                            s64 += fabs(a64[t * LD + q] * b64[q * LD + c]);
                        }
                        check("gemm_rows_f32", nrows, kb, nb, o32[t * LD + c], w32, s32, 2e-5);
                        check("gemm_rows_f64", nrows, kb, nb, o64[rows[t] * LD + c], w64, s64,
                              1e-13);
                    }
                }
                /* float16 weights: the same sums over the converted weights. */
                for (int i = 0; i < MAXR * LD; i++) o32[i] = (float)start[i];
                gemm_rows_f32h(nrows, a32, LD, NULL, b16, LD, kb, nb, o32, LD, NULL, NULL);
                for (int t = 0; t < nrows; t++) {
                    for (int c = 0; c < nb; c++) {
                        double want = (float)start[t * LD + c], scale = fabs(want);
                        for (int q = 0; q < kb; q++) {
                            double term = (double)a32[t * LD + q]
                                          * condnn_half_to_float(b16 + q * LD + c);
                            want += term;
                            scale += fabs(term);
                        }
                        check("gemm_rows_f32h", nrows, kb, nb, o32[t * LD + c], want, scale,
                              2e-5);
                    }
                }
                /* The transposed kernel (element (q, c) of the block at b[c * LD + q]). */
                if (kb <= LD && nb <= MAXK) {
                    for (int i = 0; i < MAXR * LD; i++) o32[i] = (float)start[i];
                    gemm_rows_t_f32(nrows, a32, LD, rows, b32, LD, kb, nb, o32, LD, NULL);
                    for (int t = 0; t < nrows; t++) {
                        for (int c = 0; c < nb; c++) {
                            double want = (float)start[t * LD + c], scale = fabs(want);
                            for (int q = 0; q < kb; q++) {
                                double term = (double)a32[rows[t] * LD + q] * b32[c * LD + q];
                                want += term;
                                scale += fabs(term);
                            }
                            check("gemm_rows_t_f32", nrows, kb, nb, o32[t * LD + c], want,
                                  scale, 2e-5);
                        }
                    }
                }
                /* Packing a block contiguous, from rows, from columns and from neither. */
                if (nrows == 1) {
                    static float packed[MAXK * LD];
                    const ptrdiff_t strides[3][2] = {{LD, 1}, {1, LD}, {2 * LD, 2}};
                    for (int s = 0; s < 3; s++) {
                        ptrdiff_t sq = strides[s][0], sc = strides[s][1];
                        if ((kb - 1) * sq + (nb - 1) * sc >= MAXK * LD) continue;
                        pack_block_f32(b32, sq, sc, kb, nb, packed);
                        for (int q = 0; q < kb; q++)
                            for (int c = 0; c < nb; c++)
                                check("pack_block_f32", (int)sq, kb, nb, packed[q * nb + c],
                                      b32[q * sq + c * sc], 1, 0);
                    }
                }
                /* The weight gradient: d[q][c] += sum_t a[t][q] * g[t][c]. */
                for (int i = 0; i < MAXK * LD; i++) { d32[i] = (float)b64[i]; d64[i] = b64[i]; }
                gemm_outer_f32(nrows, a32, LD, g32, LD, kb, nb, d32, LD);
                gemm_outer_f64(nrows, a64, LD, g64, LD, kb, nb, d64, LD);
                for (int q = 0; q < kb; q++) {
                    for (int c = 0; c < nb; c++) {
                        double w32 = (float)b64[q * LD + c], w64 = b64[q * LD + c];
                        double s32 = fabs(w32), s64 = fabs(w64);
                        for (int t = 0; t < nrows; t++) {
                            w32 += (double)a32[t * LD + q] * g32[t * LD + c];
                            s32 += fabs((double)a32[t * LD + q] * g32[t * LD + c]);
                            w64 += a64[t * LD + q] * g64[t * LD + c];
                            s64 += fabs(a64[t * LD + q] * g64[t * LD + c]);
                        }
                        check("gemm_outer_f32", nrows, kb, nb, d32[q * LD + c], w32, s32, 2e-5);
                        check("gemm_outer_f64", nrows, kb, nb, d64[q * LD + c], w64, s64, 1e-13);
                    }
                }
            }
        }
    }
    printf("vector bytes %d, %d checks, %d failures\n", CONDNN_VECTOR_BYTES, checks, failures);
    return failures != 0;
}
"""

BUILDS = {
    "generic": ["-mno-avx"] if X86 else [],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma", "-mf16c"],
}
VECTOR_BYTES = {"generic": 32, "avx2": 32, "avx512": 64}


@pytest.mark.skipif(COMPILER is None, reason="no C compiler")
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_kernels_match_the_plain_loop(build, tmp_path):
    if build != "generic" and not X86:
        pytest.skip(f"{build} is an x86 instruction set")
    source = tmp_path / "kernels.c"
    source.write_text(PROGRAM)
    binary = tmp_path / "kernels"
    # -ffp-contract=off as setup.py builds on x86: the reference loop must not be fused.
    subprocess.run([COMPILER, "-O2", "-std=gnu11", "-ffp-contract=off", *BUILDS[build],
                    f"-I{HEADERS}", str(source), "-o", str(binary), "-lm"],
                   check=True, capture_output=True)
    run = subprocess.run([str(binary)], capture_output=True, text=True)
    if run.returncode == -signal.SIGILL:
        pytest.skip(f"this CPU lacks {build}")
    assert run.returncode == 0, run.stdout
    assert f"vector bytes {VECTOR_BYTES[build]}," in run.stdout
    assert " 0 failures" in run.stdout and " 0 checks" not in run.stdout
