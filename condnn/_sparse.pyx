# cython: language_level=3
"""Compiled CPU kernels of the block-sparse product (forward and backward).

Every function here but :func:`forward_common` trusts its caller, :mod:`condnn.sparse`, to
have validated shapes, dtypes, masks and strides: bounds checks are off.

The work is split over output column blocks, one block per task.  For block j, the rows
where it is on are listed once; then for each input block p, the rows where p is on too
are multiplied by the (p, j) block of the weights (packed once when several tiles of rows
use it, unless the weights are stored block by block already), while the weights of the
next pair that has rows are prefetched.  From batches of 128 rows, each output block is
summed in a contiguous buffer and the inputs are read from a copy packed block by block:
rows a matrix row apart fall into the same few cache sets when the row is a multiple of
4096 bytes long.  Each output element is computed by one thread in a fixed order of
operations, so results are bitwise the same whatever the thread count.

A dimension that has no mask is cut into fixed-width chunks and treated as a masked
dimension whose blocks are all on, so the same code serves every variant (ss, sf, fs).
"""
import os

cimport numpy as cnp
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint8_t, uint16_t
from libc.string cimport memcpy, memset

cnp.import_array()

cdef extern from "_microkernels.h" nogil:
    int CONDNN_MR
    int CONDNN_TILE_BYTES
    int CONDNN_PREFETCH_AHEAD
    void condnn_prefetch(const void *p, size_t nbytes)
    ctypedef struct condnn_stream:
        int rows
        const char *then
    void condnn_stream_start(condnn_stream *s, const void *p, ptrdiff_t stride, int rows,
                             size_t nbytes)
    void condnn_stream_then(condnn_stream *s, const void *p, int rows, size_t nbytes)
    void condnn_stream_finish(condnn_stream *s)
    void gemm_rows_f32(ptrdiff_t nrows, const float *a, ptrdiff_t lda, const ptrdiff_t *arows,
                       const float *b, ptrdiff_t ldb, int kb, int nb, float *o, ptrdiff_t ldo,
                       const ptrdiff_t *orows, condnn_stream *fetch)
    void gemm_rows_f32h(ptrdiff_t nrows, const float *a, ptrdiff_t lda,
                        const ptrdiff_t *arows, const uint16_t *b, ptrdiff_t ldb, int kb,
                        int nb, float *o, ptrdiff_t ldo, const ptrdiff_t *orows,
                        condnn_stream *fetch)
    void gemm_rows_f64(ptrdiff_t nrows, const double *a, ptrdiff_t lda,
                       const ptrdiff_t *arows, const double *b, ptrdiff_t ldb, int kb, int nb,
                       double *o, ptrdiff_t ldo, const ptrdiff_t *orows, condnn_stream *fetch)
    void gemm_rows_t_f32(ptrdiff_t nrows, const float *a, ptrdiff_t lda,
                         const ptrdiff_t *arows, const float *bt, ptrdiff_t ldbt, int kb,
                         int nb, float *o, ptrdiff_t ldo, const ptrdiff_t *orows)
    void gemm_rows_t_f64(ptrdiff_t nrows, const double *a, ptrdiff_t lda,
                         const ptrdiff_t *arows, const double *bt, ptrdiff_t ldbt, int kb,
                         int nb, double *o, ptrdiff_t ldo, const ptrdiff_t *orows)
    void gemm_outer_f32(ptrdiff_t nrows, const float *a, ptrdiff_t lda, const float *g,
                        ptrdiff_t ldg, int kb, int nb, float *d, ptrdiff_t ldd)
    void gemm_outer_f64(ptrdiff_t nrows, const double *a, ptrdiff_t lda, const double *g,
                        ptrdiff_t ldg, int kb, int nb, double *d, ptrdiff_t ldd)
    void pack_block_f32(const float *src, ptrdiff_t sq, ptrdiff_t sc, int kb, int nb,
                        float *dst)
    void pack_block_f64(const double *src, ptrdiff_t sq, ptrdiff_t sc, int kb, int nb,
                        double *dst)

# Widths of the chunks that cut a dimension without a mask, and the most rows processed at
# once: a packed weight block, a panel of outputs and the gathered inputs (at most
# 128x128 + 2 x 256x128 floats) stay within a 512 KiB L2 cache.
cdef int UNMASKED_WIDTH = 128
cdef int ROW_GROUP = 64
# Rows of an output block from which the weights are fetched two pairs ahead (see
# _product_block).
cdef Py_ssize_t FETCH_TWO_AHEAD_ROWS = 64


