// Block-sparse products on the GPU: the forward product and the weight gradient.
//
// O = (dot(A * Am, B) + c) * Om, where mask entry (i, p) switches the block_size (bs)
// consecutive columns p*bs .. p*bs+bs-1 of row i on or off.  All matrices are row-major.
//
// Determinism: every output element is summed by one thread, over the input blocks (or the
// rows) in increasing order, so results do not depend on scheduling.  No float atomics.
//
// Never-read guarantee: entries of A (and of the gradient) in inactive blocks are not loaded;
// out-of-range tile slots are filled with zeros, never with stale shared memory, so that
// NaN or inf cannot leak into active outputs through padding.
//
// The kernels are templates instantiated below under extern "C" names (the module is built
// with no_extern_c); the host-side table of tile sizes in condnn/gpu/_plan.py must match the
// instantiations at the end of this file.

// ---------------------------------------------------------------------------------------
// Shared-memory vector loads: W consecutive elements, 16- or 8-byte aligned by construction
// (every tile pitch and thread offset below is a multiple of W elements).

template <typename T, int W> struct Vec;

template <> struct Vec<float, 4> {
    static __device__ __forceinline__ void load(const float* p, float (&v)[4]) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
    }
    static __device__ __forceinline__ void store(float* p, const float (&v)[4]) {
        *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    }
};

template <> struct Vec<double, 4> {
    static __device__ __forceinline__ void load(const double* p, double (&v)[4]) {
        const double2 t0 = reinterpret_cast<const double2*>(p)[0];
        const double2 t1 = reinterpret_cast<const double2*>(p)[1];
        v[0] = t0.x; v[1] = t0.y; v[2] = t1.x; v[3] = t1.y;
    }
    static __device__ __forceinline__ void store(double* p, const double (&v)[4]) {
        reinterpret_cast<double2*>(p)[0] = make_double2(v[0], v[1]);
        reinterpret_cast<double2*>(p)[1] = make_double2(v[2], v[3]);
    }
};

