"""Elementwise updates of parameters and gradients, each in a single pass over memory.

The NumPy form of Adam's update makes about ten passes over four arrays the size of the
parameter; for the millions of weights of a wide layer it is memory-bound and took half of
a training step.  Here each element is read once and updated (and its gradient set to 0).
Every element is computed alone, so the results do not depend on the number of threads.

The optimizers' results below the smallest normal number of their dtype are stored as 0:
see :mod:`condnn.subnormals` for why.
"""
cimport numpy as cnp
from cython.parallel cimport prange
from libc.float cimport DBL_MIN, FLT_MIN
from libc.math cimport fabs, sqrt, sqrtf

cnp.import_array()

ctypedef fused real:
    float
    double

# Below this many elements one thread is faster than starting a team.
cdef Py_ssize_t PARALLEL_MIN_SIZE = 1 << 18


cdef inline real _normal_min(real like) noexcept nogil:
    """The smallest normal number of like's type: smaller results are stored as 0."""
    if real is float:
        return FLT_MIN
    return DBL_MIN


cdef void _adam(real *p, real *g, real *m, real *v, Py_ssize_t size, real beta1, real beta2,
                real eps, real step, real denominator_scale, int nthreads) noexcept nogil:
    cdef Py_ssize_t i
    cdef real gi, mi, vi, pi, root, tiny
    tiny = _normal_min(<real>0)
    for i in prange(size, schedule="static", num_threads=nthreads):
        gi = g[i]
        mi = beta1 * m[i] + (1 - beta1) * gi
        vi = beta2 * v[i] + (1 - beta2) * gi * gi
        if real is float:
            root = sqrtf(vi)
        else:
            root = sqrt(vi)
        pi = p[i] - step * (mi / (root * denominator_scale + eps))
        # Subnormal results are stored as 0 (see the module's docstring).
        m[i] = mi if fabs(mi) >= tiny else 0
        v[i] = vi if vi >= tiny else 0
        p[i] = pi if fabs(pi) >= tiny else 0
        g[i] = 0


cdef void _sgd(real *p, real *g, real *velocity, Py_ssize_t size, real lr, real momentum,
               bint nesterov, int nthreads) noexcept nogil:
    """velocity NULL: plain SGD."""
    cdef Py_ssize_t i
    cdef real gi, vi, direction, pi, tiny
    tiny = _normal_min(<real>0)
    for i in prange(size, schedule="static", num_threads=nthreads):
        gi = g[i]
        direction = gi
        if velocity != NULL:
            vi = momentum * velocity[i] + gi
            vi = vi if fabs(vi) >= tiny else 0
            velocity[i] = vi
            direction = gi + momentum * vi if nesterov else vi
        pi = p[i] - lr * direction
        p[i] = pi if fabs(pi) >= tiny else 0
        g[i] = 0


cdef void _add_scaled(real *y, real alpha, const real *x, Py_ssize_t size,
                      int nthreads) noexcept nogil:
    cdef Py_ssize_t i
    cdef real term, yi, tiny, limit
    tiny = _normal_min(<real>0)
    # |x| below this gives a subnormal alpha x.  Such terms are dropped without being
    # computed: an L2 gradient 2 lambda w of the tiny weights that decay under the penalty
    # (with lambda 5e-5, for w below 1.2e-34) had cost an Intel core a microcode assist
    # per weight, here and again in the optimizer's update that read it.
    limit = tiny / fabs(alpha) if alpha != 0 else 0
    for i in prange(size, schedule="static", num_threads=nthreads):
        term = 0 if fabs(x[i]) < limit else alpha * x[i]
        yi = y[i] + term
        y[i] = 0 if fabs(yi) < tiny else yi


cdef bint _usable(cnp.ndarray x, int typenum, Py_ssize_t size):
    return (cnp.PyArray_TYPE(x) == typenum and cnp.PyArray_SIZE(x) == size
            and cnp.PyArray_IS_C_CONTIGUOUS(x) and cnp.PyArray_ISWRITEABLE(x))


def applies(*arrays):
    """True when the kernels take these arrays: NumPy arrays of one float dtype (float32
    or float64) and size, C-contiguous and writeable."""
    if not all(type(x) is cnp.ndarray for x in arrays):
        return False
    typenum = cnp.PyArray_TYPE(arrays[0])
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return False
    size = cnp.PyArray_SIZE(arrays[0])
    return all(_usable(x, typenum, size) for x in arrays)