def _default_num_threads():
    for name in ("CONDNN_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


cdef int _num_threads = _default_num_threads()


# Below this many multiply-adds (dense count) a call runs on one thread: starting a team
# costs microseconds, and on a busy machine the end-of-region barrier can wait a whole
# scheduler slice for a descheduled thread.
cdef double PARALLEL_MIN_WORK = 1 << 22


cdef inline int _threads_for(Py_ssize_t n, Py_ssize_t k, Py_ssize_t m, int tasks) noexcept:
    cdef int t = _num_threads
    if <double>n * k * m < PARALLEL_MIN_WORK:
        return 1
    return max(1, min(t, tasks))


def set_num_threads(int n):
    global _num_threads
    _num_threads = n


def get_num_threads():
    return _num_threads


def is_binary(cnp.ndarray mask):
    """True if the C-contiguous uint8 array ``mask`` holds only 0 and 1."""
    cdef const uint8_t *p = <const uint8_t *>cnp.PyArray_DATA(mask)
    cdef Py_ssize_t i, size = cnp.PyArray_SIZE(mask)
    cdef uint8_t bad = 0
    with nogil:
        for i in range(size):
            bad |= p[i]
    return bad <= 1


cdef struct Cut:
    # How one dimension is cut into blocks: by a mask (rows, count) or, when mask is NULL,
    # into chunks of a fixed width that are all on.
    const uint8_t *mask
    int count
    int width
    Py_ssize_t size


cdef struct Weights:
    # Where the weights of block pair (p, j) are: at p * between_p + j * between_j, with
    # rows sb0 and columns sb1 apart inside the block (in weights, of itemsize bytes).
    # ``blocked``: the blocks are contiguous already (a BlockWeights layout), so they are
    # never packed.  ``half``: blocked float16 weights of float inputs.
    ptrdiff_t sb0
    ptrdiff_t sb1
    ptrdiff_t between_p
    ptrdiff_t between_j
    bint blocked
    bint half
    int itemsize


cdef Weights _strided(ptrdiff_t sb0, ptrdiff_t sb1, const Cut *kin, const Cut *nout):
    """The weights of a (k, m) matrix with strides (sb0, sb1), cut as kin and nout."""
    cdef Weights w
    w.sb0, w.sb1 = sb0, sb1
    w.between_p = <ptrdiff_t>kin.width * sb0
    w.between_j = <ptrdiff_t>nout.width * sb1
    w.blocked = False
    w.half = False
    w.itemsize = 0
    return w


cdef Cut _cut(mask, Py_ssize_t size, int block_size, int unmasked_width=UNMASKED_WIDTH):
    cdef Cut cut
    cut.size = size
    if mask is None:
        cut.mask = NULL
        cut.width = unmasked_width
        cut.count = <int>((size + unmasked_width - 1) // unmasked_width)
    else:
        cut.mask = <const uint8_t *>cnp.PyArray_DATA(mask)
        cut.width = block_size
        cut.count = <int>(size // block_size)
    return cut


cdef inline bint _on(const Cut *cut, Py_ssize_t row, int block) noexcept nogil:
    return cut.mask == NULL or cut.mask[row * cut.count + block]


cdef inline int _extent(const Cut *cut, int block) noexcept nogil:
    """Width of block ``block``: the last chunk of an unmasked dimension may be narrower."""
    cdef Py_ssize_t rest = cut.size - <Py_ssize_t>block * cut.width
    return <int>(rest if rest < cut.width else cut.width)


cdef struct Scratch:
    # Per-thread working memory, carved out of one allocation.
    ptrdiff_t *rows      # (n,) the rows where the current output block is on
    ptrdiff_t *position  # (n,) position[i]: where row i is in rows, -1 if not there
    ptrdiff_t *pairs     # (6, n) the current and the next two block pairs' rows: for each, the
                         # positions of its rows in the packed inputs and in the outputs
    void *gathered_a     # (ROW_GROUP, width of an input block)
    void *gathered_g     # (ROW_GROUP, width of an output block)
    void *packed_b       # (width of an input block, width of an output block)
    void *outputs        # (n, width of an output block) the current block's outputs


cdef class _Memory:
    """A block of memory of at least ``size`` bytes from a 64-byte boundary, freed with
    the object."""
    cdef void *allocated
    cdef char *data
    cdef size_t size

    def __cinit__(self, size_t size):
        self.allocated = PyMem_Malloc(size + 64)
        if self.allocated == NULL:
            raise MemoryError(f"not enough memory for the block-sparse kernels' {size} bytes "
                              f"of working memory")
        self.data = <char *>((<size_t>self.allocated + 63) // 64 * 64)
        self.size = size

    def __dealloc__(self):
        PyMem_Free(self.allocated)


# Working memory handed back by finished calls, for the next ones.  Allocated afresh for
# every call, blocks larger than the allocator's mapping threshold were mapped anew each
# time, and the operating system zeroed their pages: ss at density 0.1 (n = 1024, k = m =
# 4096) took 11% longer.  A few blocks of up to 32 MB are kept; calls made at the same
# time from several threads take different ones (the pool is used under the GIL).
cdef list _spare_memory = []
cdef int SPARE_BLOCKS = 4
cdef size_t SPARE_MAX_BYTES = 32 << 20


cdef _Memory _take_memory(size_t size):
    """The smallest spare block that holds size bytes, or a new one."""
    cdef Py_ssize_t i, best = -1
    cdef _Memory block
    for i in range(len(_spare_memory)):
        block = <_Memory>_spare_memory[i]
        if block.size >= size and (
                best < 0 or block.size < (<_Memory>_spare_memory[best]).size):
            best = i
    if best >= 0:
        return <_Memory>_spare_memory.pop(best)
    return _Memory(size)


cdef _give_memory(_Memory block):
    """Keeps block for a later call (the oldest spare goes if there are too many)."""
    if block is not None and block.size <= SPARE_MAX_BYTES:
        _spare_memory.append(block)
        if len(_spare_memory) > SPARE_BLOCKS:
            del _spare_memory[0]


cdef class _Workspace:
    """Scratch memory for ``nthreads`` threads, from the spare blocks; :meth:`release`
    hands it back."""
    cdef _Memory memory
    cdef Scratch *threads

    def __cinit__(self, Py_ssize_t n, int in_width, int out_width, size_t itemsize,
                  int nthreads, bint gather, bint staged):
        cdef size_t index_bytes = 8 * n * sizeof(ptrdiff_t)
        cdef size_t a_bytes = <size_t>ROW_GROUP * in_width * itemsize if gather else 0
        cdef size_t g_bytes = <size_t>ROW_GROUP * out_width * itemsize if gather else 0
        cdef size_t b_bytes = <size_t>in_width * out_width * itemsize
        cdef size_t o_bytes = <size_t>n * out_width * itemsize if staged else 0
        # Each thread's part starts on its own cache line.
        cdef size_t per_thread = (index_bytes + a_bytes + g_bytes + b_bytes + o_bytes
                                  + 63) // 64 * 64
        cdef char *base
        cdef int t
        self.threads = <Scratch *>PyMem_Malloc(sizeof(Scratch) * nthreads)
        if self.threads == NULL:
            raise MemoryError("not enough memory for the block-sparse kernels' scratch space")
        self.memory = _take_memory(per_thread * nthreads)
        for t in range(nthreads):
            # The index arrays first, then buffers whose sizes are multiples of the item
            # size: every buffer is aligned for its type.
            base = self.memory.data + per_thread * t
            self.threads[t].rows = <ptrdiff_t *>base
            self.threads[t].position = self.threads[t].rows + n
            self.threads[t].pairs = self.threads[t].position + n
            base += index_bytes
            self.threads[t].gathered_a = base
            self.threads[t].gathered_g = base + a_bytes
            self.threads[t].packed_b = base + a_bytes + g_bytes
            self.threads[t].outputs = base + a_bytes + g_bytes + b_bytes

    def release(self):
        """Hands the memory back for later calls; the workspace is unusable after."""
        _give_memory(self.memory)
        self.memory = None

    def __dealloc__(self):
        PyMem_Free(self.threads)


cdef struct RowLists:
    # For each block p of a mask, the rows where it is on, in increasing order:
    # rows[offsets[p] : offsets[p + 1]]; and next_on[p], the first block from p on that is
    # on in some row (the mask's count if none), so that the pairs of a product skip the
    # blocks no row uses without looking at each (at batch 1 most are off).
    ptrdiff_t *offsets
    ptrdiff_t *rows
    int *next_on


cdef class _RowsByBlock:
    """The RowLists of a mask (empty when the mask is None), freed with the object."""
    cdef ptrdiff_t *offsets
    cdef ptrdiff_t *rows
    cdef int *next_on

    def __cinit__(self, mask, Py_ssize_t n):
        cdef int count = mask.shape[1] if mask is not None else 0
        cdef const uint8_t *m
        cdef Py_ssize_t i, total = 0
        cdef int p
        self.offsets = <ptrdiff_t *>PyMem_Malloc((count + 1) * sizeof(ptrdiff_t))
        self.next_on = <int *>PyMem_Malloc((count + 1) * sizeof(int))
        if self.offsets == NULL or self.next_on == NULL:
            raise MemoryError()
        memset(self.offsets, 0, (count + 1) * sizeof(ptrdiff_t))
        self.next_on[count] = count
        if mask is None:
            self.rows = NULL
            return
        m = <const uint8_t *>cnp.PyArray_DATA(mask)
        with nogil:
            for i in range(n * count):
                total += m[i]
        self.rows = <ptrdiff_t *>PyMem_Malloc((total + 1) * sizeof(ptrdiff_t))
        if self.rows == NULL:
            raise MemoryError()
        with nogil:
            for i in range(n):
                for p in range(count):
                    self.offsets[p + 1] += m[i * count + p]
            for p in range(count):
                self.offsets[p + 1] += self.offsets[p]
            # Fill each block's list in row order, using offsets[p] as its cursor, then
            # shift the cursors back into offsets.
            for i in range(n):
                for p in range(count):
                    if m[i * count + p]:
                        self.rows[self.offsets[p]] = i
                        self.offsets[p] += 1
            for p in range(count, 0, -1):
                self.offsets[p] = self.offsets[p - 1]
            self.offsets[0] = 0
            for p in range(count - 1, -1, -1):
                self.next_on[p] = p if self.offsets[p + 1] > self.offsets[p] \
                    else self.next_on[p + 1]

    cdef RowLists lists(self):
        cdef RowLists r
        r.offsets = self.offsets
        r.rows = self.rows
        r.next_on = self.next_on
        return r

    def __dealloc__(self):
        PyMem_Free(self.offsets)
        PyMem_Free(self.rows)
        PyMem_Free(self.next_on)


cdef inline void _gemm_rows(ptrdiff_t nrows, const floating *a, ptrdiff_t lda,
                            const ptrdiff_t *arows, const void *b, ptrdiff_t ldb, int kb,
                            int nb, floating *o, ptrdiff_t ldo, const ptrdiff_t *orows,
                            condnn_stream *fetch, bint half) noexcept nogil:
    """b holds weights of a's type, or with ``half`` (float a only) float16 ones."""
    if floating is float:
        if half:
            gemm_rows_f32h(nrows, a, lda, arows, <const uint16_t *>b, ldb, kb, nb, o, ldo,
                           orows, fetch)
        else:
            gemm_rows_f32(nrows, a, lda, arows, <const float *>b, ldb, kb, nb, o, ldo, orows,
                          fetch)
    else:
        gemm_rows_f64(nrows, a, lda, arows, <const double *>b, ldb, kb, nb, o, ldo, orows,
                      fetch)


cdef inline void _gemm_rows_t(ptrdiff_t nrows, const floating *a, ptrdiff_t lda,
                              const ptrdiff_t *arows, const floating *bt, ptrdiff_t ldbt,
                              int kb, int nb, floating *o, ptrdiff_t ldo,
                              const ptrdiff_t *orows) noexcept nogil:
    if floating is float:
        gemm_rows_t_f32(nrows, a, lda, arows, bt, ldbt, kb, nb, o, ldo, orows)
    else:
        gemm_rows_t_f64(nrows, a, lda, arows, bt, ldbt, kb, nb, o, ldo, orows)


cdef inline void _gemm_outer(ptrdiff_t nrows, const floating *a, ptrdiff_t lda,
                             const floating *g, ptrdiff_t ldg, int kb, int nb, floating *d,
                             ptrdiff_t ldd) noexcept nogil:
    if floating is float:
        gemm_outer_f32(nrows, a, lda, g, ldg, kb, nb, d, ldd)
    else:
        gemm_outer_f64(nrows, a, lda, g, ldg, kb, nb, d, ldd)


cdef inline void _pack_block(const floating *src, ptrdiff_t sq, ptrdiff_t sc, int kb, int nb,
                             floating *dst) noexcept nogil:
    if floating is float:
        pack_block_f32(src, sq, sc, kb, nb, dst)
    else:
        pack_block_f64(src, sq, sc, kb, nb, dst)


cdef inline ptrdiff_t _list_rows(const Cut *nout, int j, Py_ssize_t n, ptrdiff_t *rows,
                                 ptrdiff_t *position) noexcept nogil:
    """Writes the rows where output block j is on, and for each row i its index in that
    list at position[i], -1 where the block is off; returns how many."""
    cdef Py_ssize_t i
    cdef ptrdiff_t count = 0
    cdef bint on
    for i in range(n):
        on = _on(nout, i, j)
        rows[count] = i
        position[i] = count if on else -1
        count += on
    return count


cdef inline ptrdiff_t _pair_positions(const Cut *kin, const Cut *nout,
                                     const RowLists *by_block, int p, int j,
                                     const ptrdiff_t *rows_j, ptrdiff_t nrows_j,
                                     const ptrdiff_t *position, bint staged, Py_ssize_t n,
                                     ptrdiff_t *buffer, const ptrdiff_t **arows,
                                     const ptrdiff_t **orows) noexcept nogil:
    """The rows where input block p and output block j are both on, in increasing order,
    as the kernels find them (NULL: 0, 1, 2, ...): in the inputs at arows, among the
    outputs at orows.  Staged (see _product_block), those are their places in the packed
    input block p (when a has a mask) and in output block j's buffer; otherwise rows of a
    and of o.  Returns how many; buffer has room for (2, n) indices."""
    cdef ptrdiff_t t, i, c = 0, start
    cdef ptrdiff_t *apos = buffer
    cdef ptrdiff_t *opos = buffer + n
    if kin.mask == NULL:
        arows[0], orows[0] = rows_j, rows_j
        if staged:
            orows[0] = NULL
        return nrows_j
    start = by_block.offsets[p]
    if nout.mask == NULL:        # output block j is on in every row: its rows are 0, 1, ...
        arows[0], orows[0] = by_block.rows + start, by_block.rows + start
        if staged:
            arows[0] = NULL
        return by_block.offsets[p + 1] - start
    # Branch-free, as the masks are random.  position (of output block j, see _list_rows)
    # is one contiguous array: the mask's column j would be a byte per row, a row apart.
    for t in range(start, by_block.offsets[p + 1]):
        i = by_block.rows[t]
        apos[c] = t - start if staged else i
        opos[c] = position[i] if staged else i
        c += position[i] >= 0
    arows[0], orows[0] = apos, opos
    return c


cdef inline int _next_pair(const Cut *kin, const Cut *nout, const RowLists *by_block,
                           int p, int j, const ptrdiff_t *rows_j, ptrdiff_t nrows_j,
                           const ptrdiff_t *position, bint staged, Py_ssize_t n,
                           ptrdiff_t *buffer, ptrdiff_t *count, const ptrdiff_t **arows,
                           const ptrdiff_t **orows) noexcept nogil:
    """The first input block after p that shares rows with output block j (kin.count if
    none), with those rows (see _pair_positions)."""
    p += 1
    while p < kin.count:
        if kin.mask != NULL:
            p = by_block.next_on[p]
            if p == kin.count:
                break
        count[0] = _pair_positions(kin, nout, by_block, p, j, rows_j, nrows_j, position,
                                   staged, n, buffer, arows, orows)
        if count[0]:
            return p
        p += 1
    count[0] = 0
    return p


cdef inline void _fetch_block(condnn_stream *fetch, const char *b, const Weights *w,
                             const Cut *kin, int p, int j, int nb, bint then) noexcept nogil:
    """Starts fetching the weights of block pair (p, j), or with ``then`` queues them after
    those being fetched."""
    cdef const char *block = b + (p * w.between_p + j * w.between_j) * w.itemsize
    cdef int kb = _extent(kin, p)
    if w.sb1 == 1:
        if then:
            condnn_stream_then(fetch, block, kb, nb * w.itemsize)
        else:
            condnn_stream_start(fetch, block, w.sb0 * w.itemsize, kb, nb * w.itemsize)
    elif w.sb0 == 1:    # b read transposed (the backward pass): rows are columns
        if then:
            condnn_stream_then(fetch, block, nb, kb * w.itemsize)
        else:
            condnn_stream_start(fetch, block, w.sb1 * w.itemsize, nb, kb * w.itemsize)


cdef void _product_block(int j, Py_ssize_t n, const floating *a, ptrdiff_t lda,
                         const floating *packed_a, const char *b, const Weights *w,
                         const floating *bias, ptrdiff_t sbias, floating *o, ptrdiff_t ldo,
                         const Cut *kin, const Cut *nout, const RowLists *by_block,
                         bint staged, bint relu, Scratch *s) noexcept nogil:
    """Output column block j of ``(a @ b + bias)`` under the masks, for every row, and
    with ``relu`` its maximum with 0 (inactive outputs are 0 either way).

    Staged, the block's outputs are summed in a contiguous buffer, a row for each row
    where it is on, and written to o when done, and the inputs are read packed (packed_a,
    see _pack_inputs) when a has a mask.  In place, consecutive rows lie a matrix row
    apart, and at widths of a multiple of 4096 bytes (k or m of 1024, 4096, ...) those of
    one block all fall in the same few sets of the caches, which then hold few of them.

    b is the weights' first byte (see Weights for where each block is).  The inactive
    outputs are 0 already (_product zeroes them unless they were zeros)."""
    cdef int nb = _extent(nout, j), kb, p, col, following, after, slot = 0
    cdef Py_ssize_t i
    cdef ptrdiff_t t, nrows_j, count, next_count = 0, after_count = 0, ldab
    cdef const ptrdiff_t *arows
    cdef const ptrdiff_t *orows
    cdef const ptrdiff_t *next_arows = NULL
    cdef const ptrdiff_t *next_orows = NULL
    cdef const ptrdiff_t *after_arows = NULL
    cdef const ptrdiff_t *after_orows = NULL
    cdef bint first = True, fetch_two
    cdef const floating *ablock
    cdef const floating *block
    cdef floating *ocol = o + <ptrdiff_t>j * nout.width
    cdef floating *acc = <floating *>s.outputs if staged else ocol
    cdef floating *orow
    cdef ptrdiff_t ldacc = nb if staged else ldo
    cdef floating *packed = <floating *>s.packed_b
    cdef ptrdiff_t sb0 = w.sb0, sb1 = w.sb1
    cdef condnn_stream fetch

    # Active outputs start at the bias.
    nrows_j = _list_rows(nout, j, n, s.rows, s.position)
    for t in range(nrows_j):
        orow = acc + (t if staged else s.rows[t]) * ldacc
        if bias != NULL:
            for col in range(nb):
                orow[col] = bias[(<ptrdiff_t>j * nout.width + col) * sbias]
        else:
            memset(orow, 0, nb * sizeof(floating))
    p = following = kin.count
    if nrows_j:
        p = _next_pair(kin, nout, by_block, -1, j, s.rows, nrows_j, s.position, staged, n,
                       s.pairs, &count, &arows, &orows)
    if p < kin.count:
        following = _next_pair(kin, nout, by_block, p, j, s.rows, nrows_j, s.position, staged,
                               n, s.pairs + 2 * n, &next_count, &next_arows, &next_orows)
    # The weights of coming pairs are fetched while a pair computes (``fetch`` is stepped
    # by the micro-kernel; what is left is issued when it is done), unless output block j
    # has a tile of rows or less: those of the next pair, or from FETCH_TWO_AHEAD_ROWS rows
    # on, those of the pair after it (at the first pair, of both), which then has two
    # pairs' arithmetic to arrive in (at batch 1024, block 64, density 0.25 that was 4-6%
    # faster, at block 16 2% slower; at batch 64 it was 4% slower, and at batch 1 the
    # prefetches only delayed the pair's own loads).  The rows of a are fewer and come from
    # the outer caches: fetching them too measured no faster.
    fetch_two = nrows_j >= FETCH_TWO_AHEAD_ROWS
    while p < kin.count:
        # Pairs without rows are skipped: at small batches most are empty.
        after = kin.count
        if following < kin.count:
            after = _next_pair(kin, nout, by_block, following, j, s.rows, nrows_j, s.position,
                               staged, n, s.pairs + 2 * n * ((slot + 2) % 3), &after_count,
                               &after_arows, &after_orows)
        fetch.rows, fetch.then = 0, NULL
        if nrows_j > CONDNN_MR and following < kin.count:
            if not fetch_two or first:
                _fetch_block(&fetch, b, w, kin, following, j, nb, False)
            if fetch_two and after < kin.count:
                _fetch_block(&fetch, b, w, kin, after, j, nb, first)
        first = False
        kb = _extent(kin, p)
        block = <const floating *>(b + (p * w.between_p + j * w.between_j) * w.itemsize)
        if staged and kin.mask != NULL:
            ablock, ldab = packed_a + by_block.offsets[p] * kin.width, kin.width
        else:
            ablock, ldab = a + <ptrdiff_t>p * kin.width, lda
        if sb1 == 1 and (w.blocked or count <= CONDNN_MR or (
                count <= 2 * CONDNN_MR and nb * w.itemsize <= CONDNN_TILE_BYTES)):
            # A tile of rows reads each weight once, two tiles as wide as the block twice:
            # packing, a copy of the whole block, would not pay (at density 0.1, n = 1024,
            # pairs have about 10 rows, and with AVX-512 tiles of 64 columns reading them
            # in place was 5% faster).  Narrower tiles (AVX2's 16 columns) cross the block
            # in column strips, each reading a line from every one of its rows, which lie
            # a matrix row apart and meet in the same cache sets: there (Zen 3), packing
            # two tiles' weights was 9-11% faster at density 0.1 and at batch 256, k = m =
            # 3072, density 0.15.  Nor does packing pay for blocks that are contiguous
            # already (float16 ones among them).
            _gemm_rows(count, ablock, ldab, arows, block, sb0, kb, nb, acc, ldacc, orows,
                       &fetch, w.half)
        elif sb0 == 1 and count <= CONDNN_MR:
            # b read transposed for a few rows: dot products along its contiguous rows.
            _gemm_rows_t(count, ablock, ldab, arows, block, sb1, kb, nb, acc, ldacc, orows)
        else:
            # Packed, the block is contiguous: unit-stride loads however b is laid out,
            # and no cache-set conflicts between its rows.
            _pack_block(block, sb0, sb1, kb, nb, packed)
            _gemm_rows(count, ablock, ldab, arows, packed, nb, kb, nb, acc, ldacc, orows,
                       &fetch, False)
        condnn_stream_finish(&fetch)
        p, arows, orows, count = following, next_arows, next_orows, next_count
        following, next_arows, next_orows, next_count = (after, after_arows, after_orows,
                                                         after_count)
        slot = (slot + 1) % 3
    if relu:
        # The block's outputs are in the caches still: cheaper here than a pass over all
        # of o afterwards.  x < 0 is false for NaN, which stays NaN, as numpy.maximum has it.
        for t in range(nrows_j):
            orow = acc + (t if staged else s.rows[t]) * ldacc
            for col in range(nb):
                if orow[col] < 0:
                    orow[col] = 0
    if staged:
        for t in range(nrows_j):
            memcpy(ocol + s.rows[t] * ldo, acc + t * nb, nb * sizeof(floating))


cdef void _pack_input_block(int p, const floating *a, ptrdiff_t lda, const Cut *kin,
                            const RowLists *by_block, floating *packed) noexcept nogil:
    cdef ptrdiff_t t, start = by_block.offsets[p], end = by_block.offsets[p + 1]
    cdef int kb = _extent(kin, p)
    cdef const floating *acol = a + <ptrdiff_t>p * kin.width
    for t in range(start, end):
        if t + CONDNN_PREFETCH_AHEAD < end:
            condnn_prefetch(acol + by_block.rows[t + CONDNN_PREFETCH_AHEAD] * lda,
                            kb * sizeof(floating))
        memcpy(packed + t * kin.width, acol + by_block.rows[t] * lda, kb * sizeof(floating))


cdef void _pack_inputs(const floating *a, ptrdiff_t lda, Cut kin, RowLists by_block,
                       floating *packed, int nthreads) noexcept nogil:
    """Copies, for each input block p, the rows of a where it is on into packed, one after
    the other (block p's from row by_block.offsets[p], a row every kin.width elements)."""
    cdef int p
    for p in prange(kin.count, schedule="static", num_threads=nthreads):
        _pack_input_block(p, a, lda, &kin, &by_block, packed)


cdef void _product(Py_ssize_t n, const floating *a, ptrdiff_t lda, const char *b,
                   Weights w, const floating *bias, ptrdiff_t sbias,
                   floating *o, ptrdiff_t ldo, Cut kin, Cut nout, RowLists by_block,
                   floating *packed_a, bint staged, bint relu, bint zeroed,
                   Scratch *scratch, int nthreads) noexcept nogil:
    cdef int j
    cdef Py_ssize_t i
    # Inactive outputs are 0, whatever the inputs hold.  Every row is zeroed in one go
    # first: block by block they were short writes a row apart, each reading its cache
    # lines from memory first (at density 0.1 a fifth of the product's time).  Without an
    # output mask no output is inactive; ``zeroed``, o holds zeros already.
    if nout.mask != NULL and not zeroed:
        for i in prange(n, schedule="static", num_threads=nthreads):
            memset(o + i * ldo, 0, nout.size * sizeof(floating))
    if packed_a != NULL:
        _pack_inputs(a, lda, kin, by_block, packed_a, nthreads)
    # On one thread, a plain loop: OpenMP's dynamic schedule took a call for each output
    # block even so, and at batch 1 that was 7-8% of a product of the default condnet.
    if nthreads == 1:
        for j in range(nout.count):
            _product_block(j, n, a, lda, packed_a, b, &w, bias, sbias, o, ldo, &kin, &nout,
                           &by_block, staged, relu, &scratch[0])
        return
    for j in prange(nout.count, schedule="dynamic", num_threads=nthreads):
        _product_block(j, n, a, lda, packed_a, b, &w, bias, sbias, o, ldo, &kin, &nout,
                       &by_block, staged, relu, &scratch[threadid()])


cdef inline ptrdiff_t _stride(cnp.ndarray x, int axis):
    return cnp.PyArray_STRIDE(x, axis) // cnp.PyArray_ITEMSIZE(x)


# Bounds on the product's buffers: the outputs of one block in each thread, and the packed
# inputs of a call.  Larger batches run in chunks of rows (each output is the same sum in
# the same order, unless a pair of blocks of weights read transposed has few enough rows
# in a chunk to take the few-rows kernel); larger packed inputs are read in place.
cdef size_t OUTPUTS_BYTES = 4 << 20
cdef size_t PACKED_INPUTS_BYTES = 64 << 20
cdef Py_ssize_t STAGED_MIN_ROWS = 128


def _set_limits(staged_min_rows, outputs_bytes, packed_inputs_bytes, fetch_two_ahead_rows):
    """Sets the three limits above and FETCH_TWO_AHEAD_ROWS, and returns their previous
    values (for the tests, which need every path at small sizes)."""
    global STAGED_MIN_ROWS, OUTPUTS_BYTES, PACKED_INPUTS_BYTES, FETCH_TWO_AHEAD_ROWS
    previous = (STAGED_MIN_ROWS, OUTPUTS_BYTES, PACKED_INPUTS_BYTES, FETCH_TWO_AHEAD_ROWS)
    STAGED_MIN_ROWS, OUTPUTS_BYTES, PACKED_INPUTS_BYTES, FETCH_TWO_AHEAD_ROWS = (
        staged_min_rows, outputs_bytes, packed_inputs_bytes, fetch_two_ahead_rows)
    return previous


cdef Cut _output_cut(out_mask, cnp.ndarray out, int block_size, bint blocked):
    """How a product's output dimension is cut: an unmasked one of weights stored block by
    block at their block size, else as _cut does."""
    return _cut(out_mask, out.shape[1], block_size, block_size if blocked else UNMASKED_WIDTH)


cdef _run_product(cnp.ndarray a, in_mask, cnp.ndarray b, ptrdiff_t sb0, ptrdiff_t sb1,
                  out_mask, c, int block_size, cnp.ndarray out, bint blocked=False,
                  bint relu=False, bint zeroed=False):
    """out = (a @ b + c) under in_mask (blocks of a's columns) and out_mask (of out's),
    with ``relu`` its maximum with 0.  ``zeroed``: out holds zeros already, and its
    inactive outputs are left as they are.

    b is a (k, m) matrix with strides (sb0, sb1), or with ``blocked`` the contiguous
    (ceil(m / bs), k, bs) column slabs of one (a BlockWeights layout), an unmasked output
    dimension then being cut at the block size too; blocked weights of float inputs may be
    float16."""
    cdef Py_ssize_t n = a.shape[0], start, chunk
    cdef Cut nout = _output_cut(out_mask, out, block_size, blocked)
    chunk = max(1, <Py_ssize_t>(OUTPUTS_BYTES // (max(1, min(nout.width, nout.size))
                                                  * a.itemsize)))
    if n <= chunk:
        _run_rows(a, in_mask, b, sb0, sb1, out_mask, c, block_size, out, blocked, relu,
                  zeroed)
        return
    for start in range(0, n, chunk):
        _run_rows(a[start:start + chunk],
                  None if in_mask is None else in_mask[start:start + chunk], b, sb0, sb1,
                  None if out_mask is None else out_mask[start:start + chunk], c,
                  block_size, out[start:start + chunk], blocked, relu, zeroed)


cdef _run_rows(cnp.ndarray a, in_mask, cnp.ndarray b, ptrdiff_t sb0, ptrdiff_t sb1,
               out_mask, c, int block_size, cnp.ndarray out, bint blocked, bint relu,
               bint zeroed):
    """_run_product for a batch whose outputs fit the buffers."""
    cdef Py_ssize_t n = a.shape[0]
    cdef Cut kin = _cut(in_mask, a.shape[1], block_size)
    cdef Cut nout = _output_cut(out_mask, out, block_size, blocked)
    cdef Weights w = _strided(sb0, sb1, &kin, &nout)
    w.itemsize = <int>cnp.PyArray_ITEMSIZE(b)
    w.half = cnp.PyArray_TYPE(b) == cnp.NPY_FLOAT16
    if w.half and (not blocked or cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT32):
        raise TypeError("float16 weights serve float32 products, stored block by block")
    if blocked:
        w.sb0, w.sb1 = block_size, 1
        w.between_p = <ptrdiff_t>kin.width * block_size
        w.between_j = <ptrdiff_t>a.shape[1] * block_size
        w.blocked = True
    cdef int nthreads = _threads_for(n, kin.size, nout.size, nout.count)
    cdef _RowsByBlock by_block = _RowsByBlock(in_mask, n)
    cdef RowLists lists = by_block.lists()
    # Staged (see _product_block), with the inputs packed, unless they would take too much
    # memory.  At small batches the rows stay in the caches anyway, and with one output
    # block every input row is read once: staging only costs there (5-8% for a 10-way
    # output layer at batch 256).
    cdef size_t packed_bytes = 0
    if in_mask is not None:
        packed_bytes = <size_t>lists.offsets[kin.count] * kin.width * a.itemsize
    cdef bint staged = (n >= STAGED_MIN_ROWS and nout.count > 1
                        and packed_bytes <= PACKED_INPUTS_BYTES)
    cdef _Workspace work = _Workspace(n, min(kin.width, kin.size), min(nout.width, nout.size),
                                      a.itemsize, nthreads, False, staged)
    cdef ptrdiff_t sbias = _stride(c, 0) if c is not None else 0
    cdef ptrdiff_t lda = _stride(a, 0), ldo = _stride(out, 0)
    cdef void *pa = cnp.PyArray_DATA(a)
    cdef void *pb = cnp.PyArray_DATA(b)
    cdef void *pc = cnp.PyArray_DATA(c) if c is not None else NULL
    cdef void *po = cnp.PyArray_DATA(out)
    cdef _Memory packed = _take_memory(packed_bytes) if staged and packed_bytes else None
    cdef void *packed_a = packed.data if packed is not None else NULL
    try:
        if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32:
            with nogil:
                _product[float](n, <const float *>pa, lda, <const char *>pb, w,
                                <const float *>pc, sbias, <float *>po, ldo, kin, nout, lists,
                                <float *>packed_a, staged, relu, zeroed, work.threads,
                                nthreads)
        else:
            with nogil:
                _product[double](n, <const double *>pa, lda, <const char *>pb, w,
                                 <const double *>pc, sbias, <double *>po, ldo, kin, nout,
                                 lists, <double *>packed_a, staged, relu, zeroed,
                                 work.threads, nthreads)
    finally:
        work.release()
        _give_memory(packed)


def forward(cnp.ndarray a, amask, cnp.ndarray b, omask, c, int block_size, cnp.ndarray out,
            bint relu=False):
    """out = (a @ b + c) * Om with a's inactive blocks skipped (and with ``relu``, its
    maximum with 0)."""
    _run_product(a, amask, b, _stride(b, 0), _stride(b, 1), omask, c, block_size, out,
                 False, relu)


def forward_blocked(cnp.ndarray a, amask, cnp.ndarray blocks, omask, c, int block_size,
                    cnp.ndarray out, bint relu=False):
    """:func:`forward` with the weights given as the contiguous (ceil(m / bs), k, bs)
    column slabs of a :class:`condnn.BlockWeights` (of a's dtype, or float16 for float32
    a)."""
    _run_product(a, amask, blocks, 0, 0, omask, c, block_size, out, True, relu)


cdef bint _is_float_matrix(x, int typenum, int ndim):
    return (type(x) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>x) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>x) == ndim
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>x))


