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

/* The same into the outer caches only: for data needed after the current block's work. */
CONDNN_INLINE void condnn_prefetch_later(const void *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch((const char *)p + off, 0, 1);
}

/* Rows ahead that are prefetched when rows are gathered or a block is packed. */
#define CONDNN_PREFETCH_AHEAD 8

/* Rows of a tile: 6 rows x 2 vectors of accumulators fill 12 of the 16 vector registers
 * of AVX2, leaving room for the two weight vectors and the broadcast operand. */
#define CONDNN_MR 6
/* The most vectors of columns in a tile (for tiles of a single row). */
#define CONDNN_NV_MAX 8

#define REAL float
#define VEC condnn_vf32
#define SUF(name) name##_f32
#include "_microkernels_impl.h"
#undef REAL
#undef VEC
#undef SUF

#define REAL double
#define VEC condnn_vf64
#define SUF(name) name##_f64
#include "_microkernels_impl.h"
#undef REAL
#undef VEC
#undef SUF

#endif
