/*
 * Body of the micro-kernels, included once per scalar type by _microkernels.h with
 * REAL (the scalar), FMA, VFMA and VFMA1 (its multiply-adds, see there), VEC (the name of
 * its vector type, CONDNN_VECTOR_BYTES wide) and SUF (the name suffix) defined.
 */

typedef REAL VEC __attribute__((vector_size(CONDNN_VECTOR_BYTES)));
#define VLEN ((int)(sizeof(VEC) / sizeof(REAL)))

CONDNN_INLINE VEC SUF(loadu)(const REAL *p) {
    VEC v;
    memcpy(&v, p, sizeof v);
    return v;
}

CONDNN_INLINE void SUF(storeu)(REAL *p, VEC v) { memcpy(p, &v, sizeof v); }

/* The first w < VLEN elements at p in the low lanes of a vector, 0 in the others; and the
 * low w lanes of v stored at p. */
CONDNN_INLINE VEC SUF(load_first)(const REAL *p, int w) {
#if defined(CONDNN_AVX512)
    return LOAD_FIRST(p, w);
#else
    VEC v = {0};
    memcpy(&v, p, w * sizeof(REAL));
    return v;
#endif
}

CONDNN_INLINE void SUF(store_first)(REAL *p, VEC v, int w) {
#if defined(CONDNN_AVX512)
    STORE_FIRST(p, v, w);
#else
    memcpy(p, &v, w * sizeof(REAL));
#endif
}

/* The row kernels (gemm_rows) with weights of this scalar type. */
#define WREAL REAL
#define WSUF SUF
#define WLOADV SUF(loadu)
#define WLOADFIRST SUF(load_first)
#include "_microkernels_rows.h"
#undef WREAL
#undef WSUF
#undef WLOADV
#undef WLOADFIRST

CONDNN_INLINE REAL SUF(hsum)(VEC v) {
    REAL s = 0;
    for (int i = 0; i < VLEN; i++) s += v[i];
    return s;
}

/* sum_{q < kb} x[q] * y[q], in the vector lanes and then the tail. */
CONDNN_INLINE REAL SUF(dot)(const REAL *x, const REAL *y, int kb) {
    VEC acc = {0};
    int q = 0;
    for (; q + VLEN <= kb; q += VLEN) acc = VFMA(SUF(loadu)(x + q), SUF(loadu)(y + q), acc);
    REAL s = SUF(hsum)(acc);
    for (; q < kb; q++) s = FMA(x[q], y[q], s);
    return s;
}

/*
 * As gemm_rows, with the block of weights stored transposed: element (q, c) at
 * bt[c * ldbt + q], so that each of its columns is contiguous.  Every output is a dot
 * product of a row of a with a column; for a few rows this beats packing the block, which
 * would transpose it element by element (the backward pass's da at batch 1).
 */
static void SUF(gemm_rows_t)(ptrdiff_t nrows, const REAL *a, ptrdiff_t lda,
                             const ptrdiff_t *arows, const REAL *bt, ptrdiff_t ldbt, int kb,
                             int nb, REAL *o, ptrdiff_t ldo, const ptrdiff_t *orows) {
    for (ptrdiff_t t = 0; t < nrows; t++) {
        const REAL *ar = a + (arows ? arows[t] : t) * lda;
        REAL *orow = o + (orows ? orows[t] : t) * ldo;
        int c = 0;
        for (; c + 4 <= nb; c += 4) {    /* four columns at a time share the loads of a */
            const REAL *b0 = bt + c * ldbt, *b1 = b0 + ldbt, *b2 = b1 + ldbt, *b3 = b2 + ldbt;
            VEC s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
            int q = 0;
            for (; q + VLEN <= kb; q += VLEN) {
                VEC x = SUF(loadu)(ar + q);
                s0 = VFMA(x, SUF(loadu)(b0 + q), s0);
                s1 = VFMA(x, SUF(loadu)(b1 + q), s1);
                s2 = VFMA(x, SUF(loadu)(b2 + q), s2);
                s3 = VFMA(x, SUF(loadu)(b3 + q), s3);
            }
            REAL r0 = SUF(hsum)(s0), r1 = SUF(hsum)(s1), r2 = SUF(hsum)(s2), r3 = SUF(hsum)(s3);
            for (; q < kb; q++) {
                r0 = FMA(ar[q], b0[q], r0);
                r1 = FMA(ar[q], b1[q], r1);
                r2 = FMA(ar[q], b2[q], r2);
                r3 = FMA(ar[q], b3[q], r3);
            }
            orow[c] += r0;
            orow[c + 1] += r1;
            orow[c + 2] += r2;
            orow[c + 3] += r3;
        }
        for (; c < nb; c++) orow[c] += SUF(dot)(ar, bt + c * ldbt, kb);
    }
}

/*
 * d[q * ldd + c0 ..] += sum_t a[t * lda + q] * g[t * ldg + c0 ..]  for q < mq, t < nrows:
 * a tile of the weight gradient, accumulated in registers over the rows.
 */