cdef bint _is_common_mask(mask, Py_ssize_t rows, Py_ssize_t size, int block_size):
    """None, or a C-contiguous bool/uint8/int8 (rows, size / block_size) array of 0/1."""
    if mask is None:
        return True
    if type(mask) is not cnp.ndarray:
        return False
    cdef cnp.ndarray m = <cnp.ndarray>mask
    cdef int t = cnp.PyArray_TYPE(m)
    if t != cnp.NPY_BOOL and t != cnp.NPY_UINT8 and t != cnp.NPY_INT8:
        return False
    return (cnp.PyArray_NDIM(m) == 2 and size % block_size == 0
            and m.shape[0] == rows and m.shape[1] == size // block_size
            and cnp.PyArray_IS_C_CONTIGUOUS(m) and is_binary(m))


def forward_common(a, amask, b, omask, c, block_size, Py_ssize_t blocked_m=-1,
                   bint relu=False):
    """The masked product for the common case of arguments, checked here at C speed (at
    batch 1 the Python checks cost more than the product): plain float32 or float64
    ndarrays of one dtype, a's rows unit-stride, c None or (m,), at least one mask, every
    mask None or a C-contiguous bool, uint8 or int8 array of 0/1 of the right shape, and
    no ``out``.  With ``blocked_m`` >= 0, b is the (ceil(m / bs), k, bs) slabs array of a
    BlockWeights of m = blocked_m columns stored at this block size (float16 for float32
    inputs, or a's dtype).  With ``relu``, the result is its maximum with 0.  Returns the
    new (n, m) result, or None when the arguments are anything else:
    :func:`condnn.sparse.sparse_dot` then checks them in full and names what is wrong."""
    if type(block_size) is not int or block_size < 1 or (amask is None and omask is None):
        return None
    if type(a) is not cnp.ndarray:
        return None
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return None
    cdef bint blocked = blocked_m >= 0
    # Blocked weights of float inputs may be stored as float16.
    cdef int weight_typenum = typenum
    if blocked and typenum == cnp.NPY_FLOAT32 and type(b) is cnp.ndarray \
            and cnp.PyArray_TYPE(<cnp.ndarray>b) == cnp.NPY_FLOAT16:
        weight_typenum = cnp.NPY_FLOAT16
    if not _is_float_matrix(a, typenum, 2) or not _is_float_matrix(b, weight_typenum,
                                                                   3 if blocked else 2):
        return None
    cdef cnp.ndarray aa = <cnp.ndarray>a, bb = <cnp.ndarray>b
    cdef Py_ssize_t n = aa.shape[0], k = aa.shape[1]
    cdef Py_ssize_t m = blocked_m if blocked else bb.shape[1]
    if blocked:
        if not (cnp.PyArray_IS_C_CONTIGUOUS(bb)
                and bb.shape[0] == (m + block_size - 1) // block_size
                and bb.shape[1] == k and bb.shape[2] == block_size):
            return None
    elif bb.shape[0] != k:
        return None
    if n == 0 or m == 0 or k == 0:
        return None
    if cnp.PyArray_STRIDE(aa, 1) != cnp.PyArray_ITEMSIZE(aa) or cnp.PyArray_STRIDE(aa, 0) < 0:
        return None
    if c is not None and (not _is_float_matrix(c, typenum, 1)
                          or (<cnp.ndarray>c).shape[0] != m):
        return None
    if not _is_common_mask(amask, n, k, block_size) \
            or not _is_common_mask(omask, n, m, block_size):
        return None
    # Zeros from the allocator (calloc: fresh pages come zeroed by the system anyway), so
    # the product need not write the inactive outputs (16 MB at n = 1024, m = 4096).
    cdef cnp.ndarray out = cnp.PyArray_ZEROS(2, [n, m], typenum, 0)
    # bool and int8 masks holding 0/1 have the bytes of uint8 ones: no view needed.
    if blocked:
        _run_product(aa, amask, bb, 0, 0, omask, c, block_size, out, True, relu, True)
    else:
        _run_product(aa, amask, bb, _stride(bb, 0), _stride(bb, 1), omask, c, block_size,
                     out, False, relu, True)
    return out


