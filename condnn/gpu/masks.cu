// Mask bookkeeping and element-wise kernels of the block-sparse product.
//
// A block mask is an (n, nb) row-major array of bytes; entry (i, p) switches the bs columns
// p*bs .. p*bs+bs-1 of row i on (nonzero) or off (0).  Matrices are row-major with a row pitch
// (ld) in elements.  Element-wise kernels use a 2-D grid: x over columns (blockDim.x threads
// each), y strided over rows, so no 64-bit division is needed per element.

// ---------------------------------------------------------------------------------------
// Index lists of one mask, built on the device: for every mask column (block) j,
//   rows[j * n + 0 .. counts[j]-1]  the rows i with mask[i, j] on, in increasing order;
//   bits[j * nwords + w]             bit t set iff mask[32*w + t, j] is on.
// Either output may be null.  One thread block per mask column; 256 threads.
extern "C" __global__ void __launch_bounds__(256) mask_index(
    const unsigned char* __restrict__ mask, int n, int nb,
    int* __restrict__ rows, int* __restrict__ counts,
    unsigned* __restrict__ bits, int nwords)
{
    __shared__ int s_cnt[8];
    const int j = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int base = 0;                              // rows listed so far; the same in every thread
    for (int i0 = 0; i0 < n; i0 += 256) {
        const int i = i0 + tid;
        const bool on = i < n && mask[(long long)i * nb + j] != 0;
        const unsigned bal = __ballot_sync(0xffffffffu, on);
        const int w = (i0 >> 5) + warp;
        if (lane == 0) {
            s_cnt[warp] = __popc(bal);
            if (bits && w < nwords) bits[(long long)j * nwords + w] = bal;
        }
        __syncthreads();
        int before = 0, total = 0;
        for (int s = 0; s < 8; ++s) {
            const int cnt = s_cnt[s];
            if (s < warp) before += cnt;
            total += cnt;
        }
        if (on && rows)
            rows[(long long)j * n + base + before + __popc(bal & ((1u << lane) - 1u))] = i;
        base += total;
        __syncthreads();                       // s_cnt is read by all before it is rewritten
    }
    if (tid == 0 && counts) counts[j] = base;
}

// Sets bit `bit` of *flag if any of the `size` mask bytes is neither 0 nor 1.
extern "C" __global__ void __launch_bounds__(256) check_mask_values(
    const unsigned char* __restrict__ mask, long long size, int* __restrict__ flag, int bit)
{
    int bad = 0;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < size;
         e += (long long)gridDim.x * blockDim.x)
        bad |= mask[e] > 1;
    if (__syncthreads_or(bad) && threadIdx.x == 0) atomicOr(flag, bit);
}

// ---------------------------------------------------------------------------------------
// dst = where(mask, src, 0), block-wise.  Inactive entries of src are not read.
template <typename T>
__device__ __forceinline__ void masked_copy(
    T* __restrict__ dst, long long ldd, const T* __restrict__ src, long long lds,
    const unsigned char* __restrict__ mask, int nb, int rows, int cols, int bs)
{
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    const int blk = col / bs;
    for (int i = blockIdx.y; i < rows; i += gridDim.y) {
        T v = T(0);
        if (mask[(long long)i * nb + blk] != 0) v = src[(long long)i * lds + col];
        dst[(long long)i * ldd + col] = v;
    }
}

// o = (o + c) where the mask is on, 0 elsewhere; mask null = all on, c null = no bias.
// The dense GEMM result is finished with this: its inactive entries are overwritten, never
// used, so whatever the GEMM computed there (NaN included) does not leak.
template <typename T>
__device__ __forceinline__ void mask_epilogue(
    T* __restrict__ o, long long ldo, const unsigned char* __restrict__ mask, int nb,
    const T* __restrict__ c, int rows, int cols, int bs)
{
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    const int blk = col / bs;
    const T bias = c ? c[col] : T(0);
    for (int i = blockIdx.y; i < rows; i += gridDim.y) {
        T* dst = &o[(long long)i * ldo + col];
        if (mask && mask[(long long)i * nb + blk] == 0)
            *dst = T(0);
        else if (c)
            *dst += bias;
    }
}