CONDNN_INLINE void SUF(outer_tile)(const int mq, const int nv, ptrdiff_t nrows,
                                   const REAL *a, ptrdiff_t lda, const REAL *g,
                                   ptrdiff_t ldg, REAL *d, ptrdiff_t ldd) {
    VEC acc[CONDNN_MR][CONDNN_NV_MAX];
    for (int q = 0; q < mq; q++)
        for (int v = 0; v < nv; v++) acc[q][v] = SUF(loadu)(d + q * ldd + v * VLEN);
    for (ptrdiff_t t = 0; t < nrows; t++) {
        const REAL *at = a + t * lda;
        const REAL *gt = g + t * ldg;
        VEC gv[CONDNN_NV_MAX];
        for (int v = 0; v < nv; v++) gv[v] = SUF(loadu)(gt + v * VLEN);
        for (int q = 0; q < mq; q++) {
            REAL x = at[q];
            for (int v = 0; v < nv; v++) acc[q][v] = VFMA1(gv[v], x, acc[q][v]);
        }
    }
    for (int q = 0; q < mq; q++)
        for (int v = 0; v < nv; v++) SUF(storeu)(d + q * ldd + v * VLEN, acc[q][v]);
}

CONDNN_INLINE void SUF(outer_tail)(const int mq, ptrdiff_t nrows, const REAL *a,
                                   ptrdiff_t lda, const REAL *g, ptrdiff_t ldg, REAL *d,
                                   ptrdiff_t ldd, int c0, int nb) {
    for (int c = c0; c < nb; c++) {
        for (int q = 0; q < mq; q++) {
            REAL s = d[q * ldd + c];
            for (ptrdiff_t t = 0; t < nrows; t++) s = FMA(a[t * lda + q], g[t * ldg + c], s);
            d[q * ldd + c] = s;
        }
    }
}

CONDNN_INLINE void SUF(outer_block)(const int mq, ptrdiff_t nrows, const REAL *a,
                                    ptrdiff_t lda, const REAL *g, ptrdiff_t ldg, int nb,
                                    REAL *d, ptrdiff_t ldd) {
    int c = 0;
    /* Tiles of CONDNN_MR x 4 vectors where the accumulators allow (AVX-512). */
    if (CONDNN_WIDE(CONDNN_MR) >= 4)
        for (; c + 4 * VLEN <= nb; c += 4 * VLEN)
            SUF(outer_tile)(mq, 4, nrows, a, lda, g + c, ldg, d + c, ldd);
    for (; c + 2 * VLEN <= nb; c += 2 * VLEN)
        SUF(outer_tile)(mq, 2, nrows, a, lda, g + c, ldg, d + c, ldd);
    for (; c + VLEN <= nb; c += VLEN)
        SUF(outer_tile)(mq, 1, nrows, a, lda, g + c, ldg, d + c, ldd);
    SUF(outer_tail)(mq, nrows, a, lda, g, ldg, d, ldd, c, nb);
}

/*
 * d[q * ldd + c] += sum_{t < nrows} a[t * lda + q] * g[t * ldg + c]   for q < kb, c < nb:
 * the contribution of nrows (gathered) rows to a (kb, nb) block of the weight gradient.
 */
static void SUF(gemm_outer)(ptrdiff_t nrows, const REAL *a, ptrdiff_t lda, const REAL *g,
                            ptrdiff_t ldg, int kb, int nb, REAL *d, ptrdiff_t ldd) {
    for (int q = 0; q < kb; q += CONDNN_MR) {
        int mq = kb - q < CONDNN_MR ? kb - q : CONDNN_MR;
        const REAL *aq = a + q;
        REAL *dq = d + q * ldd;
        switch (mq) {
            case 6: SUF(outer_block)(6, nrows, aq, lda, g, ldg, nb, dq, ldd); break;
            case 5: SUF(outer_block)(5, nrows, aq, lda, g, ldg, nb, dq, ldd); break;
            case 4: SUF(outer_block)(4, nrows, aq, lda, g, ldg, nb, dq, ldd); break;
            case 3: SUF(outer_block)(3, nrows, aq, lda, g, ldg, nb, dq, ldd); break;
            case 2: SUF(outer_block)(2, nrows, aq, lda, g, ldg, nb, dq, ldd); break;
            default: SUF(outer_block)(1, nrows, aq, lda, g, ldg, nb, dq, ldd); break;
        }
    }
}

/* n elements from src to dst, in vectors: a block's rows are a few hundred bytes, and
 * calling memcpy for each cost more than the copy. */
CONDNN_INLINE void SUF(copy_row)(REAL *dst, const REAL *src, int n) {
    int c = 0;
    for (; c + VLEN <= n; c += VLEN) SUF(storeu)(dst + c, SUF(loadu)(src + c));
    if (c < n) SUF(store_first)(dst + c, SUF(load_first)(src + c, n - c), n - c);
}

/* dst[q * nb + c] = src[q * sq + c * sc]: a (kb, nb) block copied contiguous, any strides. */
static void SUF(pack_block)(const REAL *src, ptrdiff_t sq, ptrdiff_t sc, int kb, int nb,
                            REAL *dst) {
    if (sc == 1) {
        for (int q = 0; q < kb; q++) {
            if (q + CONDNN_PREFETCH_AHEAD < kb)
                condnn_prefetch(src + (q + CONDNN_PREFETCH_AHEAD) * sq, nb * sizeof(REAL));
            SUF(copy_row)(dst + (ptrdiff_t)q * nb, src + q * sq, nb);
        }
    } else if (sq == 1) {
        /* A transposed block: read along the source's unit-stride axis. */
        for (int c = 0; c < nb; c++)
            for (int q = 0; q < kb; q++) dst[(ptrdiff_t)q * nb + c] = src[c * sc + q];
    } else {
        for (int q = 0; q < kb; q++)
            for (int c = 0; c < nb; c++) dst[(ptrdiff_t)q * nb + c] = src[q * sq + c * sc];
    }
}

#undef VLEN
