"""A policy's probabilities and mask from tanh(z / 2), in one pass.

At batch 1 the separate NumPy operations (the probabilities, the comparison, the blocks
kept on, the shared blocks put in front) took as long as the policy's product itself.  The
arithmetic is NumPy's ``t * c`` then ``+ 0.5`` in t's dtype, and the threshold that of
:func:`condnn.layers.policy_gate.threshold_mask`: the same float operations in the same
order, so the results are the same bit for bit (tests/layers/test_policy_decisions.py).
"""
cimport numpy as cnp
from libc.stdint cimport uint8_t

import numpy as np

cnp.import_array()

ctypedef fused real:
    float
    double


cdef bint _is_matrix(x, int typenum):
    return (type(x) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>x) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray>x) == 2
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x))


cdef void _decide(const real *t, Py_ssize_t n, Py_ssize_t nb, real half_minus_eps,
                  const real *uniform, Py_ssize_t leading, bint keep_a_block, real *prob,
                  uint8_t *mask) noexcept nogil:
    cdef Py_ssize_t i, j, best, width = leading + nb
    cdef real p, top
    cdef bint any_on
    cdef uint8_t on
    for i in range(n):
        for j in range(leading):
            mask[i * width + j] = 1
        any_on = False
        for j in range(nb):
            # Two roundings, as NumPy's t * c followed by += 0.5.
            p = t[i * nb + j] * half_minus_eps
            p = p + <real>0.5
            prob[i * nb + j] = p
            on = (uniform[i * nb + j] < p) if uniform != NULL else (p > <real>0.5)
            mask[i * width + leading + j] = on
            any_on = any_on or on
        if keep_a_block and uniform == NULL and not any_on and nb:
            # The first of the most probable, as numpy.argmax, for which a NaN is the
            # largest.
            best = 0
            for j in range(1, nb):
                p = prob[i * nb + j]
                top = prob[i * nb + best]
                if p > top or (p != p and top == top):
                    best = j
            mask[i * width + leading + best] = 1


def decide(t, double half_minus_eps, uniform, Py_ssize_t leading, bint keep_a_block):
    """Returns ``(prob, mask)`` for t = tanh(z / 2), an (n, B) C-contiguous float32 or
    float64 array: ``prob = t * half_minus_eps + 0.5`` (rounded after each operation, in
    t's dtype), and ``mask`` the (n, leading + B) uint8 array whose first ``leading``
    columns are 1 and whose others are ``uniform < prob`` (uniform of t's shape and dtype)
    or, with uniform None, ``prob > 0.5`` with, where ``keep_a_block`` and a row has none
    on, its first most probable block on."""
    if leading < 0:
        raise ValueError(f"leading must be >= 0, got {leading}")
    cdef int typenum
    if _is_matrix(t, cnp.NPY_FLOAT32):
        typenum = cnp.NPY_FLOAT32
    elif _is_matrix(t, cnp.NPY_FLOAT64):
        typenum = cnp.NPY_FLOAT64
    else:
        raise TypeError("t must be a 2-D C-contiguous float32 or float64 array")
    cdef cnp.ndarray tt = <cnp.ndarray>t
    cdef Py_ssize_t n = tt.shape[0], nb = tt.shape[1]
    if uniform is not None and not (_is_matrix(uniform, typenum)
                                    and (<cnp.ndarray>uniform).shape[0] == n
                                    and (<cnp.ndarray>uniform).shape[1] == nb):
        raise ValueError(f"uniform must be None or a C-contiguous array of t's shape "
                         f"{(n, nb)} and dtype")
    cdef cnp.ndarray prob = cnp.PyArray_EMPTY(2, [n, nb], typenum, 0)
    cdef cnp.ndarray mask = cnp.PyArray_EMPTY(2, [n, leading + nb], cnp.NPY_UINT8, 0)
    cdef void *pu = cnp.PyArray_DATA(<cnp.ndarray>uniform) if uniform is not None else NULL
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _decide[float](<const float *>cnp.PyArray_DATA(tt), n, nb, <float>half_minus_eps,
                           <const float *>pu, leading, keep_a_block,
                           <float *>cnp.PyArray_DATA(prob),
                           <uint8_t *>cnp.PyArray_DATA(mask))
    else:
        with nogil:
            _decide[double](<const double *>cnp.PyArray_DATA(tt), n, nb, half_minus_eps,
                            <const double *>pu, leading, keep_a_block,
                            <double *>cnp.PyArray_DATA(prob),
                            <uint8_t *>cnp.PyArray_DATA(mask))
    return prob, mask
