/*
 * Register-blocked micro-kernels of the block-sparse product, for float and double.
 *
 * They work on lists of row indices: the rows of one (input block, output block) pair are
 * processed together so that each block of the weight matrix, once in cache, is reused by
 * every row that needs it.  Written with GCC/Clang vector extensions, so the compiler emits
 * AVX2, AVX-512 or NEON code for whatever target it builds for.  The callers in _sparse.pyx
 * validate every index and extent: there are no checks here.
 */
#ifndef CONDNN_MICROKERNELS_H
#define CONDNN_MICROKERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if !defined(__GNUC__) && !defined(__clang__)
#error "condnn's kernels need GCC or Clang (vector extensions)"
#endif

#define CONDNN_INLINE static inline __attribute__((always_inline))

/* Asks for the cache lines of [p, p + bytes) ahead of use.  Rows of the operands lie a
 * large power-of-two stride apart, across pages, where the hardware prefetchers do not look;
 * without this every gathered row waits for memory in turn. */
CONDNN_INLINE void condnn_prefetch(const void *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch((const char *)p + off, 0, 3);
}

/*
 * The cache lines of the blocks of weights needed next, fetched into the outer caches one
 * per step of the micro-kernels' inner loop, so that the fetches are spread over the
 * arithmetic.  Issued all at once before the arithmetic, a block's 256 or more prefetches
 * stall the core while they wait for room in the load queue: at batch 1024, density 0.1
 * and 64x64 blocks, spreading them made the product 1.5x faster.  Fields: the row being
 * fetched, the bytes between rows, the next line of that row and the lines per row, the
 * rows left (0: nothing to fetch), the lines fetched per step (see condnn_stream_pace),
 * and a second stretch of rows (another block, with the same stride) fetched after the
 * first: its first line, lines per row and rows (then NULL: none).
 */
typedef struct {
    const char *row;
    ptrdiff_t stride;
    int line, lines, rows, per_step;
    const char *then;
    int then_lines, then_rows;
} condnn_stream;

/* Starts fetching rows x bytes of memory laid out stride bytes apart. */
CONDNN_INLINE void condnn_stream_start(condnn_stream *s, const void *p, ptrdiff_t stride,
                                       int rows, size_t bytes) {
    size_t misalignment = (size_t)p & 63;
    s->row = (const char *)p - misalignment;
    s->stride = stride;
    s->line = 0;
    s->lines = (int)((misalignment + bytes + 63) / 64);
    s->rows = rows;
    s->per_step = 1;
    s->then = NULL;
    s->then_lines = s->then_rows = 0;
}

/* Queues rows x bytes at p, stride bytes apart as the first stretch's, after it. */
CONDNN_INLINE void condnn_stream_then(condnn_stream *s, const void *p, int rows,
                                      size_t bytes) {
    size_t misalignment = (size_t)p & 63;
    s->then = (const char *)p - misalignment;
    s->then_lines = (int)((misalignment + bytes + 63) / 64);
    s->then_rows = rows;
}

/* Moves on to the queued stretch, if there is one, when the first is done. */
CONDNN_INLINE void condnn_stream_next(condnn_stream *s) {
    if (s->rows <= 0 && s->then) {
        s->row = s->then;
        s->lines = s->then_lines;
        s->rows = s->then_rows;
        s->line = 0;
        s->then = NULL;
    }
}

/* Spreads what is left to fetch over the next steps steps of arithmetic.  A block of few
 * rows takes fewer steps than the next block of weights has lines (with AVX-512's wide
 * tiles, a quarter as many at batch 64), and the lines left over, issued in a burst at
 * the end, made the product at batch 64 a sixth slower. */
CONDNN_INLINE void condnn_stream_pace(condnn_stream *s, ptrdiff_t steps) {
    if (s->rows <= 0 || steps <= 0) return;
    ptrdiff_t left = (ptrdiff_t)s->rows * s->lines - s->line
                     + (s->then ? (ptrdiff_t)s->then_rows * s->then_lines : 0);
    s->per_step = (int)((left + steps - 1) / steps);
}

CONDNN_INLINE void condnn_stream_step(condnn_stream *s) {
    if (s->rows > 0) {
        int lines = s->per_step;
        do {
            __builtin_prefetch(s->row + 64 * s->line, 0, 1);
            if (++s->line == s->lines) {
                s->line = 0;
                s->row += s->stride;
                s->rows--;
                condnn_stream_next(s);
            }
        } while (--lines > 0 && s->rows > 0);
    }
}

/* Issues whatever the arithmetic left unfetched. */
CONDNN_INLINE void condnn_stream_finish(condnn_stream *s) {
    do {
        for (; s->rows > 0; s->rows--, s->row += s->stride, s->line = 0)
            for (int line = s->line; line < s->lines; line++)
                __builtin_prefetch(s->row + 64 * line, 0, 1);
        condnn_stream_next(s);
    } while (s->rows > 0);
}