// ---------------------------------------------------------------------------------------
// Forward product over active block pairs.
//
// One thread block computes the output columns n0 .. n0+TN-1 of output block j for a tile of
// up to R rows taken from the device-built list of rows where Om[:, j] is on (rows == null:
// all rows, the fs/dense case).  For each input block p it compacts, in shared memory, the
// tile rows where Am[row, p] is on, gathers those rows' A block into shared memory in chunks
// of CH rows, multiplies them with the B tile B[p-block, n0..n0+TN) and adds the products to
// per-row accumulators kept in shared memory.  So the B tile is loaded once per (tile, p) and
// reused by every tile row that needs it, and only rows with both blocks on do arithmetic.
//
// TRANS_B reads b as the transpose of a row-major (m, k) matrix: this is the input gradient
// da = (G @ B.T) masked by Am, an ss product with input mask Om and output mask Am.
//
// Grid: x = row tile (ceil(n / R), tiles past the list's end exit at once), y + z * gridDim.y
// = column tile (output block j, sub-tile n0).  Row tiles of one column tile are adjacent in
// launch order, so they share the B panel through L2.
//
// Every row of the tile is written at the end, for the TN columns (bias added); inactive
// output blocks are zeroed by a separate kernel.
template <typename T, int R, int TN, int KT, int CH, int TM, int TNR, bool TRANS_B>
__device__ __forceinline__ void ss_forward_tile(
    const T* __restrict__ a, long long lda,            // (n, k)
    const unsigned char* __restrict__ amask,           // (n, kb) or null: all on
    const T* __restrict__ b, long long ldb,            // (k, m), or (m, k) if TRANS_B
    const int* __restrict__ rows,                      // (mb, n) active rows per output block
    const int* __restrict__ counts,                    // (mb) list lengths; both null: all rows
    const T* __restrict__ c,                           // (m) bias or null
    T* __restrict__ o, long long ldo,                  // (n, m)
    int n, int k, int m, int kb, int mb, int bs, int col_tiles)
{
    constexpr int TX = TN / TNR;               // threads along the tile's columns
    constexpr int TY = CH / TM;                // threads along the gathered rows
    constexpr int NT = TX * TY;                // threads per block (blockDim.x)
    constexpr int NW = NT / 32;
    constexpr int FLAGS = R / NT;              // tile rows each thread tests per input block
    constexpr int SA = KT + 4;                 // padded pitches keep rows 16-byte aligned
    constexpr int SB = TN + 4;
    constexpr int ROWS_PER_WARP = (32 / TX) * TM;
    static_assert(TM == 4 && TNR == 4, "the micro-kernel loads 4-wide vectors");
    static_assert(NT % 32 == 0 && R % NT == 0 && 32 % TX == 0 && KT % 4 == 0, "tile shape");

    __shared__ int s_rows[R];                  // global row of each tile row
    __shared__ int s_sel[R];                   // tile rows active for the current input block
    __shared__ int s_cnt[R / 32];              // active rows per (flag slot, warp) segment
    __shared__ __align__(16) T s_acc[R * TN];  // per-row accumulators of the output tile
    __shared__ __align__(16) T s_a[CH * SA];   // gathered A rows: s_a[q][kk]
    __shared__ __align__(16) T s_b[KT * SB];   // B tile: s_b[kk][col]

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int tx = tid % TX, ty = tid / TX;

    const long long ct = blockIdx.y + (long long)blockIdx.z * gridDim.y;
    if (ct >= (long long)mb * col_tiles) return;
    const int j = (int)(ct / col_tiles);
    const int n0 = (int)(ct % col_tiles) * TN;
    const int count = rows ? counts[j] : n;
    const int start = blockIdx.x * R;
    if (start >= count) return;                // uniform over the block
    const int tile_rows = min(R, count - start);

    for (int l = tid; l < R; l += NT)
        s_rows[l] = l < tile_rows ? (rows ? rows[(long long)j * n + start + l] : start + l) : 0;
    for (int e = tid; e < R * TN; e += NT) s_acc[e] = T(0);
    __syncthreads();

    // Mask bytes of the next input block are loaded one iteration ahead, so their latency
    // overlaps the current block's arithmetic.
    bool f_next[FLAGS];
#pragma unroll
    for (int h = 0; h < FLAGS; ++h) {
        const int l = h * NT + tid;
        f_next[h] = l < tile_rows && kb > 0 &&
                    (!amask || amask[(long long)s_rows[l] * kb] != 0);
    }

    for (int p = 0; p < kb; ++p) {
        bool f[FLAGS];
        unsigned bal[FLAGS];
#pragma unroll
        for (int h = 0; h < FLAGS; ++h) {
            f[h] = f_next[h];
            const int l = h * NT + tid;
            f_next[h] = l < tile_rows && p + 1 < kb &&
                        (!amask || amask[(long long)s_rows[l] * kb + p + 1] != 0);
            bal[h] = __ballot_sync(0xffffffffu, f[h]);
            if (lane == 0) s_cnt[h * NW + warp] = __popc(bal[h]);
        }
        __syncthreads();

        // Exclusive scan over the R/32 segments, in tile-row order (segment h*NW + warp holds
        // tile rows h*NT + warp*32 .. +31), so s_sel lists active rows in increasing order.
        int total = 0;
        int before[FLAGS];
#pragma unroll
        for (int h = 0; h < FLAGS; ++h) before[h] = 0;
        for (int s = 0; s < R / 32; ++s) {
            const int cnt = s_cnt[s];
#pragma unroll
            for (int h = 0; h < FLAGS; ++h)
                if (s < h * NW + warp) before[h] += cnt;
            total += cnt;
        }
        const unsigned lanes_below = (1u << lane) - 1u;
#pragma unroll
        for (int h = 0; h < FLAGS; ++h)
            if (f[h]) s_sel[before[h] + __popc(bal[h] & lanes_below)] = h * NT + tid;
        __syncthreads();

        for (int c0 = 0; c0 < total; c0 += CH) {
            const int nch = min(CH, total - c0);
            T acc[TM][TNR];
#pragma unroll
            for (int r = 0; r < TM; ++r)
#pragma unroll
                for (int cc = 0; cc < TNR; ++cc) acc[r][cc] = T(0);

            for (int kt = 0; kt < bs; kt += KT) {
                for (int e = tid; e < CH * KT; e += NT) {
                    const int q = e / KT, kk = e % KT;
                    const int kcol = p * bs + kt + kk;
                    T v = T(0);
                    if (q < nch && kt + kk < bs && kcol < k)
                        v = a[(long long)s_rows[s_sel[c0 + q]] * lda + kcol];
                    s_a[q * SA + kk] = v;
                }
                for (int e = tid; e < KT * TN; e += NT) {
                    // Consecutive threads walk the unit-stride axis of b.
                    const int kk = TRANS_B ? e % KT : e / TN;
                    const int cc = TRANS_B ? e / KT : e % TN;
                    const int krow = p * bs + kt + kk;
                    const int col = j * bs + n0 + cc;
                    T v = T(0);
                    if (kt + kk < bs && krow < k && n0 + cc < bs && col < m)
                        v = TRANS_B ? b[(long long)col * ldb + krow]
                                    : b[(long long)krow * ldb + col];
                    s_b[kk * SB + cc] = v;
                }
                __syncthreads();
                // Warps whose rows are all past the chunk's end skip the arithmetic.
                if (warp * ROWS_PER_WARP < nch) {
#pragma unroll
                    for (int kk = 0; kk < KT; kk += 4) {
                        T av[TM][4];
#pragma unroll
                        for (int r = 0; r < TM; ++r)
                            Vec<T, 4>::load(&s_a[(ty * TM + r) * SA + kk], av[r]);
#pragma unroll
                        for (int u = 0; u < 4; ++u) {
                            T bv[TNR];
                            Vec<T, 4>::load(&s_b[(kk + u) * SB + tx * TNR], bv);
#pragma unroll
                            for (int r = 0; r < TM; ++r)
#pragma unroll
                                for (int cc = 0; cc < TNR; ++cc)
                                    acc[r][cc] = fma(av[r][u], bv[cc], acc[r][cc]);
                        }
                    }
                }
                __syncthreads();
            }
            // Each gathered row belongs to one thread row, so these updates never collide.
#pragma unroll
            for (int r = 0; r < TM; ++r) {
                const int q = ty * TM + r;
                if (q < nch) {
                    T* dst = &s_acc[s_sel[c0 + q] * TN + tx * TNR];
                    T cur[TNR];
                    Vec<T, 4>::load(dst, cur);
#pragma unroll
                    for (int cc = 0; cc < TNR; ++cc) cur[cc] += acc[r][cc];
                    Vec<T, 4>::store(dst, cur);
                }
            }
        }
    }
    __syncthreads();

    for (int e = tid; e < tile_rows * TN; e += NT) {
        const int l = e / TN, cc = e % TN;
        const int col = j * bs + n0 + cc;
        if (n0 + cc < bs && col < m) {
            T v = s_acc[l * TN + cc];
            if (c) v += c[col];
            o[(long long)s_rows[l] * ldo + col] = v;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Weight gradient db = (A masked by Am).T @ (G masked by Om), shape (k, m).
//
// One thread block owns the DM x TN sub-tile (r0, n0) of db block (p, j) and keeps it in
// registers.  The rows that contribute are those where Am[i, p] and Om[i, j] are both on: the
// AND of two device-built column bitsets, compacted 1024 rows at a time by warp 0 into a ring
// buffer of row indices.  Rows are consumed in increasing order in chunks of CHR: A[rows,
// p-block] and G[rows, j-block] are gathered into shared memory and each thread adds its
// TM x TNR outer products.  Every element of db is written exactly once (zero when no row
// contributes), so db needs no initialisation.
//
// Grid: x = row tile (kb * ceil(bs / DM)), y + z * gridDim.y = column tile (mb * col_tiles).
template <typename T, int DM, int TN, int CHR, int TM, int TNR>
__device__ __forceinline__ void ss_weight_grad_tile(
    const T* __restrict__ a, long long lda,            // (n, k)
    const T* __restrict__ g, long long ldg,            // (n, m)
    const unsigned* __restrict__ abits,                // (kb, nwords) rows with Am on, or null
    const unsigned* __restrict__ obits,                // (mb, nwords) rows with Om on, or null
    T* __restrict__ db, long long lddb,                // (k, m)
    int n, int k, int m, int mb, int bs, int row_tiles, int col_tiles)
{
    constexpr int TX = TN / TNR;
    constexpr int TY = DM / TM;
    constexpr int NT = TX * TY;
    constexpr int SGA = DM + 4;
    constexpr int SGG = TN + 4;
    constexpr int RING = 2048;                 // > CHR + 32 * 32: one compaction never overruns
    static_assert(TM == 4 && TNR == 4, "the micro-kernel loads 4-wide vectors");
    static_assert(NT % 32 == 0 && CHR + 1024 <= RING, "tile shape");

    __shared__ int s_ring[RING];
    __shared__ int s_new;
    __shared__ __align__(16) T s_ga[CHR * SGA];   // s_ga[q][kk] = A[row_q, p*bs + r0 + kk]
    __shared__ __align__(16) T s_gg[CHR * SGG];   // s_gg[q][cc] = G[row_q, j*bs + n0 + cc]

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int tx = tid % TX, ty = tid / TX;

    const long long ct = blockIdx.y + (long long)blockIdx.z * gridDim.y;
    if (ct >= (long long)mb * col_tiles) return;
    const int j = (int)(ct / col_tiles);
    const int n0 = (int)(ct % col_tiles) * TN;
    const int p = (int)(blockIdx.x / row_tiles);
    const int r0 = (int)(blockIdx.x % row_tiles) * DM;
    const int nwords = (n + 31) >> 5;

    T acc[TM][TNR];
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
        for (int cc = 0; cc < TNR; ++cc) acc[r][cc] = T(0);

    // head/tail count rows taken from / put into the ring; identical in every thread.
    int head = 0, tail = 0, w0 = 0;
    for (;;) {
        while (tail - head < CHR && w0 < nwords) {
            if (warp == 0) {
                const int w = w0 + lane;
                unsigned bits = 0u;
                if (w < nwords) {
                    bits = (w == nwords - 1 && (n & 31)) ? ((1u << (n & 31)) - 1u) : 0xffffffffu;
                    if (abits) bits &= abits[(long long)p * nwords + w];
                    if (obits) bits &= obits[(long long)j * nwords + w];
                }
                const int cnt = __popc(bits);
                int incl = cnt;
#pragma unroll
                for (int d = 1; d < 32; d <<= 1) {
                    const int v = __shfl_up_sync(0xffffffffu, incl, d);
                    if (lane >= d) incl += v;
                }
                int pos = tail + incl - cnt;
                while (bits) {
                    const int bit = __ffs(bits) - 1;
                    s_ring[pos & (RING - 1)] = w * 32 + bit;
                    ++pos;
                    bits &= bits - 1u;
                }
                if (lane == 31) s_new = incl;
            }
            __syncthreads();
            tail += s_new;
            w0 += 32;
            __syncthreads();                   // s_new is read by all before it is rewritten
        }
        const int nch = min(CHR, tail - head);
        if (nch == 0) break;                   // uniform: head, tail are the same everywhere

        for (int e = tid; e < CHR * DM; e += NT) {
            const int q = e / DM, kk = e % DM;
            const int kcol = p * bs + r0 + kk;
            T v = T(0);
            if (q < nch && r0 + kk < bs && kcol < k)
                v = a[(long long)s_ring[(head + q) & (RING - 1)] * lda + kcol];
            s_ga[q * SGA + kk] = v;
        }
        for (int e = tid; e < CHR * TN; e += NT) {
            const int q = e / TN, cc = e % TN;
            const int col = j * bs + n0 + cc;
            T v = T(0);
            if (q < nch && n0 + cc < bs && col < m)
                v = g[(long long)s_ring[(head + q) & (RING - 1)] * ldg + col];
            s_gg[q * SGG + cc] = v;
        }
        __syncthreads();
#pragma unroll 4
        for (int q = 0; q < CHR; ++q) {
            T av[TM], gv[TNR];
            Vec<T, 4>::load(&s_ga[q * SGA + ty * TM], av);
            Vec<T, 4>::load(&s_gg[q * SGG + tx * TNR], gv);
#pragma unroll
            for (int r = 0; r < TM; ++r)
#pragma unroll
                for (int cc = 0; cc < TNR; ++cc) acc[r][cc] = fma(av[r], gv[cc], acc[r][cc]);
        }
        __syncthreads();
        head += nch;
    }

#pragma unroll
    for (int r = 0; r < TM; ++r) {
        const int row = r0 + ty * TM + r;
        const int krow = p * bs + row;
        if (row < bs && krow < k) {
#pragma unroll
            for (int cc = 0; cc < TNR; ++cc) {
                const int bcol = n0 + tx * TNR + cc;
                const int col = j * bs + bcol;
                if (bcol < bs && col < m) db[(long long)krow * lddb + col] = acc[r][cc];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Instantiations.  Name suffixes: f32 (block_size > 16), f32_narrow (block_size <= 16),
// f64.  Tile sizes: ss_forward R, TN, KT, CH, TM, TNR; ss_weight_grad DM, TN, CHR, TM, TNR.
// Each fits the 48 KiB of static shared memory.

#define SS_FORWARD_ARGS(T)                                                                  \
    const T* __restrict__ a, long long lda, const unsigned char* __restrict__ amask,        \
    const T* __restrict__ b, long long ldb, const int* __restrict__ rows,                   \
    const int* __restrict__ counts, const T* __restrict__ c, T* __restrict__ o,             \
    long long ldo, int n, int k, int m, int kb, int mb, int bs, int col_tiles
#define SS_FORWARD_PASS a, lda, amask, b, ldb, rows, counts, c, o, ldo, n, k, m, kb, mb, bs, col_tiles

#define SS_FORWARD(NAME, T, NT, R, TN, KT, CH, TRANS)                                       \
    extern "C" __global__ void __launch_bounds__(NT) NAME(SS_FORWARD_ARGS(T)) {             \
        ss_forward_tile<T, R, TN, KT, CH, 4, 4, TRANS>(SS_FORWARD_PASS);                     \
    }

SS_FORWARD(ss_forward_f32,           float,  128, 256, 32, 32,  64, false)
SS_FORWARD(ss_forward_bt_f32,        float,  128, 256, 32, 32,  64, true)
SS_FORWARD(ss_forward_f32_narrow,    float,  128, 256, 16, 16, 128, false)
SS_FORWARD(ss_forward_bt_f32_narrow, float,  128, 256, 16, 16, 128, true)
SS_FORWARD(ss_forward_f64,           double, 128, 128, 32, 16,  64, false)
SS_FORWARD(ss_forward_bt_f64,        double, 128, 128, 32, 16,  64, true)

#define SS_WEIGHT_GRAD_ARGS(T)                                                              \
    const T* __restrict__ a, long long lda, const T* __restrict__ g, long long ldg,         \
    const unsigned* __restrict__ abits, const unsigned* __restrict__ obits,                 \
    T* __restrict__ db, long long lddb, int n, int k, int m, int mb, int bs, int row_tiles, \
    int col_tiles
#define SS_WEIGHT_GRAD_PASS a, lda, g, ldg, abits, obits, db, lddb, n, k, m, mb, bs, row_tiles, col_tiles

#define SS_WEIGHT_GRAD(NAME, T, NT, DM, TN, CHR)                                            \
    extern "C" __global__ void __launch_bounds__(NT) NAME(SS_WEIGHT_GRAD_ARGS(T)) {         \
        ss_weight_grad_tile<T, DM, TN, CHR, 4, 4>(SS_WEIGHT_GRAD_PASS);                      \
    }

SS_WEIGHT_GRAD(ss_weight_grad_f32,        float,  128, 64, 32, 32)
SS_WEIGHT_GRAD(ss_weight_grad_f32_narrow, float,   32, 16, 32, 32)
SS_WEIGHT_GRAD(ss_weight_grad_f64,        double, 128, 64, 32, 32)
