/*
 * The row kernels of the forward product (gemm_rows), included by _microkernels_impl.h
 * and _microkernels.h once per pair of types: with REAL, VEC, SUF, FMA and VFMA1 of the
 * inputs and outputs defined (see _microkernels_impl.h), and
 *   WREAL      the scalar type the weights are stored in,
 *   WLOADV(p)  VLEN weights from p as a VEC,
 *   WLOADFIRST(p, w)  the first w < VLEN weights from p in a VEC's low lanes, 0 elsewhere,
 *   WSUF(name) the names of these kernels.
 * With weights of REAL itself the loads are plain; with float16 weights for float inputs
 * they convert, exactly, so the arithmetic is the same float arithmetic on the rounded
 * weights.
 */

/*
 * out[r][c0 .. c0 + nv*VLEN) += sum_q a[r][q] * b[q * ldb + c0 ..]   for r < mr, q < kb.
 * mr and nv are compile-time constants at every call site, so the loops unroll and the
 * mr * nv <= 12 accumulators live in registers.
 */
CONDNN_INLINE void WSUF(rows_tile)(const int mr, const int nv, const REAL *const *a,
                                   const WREAL *b, ptrdiff_t ldb, int kb, REAL *const *out,
                                   int c0, condnn_stream *fetch) {
    VEC acc[CONDNN_MR][CONDNN_NV_MAX];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = SUF(loadu)(out[r] + c0 + v * VLEN);
    const WREAL *bq = b + c0;
    for (int q = 0; q < kb; q++, bq += ldb) {
        if (fetch) condnn_stream_step(fetch);
        VEC bv[CONDNN_NV_MAX];
        for (int v = 0; v < nv; v++) bv[v] = WLOADV(bq + v * VLEN);
        for (int r = 0; r < mr; r++) {
            REAL x = a[r][q];
            for (int v = 0; v < nv; v++) acc[r][v] = VFMA1(bv[v], x, acc[r][v]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) SUF(storeu)(out[r] + c0 + v * VLEN, acc[r][v]);
}

/* The columns after the last full vector, in the low lanes of one vector: the same
 * multiply-adds in the same order, column by column, as the full tiles.  (Done one scalar
 * at a time, the 4 columns after 40 of a 44-way policy took as long as the 40.) */
CONDNN_INLINE void WSUF(rows_tail)(const int mr, const REAL *const *a, const WREAL *b,
                                   ptrdiff_t ldb, int kb, REAL *const *out, int c0, int nb) {
    const int w = nb - c0;
    if (w <= 0) return;
    VEC acc[CONDNN_MR];
    for (int r = 0; r < mr; r++) acc[r] = SUF(load_first)(out[r] + c0, w);
    const WREAL *bq = b + c0;
    for (int q = 0; q < kb; q++, bq += ldb) {
        VEC bv = WLOADFIRST(bq, w);
        for (int r = 0; r < mr; r++) acc[r] = VFMA1(bv, a[r][q], acc[r]);
    }
    for (int r = 0; r < mr; r++) SUF(store_first)(out[r] + c0, acc[r], w);
}

/* The full tiles rows_block takes across nb columns for mr rows: each steps the fetch
 * stream once per row of weights. */
CONDNN_INLINE int WSUF(column_tiles)(int mr, int nb) {
    int c = 0, tiles = 0;
    for (int v = CONDNN_WIDE(mr); v >= 1; v = v > 4 ? 4 : v / 2)
        for (; c + v * VLEN <= nb; c += v * VLEN) tiles++;
    return tiles;
}

/* Few rows get wide tiles (CONDNN_WIDE), so that the weights stream row by row and are
 * loaded once per tile rather than once per narrow column chunk (this is what decides
 * batch-1 speed). */
CONDNN_INLINE void WSUF(rows_block)(const int mr, const REAL *const *a, const WREAL *b,
                                    ptrdiff_t ldb, int kb, int nb, REAL *const *out,
                                    condnn_stream *fetch) {
    const int wide = CONDNN_WIDE(mr);
    int c = 0;
    for (; c + wide * VLEN <= nb; c += wide * VLEN)
        WSUF(rows_tile)(mr, wide, a, b, ldb, kb, out, c, fetch);
    if (wide > 4)
        for (; c + 4 * VLEN <= nb; c += 4 * VLEN)
            WSUF(rows_tile)(mr, 4, a, b, ldb, kb, out, c, fetch);
    if (wide > 2)
        for (; c + 2 * VLEN <= nb; c += 2 * VLEN)
            WSUF(rows_tile)(mr, 2, a, b, ldb, kb, out, c, fetch);
    for (; c + VLEN <= nb; c += VLEN) WSUF(rows_tile)(mr, 1, a, b, ldb, kb, out, c, fetch);
    WSUF(rows_tail)(mr, a, b, ldb, kb, out, c, nb);
}

/*
 * For t < nrows, with ra = arows ? arows[t] : t and ro = orows ? orows[t] : t:
 *     o[ro * ldo + c] += sum_{q < kb} a[ra * lda + q] * b[q * ldb + c],   c < nb.
 * a, b and o point at the first column of the blocks concerned.  fetch, if not NULL, is
 * advanced by one line per step of the inner loop.
 */
static void WSUF(gemm_rows)(ptrdiff_t nrows, const REAL *a, ptrdiff_t lda,
                            const ptrdiff_t *arows, const WREAL *b, ptrdiff_t ldb, int kb,
                            int nb, REAL *o, ptrdiff_t ldo, const ptrdiff_t *orows,
                            condnn_stream *fetch) {
    const REAL *ap[CONDNN_MR];
    REAL *op[CONDNN_MR];
    if (fetch && fetch->rows > 0) {
        int rest = (int)(nrows % CONDNN_MR);
        condnn_stream_pace(fetch, (ptrdiff_t)kb * ((nrows / CONDNN_MR)
                                                   * WSUF(column_tiles)(CONDNN_MR, nb)
                                                   + (rest ? WSUF(column_tiles)(rest, nb) : 0)));
    }
    for (ptrdiff_t t = 0; t < nrows; t += CONDNN_MR) {
        int mr = nrows - t < CONDNN_MR ? (int)(nrows - t) : CONDNN_MR;
        for (int r = 0; r < mr; r++) {
            ap[r] = a + (arows ? arows[t + r] : t + r) * lda;
            op[r] = o + (orows ? orows[t + r] : t + r) * ldo;
        }
        /* The rows of the next tile are scattered in memory: ask for them now so that
         * they arrive while this tile computes. */
        for (ptrdiff_t u = t + CONDNN_MR; u < nrows && u < t + 2 * CONDNN_MR; u++) {
            condnn_prefetch(a + (arows ? arows[u] : u) * lda, kb * sizeof(REAL));
            condnn_prefetch(o + (orows ? orows[u] : u) * ldo, nb * sizeof(REAL));
        }
        switch (mr) {
            case 6: WSUF(rows_block)(6, ap, b, ldb, kb, nb, op, fetch); break;
            case 5: WSUF(rows_block)(5, ap, b, ldb, kb, nb, op, fetch); break;
            case 4: WSUF(rows_block)(4, ap, b, ldb, kb, nb, op, fetch); break;
            case 3: WSUF(rows_block)(3, ap, b, ldb, kb, nb, op, fetch); break;
            case 2: WSUF(rows_block)(2, ap, b, ldb, kb, nb, op, fetch); break;
            default: WSUF(rows_block)(1, ap, b, ldb, kb, nb, op, fetch); break;
        }
    }
}