/* Rows ahead that are prefetched when rows are gathered or a block is packed. */
#define CONDNN_PREFETCH_AHEAD 8

/*
 * The vector unit.  With AVX-512 the vectors are 64 bytes and there are 32 of them, so a
 * tile holds twice the accumulators; elsewhere (AVX2, NEON, the compiler's generic code)
 * they are 32 bytes, 16 registers.  On a core whose dense BLAS runs 512-bit FMAs, kernels
 * of half that width ran at about half its speed.
 */
#if defined(__AVX512F__) && defined(__FMA__)
#define CONDNN_AVX512 1
#define CONDNN_VECTOR_BYTES 64
#define CONDNN_TILE_ACCUMULATORS 24
#else
#define CONDNN_VECTOR_BYTES 32
#define CONDNN_TILE_ACCUMULATORS 12
#endif

/* Rows of a tile: 6 rows x 2 vectors of accumulators fill 12 of the 16 vector registers
 * of AVX2 (6 x 4 fill 24 of AVX-512's 32), leaving room for the weight vectors and the
 * broadcast operand. */
#define CONDNN_MR 6
/* The most vectors of columns in a tile (for tiles of a single row). */
#define CONDNN_NV_MAX 8
/* The vectors of columns in a tile of mr rows: as many as the accumulators allow, to 8. */
#define CONDNN_WIDE(mr) \
    ((mr) == 1 || CONDNN_TILE_ACCUMULATORS / (mr) >= 8 ? 8 \
     : CONDNN_TILE_ACCUMULATORS / (mr) >= 4 ? 4 : 2)
/* The bytes of columns that a full tile of CONDNN_MR rows spans: 256 with AVX-512, 64
 * elsewhere. */
#define CONDNN_TILE_BYTES (CONDNN_WIDE(CONDNN_MR) * CONDNN_VECTOR_BYTES)

/*
 * Multiply-adds.  On x86 with FMA they are fused explicitly (intrinsics) and the compiler
 * fuses nothing on its own (setup.py builds with -ffp-contract=off there): left to it, GCC
 * fused some loops and not others (its tuning for AMD Zen keeps single accumulator chains
 * unfused) and judged the copies of a loop made for the prefetch stream differently, so a
 * product rounded one way or the other with the address of the next weight block.  Other
 * targets write x * y + z and the compiler contracts it as its flags say.
 * FMA(x, y, z) = x * y + z for scalars; VFMA(x, y, z) for vectors; VFMA1 with y a scalar.
 */
#if defined(__FMA__) && defined(__AVX__)
#include <immintrin.h>
#define CONDNN_FMA_float(x, y, z) __builtin_fmaf((x), (y), (z))
#define CONDNN_FMA_double(x, y, z) __builtin_fma((x), (y), (z))
#if defined(CONDNN_AVX512)
#define CONDNN_VFMA_float(x, y, z) \
    ((condnn_vf32)_mm512_fmadd_ps((__m512)(x), (__m512)(y), (__m512)(z)))
#define CONDNN_VFMA_double(x, y, z) \
    ((condnn_vf64)_mm512_fmadd_pd((__m512d)(x), (__m512d)(y), (__m512d)(z)))
#define CONDNN_SET1_float _mm512_set1_ps
#define CONDNN_SET1_double _mm512_set1_pd
/* The first w lanes of a vector, loaded or stored under a mask: a tile's last columns
 * without a loop over them, and without touching memory past them. */
#define CONDNN_FIRST_float(w) ((__mmask16)((1u << (w)) - 1))
#define CONDNN_FIRST_double(w) ((__mmask8)((1u << (w)) - 1))
#define CONDNN_LOAD_FIRST_float(p, w) \
    ((condnn_vf32)_mm512_maskz_loadu_ps(CONDNN_FIRST_float(w), (p)))
#define CONDNN_LOAD_FIRST_double(p, w) \
    ((condnn_vf64)_mm512_maskz_loadu_pd(CONDNN_FIRST_double(w), (p)))
#define CONDNN_STORE_FIRST_float(p, v, w) \
    _mm512_mask_storeu_ps((p), CONDNN_FIRST_float(w), (__m512)(v))
#define CONDNN_STORE_FIRST_double(p, v, w) \
    _mm512_mask_storeu_pd((p), CONDNN_FIRST_double(w), (__m512d)(v))
#else
#define CONDNN_VFMA_float(x, y, z) \
    ((condnn_vf32)_mm256_fmadd_ps((__m256)(x), (__m256)(y), (__m256)(z)))