cdef void _outer_block(int j, Py_ssize_t n, const floating *a, ptrdiff_t lda,
                       const floating *g, ptrdiff_t ldg, floating *db, ptrdiff_t lddb,
                       floating *dc, const Cut *kin, const Cut *nout,
                       const RowLists *by_block, Scratch *s) noexcept nogil:
    """Column block j of db = (a under Am).T @ (g under Om), accumulated into db, which
    holds zeros (the blocks of pairs no row uses are not written), and of dc = its column
    sums.

    The rows of each block pair are gathered, ROW_GROUP at a time, into contiguous buffers:
    the kernel then reads them at unit stride, free of cache-set conflicts."""
    cdef int nb = _extent(nout, j), kb, p, col, q
    cdef ptrdiff_t t, start, group, count, nrows_j
    cdef const ptrdiff_t *rows
    cdef const ptrdiff_t *unused
    cdef const floating *gcol = g + <ptrdiff_t>j * nout.width
    cdef const floating *acol
    cdef const floating *grow
    cdef floating *dblock
    cdef floating *dcol = dc + <ptrdiff_t>j * nout.width
    cdef floating *ga = <floating *>s.gathered_a
    cdef floating *gg = <floating *>s.gathered_g

    nrows_j = _list_rows(nout, j, n, s.rows, s.position)
    memset(dcol, 0, nb * sizeof(floating))
    for t in range(nrows_j):
        grow = gcol + s.rows[t] * ldg
        for col in range(nb):
            dcol[col] += grow[col]
    for p in range(kin.count):
        kb = _extent(kin, p)
        dblock = db + <ptrdiff_t>p * kin.width * lddb + <ptrdiff_t>j * nout.width
        if nrows_j == 0:
            continue
        count = _pair_positions(kin, nout, by_block, p, j, s.rows, nrows_j, s.position, False,
                                n, s.pairs, &rows, &unused)
        acol = a + <ptrdiff_t>p * kin.width
        start = 0
        while start < count:
            group = min(ROW_GROUP, count - start)
            for t in range(group):
                if t + CONDNN_PREFETCH_AHEAD < group:
                    condnn_prefetch(acol + rows[start + t + CONDNN_PREFETCH_AHEAD] * lda,
                                    kb * sizeof(floating))
                    condnn_prefetch(gcol + rows[start + t + CONDNN_PREFETCH_AHEAD] * ldg,
                                    nb * sizeof(floating))
                memcpy(ga + t * kin.width, acol + rows[start + t] * lda, kb * sizeof(floating))
                memcpy(gg + t * nb, gcol + rows[start + t] * ldg, nb * sizeof(floating))
            _gemm_outer(group, ga, kin.width, gg, nb, kb, nb, dblock, lddb)
            start += group