cdef int _threads(Py_ssize_t size, int nthreads):
    return max(1, nthreads) if size >= PARALLEL_MIN_SIZE else 1


def add_scaled(cnp.ndarray y, double alpha, cnp.ndarray x, int nthreads=1):
    """``y += alpha * x`` in place, without a temporary, with the terms ``alpha * x[i]``
    that would be subnormal (``|x[i]| < tiny / |alpha|``, tiny the dtype's smallest normal
    number) taken as 0 and subnormal results stored as 0.  Raises ValueError unless
    :func:`applies` holds for y and x."""
    if not applies(y, x):
        raise ValueError("add_scaled needs y and x as C-contiguous, writeable float32 or "
                         "float64 arrays of one dtype and size")
    cdef Py_ssize_t size = cnp.PyArray_SIZE(y)
    cdef int threads = _threads(size, nthreads)
    if cnp.PyArray_TYPE(y) == cnp.NPY_FLOAT32:
        with nogil:
            _add_scaled[float](<float *>cnp.PyArray_DATA(y), <float>alpha,
                               <const float *>cnp.PyArray_DATA(x), size, threads)
    else:
        with nogil:
            _add_scaled[double](<double *>cnp.PyArray_DATA(y), alpha,
                                <const double *>cnp.PyArray_DATA(x), size, threads)


def adam_update(cnp.ndarray param, cnp.ndarray grad, cnp.ndarray m, cnp.ndarray v,
                double beta1, double beta2, double eps, double step,
                double denominator_scale, int nthreads=1):
    """In place, elementwise::

        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        param -= step * m / (sqrt(v) * denominator_scale + eps);   g = 0

    with results below the dtype's smallest normal number stored as 0 (Adam with ``step = lr / (1 - beta1^t)`` and ``denominator_scale = 1 / sqrt(1 -
    beta2^t)``).  Raises ValueError unless :func:`applies` holds."""
    if not applies(param, grad, m, v):
        raise ValueError("adam_update needs param, grad, m and v as C-contiguous, writeable "
                         "float32 or float64 arrays of one dtype and size")
    cdef Py_ssize_t size = cnp.PyArray_SIZE(param)
    cdef int threads = _threads(size, nthreads)
    if cnp.PyArray_TYPE(param) == cnp.NPY_FLOAT32:
        with nogil:
            _adam[float](<float *>cnp.PyArray_DATA(param), <float *>cnp.PyArray_DATA(grad),
                         <float *>cnp.PyArray_DATA(m), <float *>cnp.PyArray_DATA(v), size,
                         <float>beta1, <float>beta2, <float>eps, <float>step,
                         <float>denominator_scale, threads)
    else:
        with nogil:
            _adam[double](<double *>cnp.PyArray_DATA(param), <double *>cnp.PyArray_DATA(grad),
                          <double *>cnp.PyArray_DATA(m), <double *>cnp.PyArray_DATA(v), size,
                          beta1, beta2, eps, step, denominator_scale, threads)


def sgd_update(cnp.ndarray param, cnp.ndarray grad, velocity, double lr, double momentum,
               bint nesterov, int nthreads=1):
    """In place, elementwise, with ``velocity`` (None: plain SGD)::

        velocity = momentum velocity + g
        param -= lr * velocity    (nesterov: lr * (g + momentum velocity));   g = 0

    with results below the dtype's smallest normal number stored as 0.  Raises ValueError
    unless :func:`applies` holds for the arrays."""
    arrays = (param, grad) if velocity is None else (param, grad, velocity)
    if not applies(*arrays):
        raise ValueError("sgd_update needs param, grad and velocity as C-contiguous, "
                         "writeable float32 or float64 arrays of one dtype and size")
    cdef Py_ssize_t size = cnp.PyArray_SIZE(param)
    cdef int threads = _threads(size, nthreads)
    cdef void *v = NULL if velocity is None else cnp.PyArray_DATA(<cnp.ndarray>velocity)
    if cnp.PyArray_TYPE(param) == cnp.NPY_FLOAT32:
        with nogil:
            _sgd[float](<float *>cnp.PyArray_DATA(param), <float *>cnp.PyArray_DATA(grad),
                        <float *>v, size, <float>lr, <float>momentum, nesterov, threads)
    else:
        with nogil:
            _sgd[double](<double *>cnp.PyArray_DATA(param), <double *>cnp.PyArray_DATA(grad),
                         <double *>v, size, lr, momentum, nesterov, threads)