#define CONDNN_VFMA_double(x, y, z) \
    ((condnn_vf64)_mm256_fmadd_pd((__m256d)(x), (__m256d)(y), (__m256d)(z)))
#define CONDNN_SET1_float _mm256_set1_ps
#define CONDNN_SET1_double _mm256_set1_pd
#endif
#define CONDNN_VFMA1_float(x, y, z) CONDNN_VFMA_float((x), CONDNN_SET1_float(y), (z))
#define CONDNN_VFMA1_double(x, y, z) CONDNN_VFMA_double((x), CONDNN_SET1_double(y), (z))
#else
#define CONDNN_FMA_float(x, y, z) ((x) * (y) + (z))
#define CONDNN_FMA_double(x, y, z) ((x) * (y) + (z))
#define CONDNN_VFMA_float(x, y, z) ((x) * (y) + (z))
#define CONDNN_VFMA_double(x, y, z) ((x) * (y) + (z))
#define CONDNN_VFMA1_float(x, y, z) ((x) * (y) + (z))
#define CONDNN_VFMA1_double(x, y, z) ((x) * (y) + (z))
#endif

#define REAL float
#define FMA CONDNN_FMA_float
#define VFMA CONDNN_VFMA_float
#define VFMA1 CONDNN_VFMA1_float
#define LOAD_FIRST CONDNN_LOAD_FIRST_float
#define STORE_FIRST CONDNN_STORE_FIRST_float
#define VEC condnn_vf32
#define SUF(name) name##_f32
#include "_microkernels_impl.h"

/*
 * Float inputs with weights stored as IEEE half-precision numbers (uint16_t bit patterns),
 * for frozen copies of a model: half the bytes to read, and at small batches the product
 * waits on nothing else.  The conversion to float is exact, by the F16C instruction where
 * the target has it and by the bits otherwise.
 */
#if defined(__F16C__)
#include <immintrin.h>
CONDNN_INLINE float condnn_half_to_float(const uint16_t *p) { return _cvtsh_ss(*p); }
CONDNN_INLINE condnn_vf32 condnn_load_halves(const uint16_t *p) {
#if defined(CONDNN_AVX512)
    return (condnn_vf32)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#else
    return (condnn_vf32)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#endif
}
#else
CONDNN_INLINE float condnn_half_to_float(const uint16_t *p) {
    uint32_t h = *p, sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff, bits;
    float f;
    if (exponent == 0) {         /* zero or subnormal: mantissa * 2^-24, exactly */
        f = (float)mantissa * 0x1p-24f;
        return sign ? -f : f;
    }
    if (exponent == 0x1f)        /* inf or NaN */
        bits = sign | 0x7f800000u | (mantissa << 13);
    else
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    memcpy(&f, &bits, sizeof f);
    return f;
}
CONDNN_INLINE condnn_vf32 condnn_load_halves(const uint16_t *p) {
    condnn_vf32 v;
    for (int i = 0; i < (int)(sizeof v / sizeof(float)); i++) v[i] = condnn_half_to_float(p + i);
    return v;
}
#endif

/* The first w < VLEN halves at p, converted, in the low lanes; 0 in the others. */
CONDNN_INLINE condnn_vf32 condnn_load_halves_first(const uint16_t *p, int w) {
#if defined(CONDNN_AVX512) && defined(__AVX512BW__) && defined(__AVX512VL__)
    return (condnn_vf32)_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(CONDNN_FIRST_float(w), p));
#else
    condnn_vf32 v = {0};
    for (int i = 0; i < w; i++) v[i] = condnn_half_to_float(p + i);
    return v;
#endif
}

#define VLEN ((int)(sizeof(VEC) / sizeof(REAL)))
#define WREAL uint16_t
#define WSUF(name) name##_f32h
#define WLOADV condnn_load_halves
#define WLOADFIRST condnn_load_halves_first
#include "_microkernels_rows.h"
#undef WREAL
#undef WSUF
#undef WLOADV
#undef WLOADFIRST
#undef VLEN

#undef REAL
#undef FMA
#undef VFMA
#undef VFMA1
#undef LOAD_FIRST
#undef STORE_FIRST
#undef VEC
#undef SUF

#define REAL double
#define FMA CONDNN_FMA_double
#define VFMA CONDNN_VFMA_double
#define VFMA1 CONDNN_VFMA1_double
#define LOAD_FIRST CONDNN_LOAD_FIRST_double
#define STORE_FIRST CONDNN_STORE_FIRST_double
#define VEC condnn_vf64
#define SUF(name) name##_f64
#include "_microkernels_impl.h"
#undef REAL
#undef FMA
#undef VFMA
#undef VFMA1
#undef LOAD_FIRST
#undef STORE_FIRST
#undef VEC
#undef SUF

#endif