cdef void _outer(Py_ssize_t n, const floating *a, ptrdiff_t lda, const floating *g,
                 ptrdiff_t ldg, floating *db, ptrdiff_t lddb, floating *dc, Cut kin,
                 Cut nout, RowLists by_block, Scratch *scratch, int nthreads) noexcept nogil:
    cdef int j
    for j in prange(nout.count, schedule="dynamic", num_threads=nthreads):
        _outer_block(j, n, a, lda, g, ldg, db, lddb, dc, &kin, &nout, &by_block,
                     &scratch[threadid()])


def backward(cnp.ndarray g, cnp.ndarray a, amask, cnp.ndarray b, omask, int block_size,
             da, cnp.ndarray db, cnp.ndarray dc):
    """da (unless None), db, dc of the product, g being the gradient of its output (read
    under Om).

    The weight gradient is added into db: the blocks of pairs that no row uses are left as
    they are."""
    # da = (g under Om) @ b.T under Am: the same product, with b read transposed.
    if da is not None:
        _run_product(g, omask, b, _stride(b, 1), _stride(b, 0), amask, None, block_size, da)

    cdef Py_ssize_t n = a.shape[0]
    cdef Cut kin = _cut(amask, a.shape[1], block_size)
    cdef Cut nout = _cut(omask, g.shape[1], block_size)
    cdef int nthreads = _threads_for(n, kin.size, nout.size, nout.count)
    cdef _Workspace work = _Workspace(n, kin.width, nout.width, a.itemsize, nthreads, True,
                                      False)
    cdef _RowsByBlock by_block = _RowsByBlock(amask, n)
    cdef RowLists lists = by_block.lists()
    cdef ptrdiff_t lda = _stride(a, 0), ldg = _stride(g, 0), lddb = _stride(db, 0)
    cdef void *pa = cnp.PyArray_DATA(a)
    cdef void *pg = cnp.PyArray_DATA(g)
    cdef void *pdb = cnp.PyArray_DATA(db)
    cdef void *pdc = cnp.PyArray_DATA(dc)
    if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32:
        with nogil:
            _outer[float](n, <const float *>pa, lda, <const float *>pg, ldg, <float *>pdb,
                          lddb, <float *>pdc, kin, nout, lists, work.threads, nthreads)
    else:
        with nogil:
            _outer[double](n, <const double *>pa, lda, <const double *>pg, ldg,
                           <double *>pdb, lddb, <double *>pdc, kin, nout, lists,
                           work.threads, nthreads)
    work.release()