// o = 0 where the mask is off; active entries are neither read nor written.
template <typename T>
__device__ __forceinline__ void zero_inactive(
    T* __restrict__ o, long long ldo, const unsigned char* __restrict__ mask, int nb,
    int rows, int cols, int bs)
{
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    const int blk = col / bs;
    for (int i = blockIdx.y; i < rows; i += gridDim.y)
        if (mask[(long long)i * nb + blk] == 0) o[(long long)i * ldo + col] = T(0);
}

// ---------------------------------------------------------------------------------------
// Column sums of g masked by the block mask (null: all on), in two deterministic passes:
// colsum_partial sums segments of rows_per_seg rows into partial[seg, col] (block (32, 8),
// grid (ceil(m / 32), nseg)); colsum_final adds the segments in order.  Inactive entries of g
// are not read.
template <typename T>
__device__ __forceinline__ void colsum_partial(
    const T* __restrict__ g, long long ldg, const unsigned char* __restrict__ mask, int nb,
    int n, int m, int bs, int rows_per_seg, T* __restrict__ partial)
{
    __shared__ T s[8][33];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int col = blockIdx.x * 32 + tx;
    const int seg = blockIdx.y;
    const int r0 = seg * rows_per_seg;
    const int r1 = min(n, r0 + rows_per_seg);
    T acc = T(0);
    if (col < m) {
        const int blk = col / bs;
        for (int i = r0 + ty; i < r1; i += 8)
            if (!mask || mask[(long long)i * nb + blk] != 0) acc += g[(long long)i * ldg + col];
    }
    s[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && col < m) {
        T t = T(0);
        for (int y = 0; y < 8; ++y) t += s[y][tx];
        partial[(long long)seg * m + col] = t;
    }
}

template <typename T>
__device__ __forceinline__ void colsum_final(
    const T* __restrict__ partial, int nseg, int m, T* __restrict__ out)
{
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= m) return;
    T t = T(0);
    for (int s = 0; s < nseg; ++s) t += partial[(long long)s * m + col];
    out[col] = t;
}

// ---------------------------------------------------------------------------------------
#define ELEMENTWISE(SUFFIX, T)                                                              \
    extern "C" __global__ void __launch_bounds__(256) masked_copy_##SUFFIX(                 \
        T* __restrict__ dst, long long ldd, const T* __restrict__ src, long long lds,       \
        const unsigned char* __restrict__ mask, int nb, int rows, int cols, int bs) {        \
        masked_copy<T>(dst, ldd, src, lds, mask, nb, rows, cols, bs);                        \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) mask_epilogue_##SUFFIX(               \
        T* __restrict__ o, long long ldo, const unsigned char* __restrict__ mask, int nb,    \
        const T* __restrict__ c, int rows, int cols, int bs) {                              \
        mask_epilogue<T>(o, ldo, mask, nb, c, rows, cols, bs);                               \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) zero_inactive_##SUFFIX(               \
        T* __restrict__ o, long long ldo, const unsigned char* __restrict__ mask, int nb,    \
        int rows, int cols, int bs) {                                                       \
        zero_inactive<T>(o, ldo, mask, nb, rows, cols, bs);                                  \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) colsum_partial_##SUFFIX(              \
        const T* __restrict__ g, long long ldg, const unsigned char* __restrict__ mask,      \
        int nb, int n, int m, int bs, int rows_per_seg, T* __restrict__ partial) {          \
        colsum_partial<T>(g, ldg, mask, nb, n, m, bs, rows_per_seg, partial);                \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) colsum_final_##SUFFIX(                \
        const T* __restrict__ partial, int nseg, int m, T* __restrict__ out) {              \
        colsum_final<T>(partial, nseg, m, out);                                              \
    }

ELEMENTWISE(f32, float)
ELEMENTWISE(f64, double)
