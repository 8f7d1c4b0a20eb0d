"""Subnormal numbers, stored as 0.

Weights that no example moves (those of an input pixel that is always 0, say) decay under
training into the subnormal range of their dtype, below its smallest normal number, and so
do the optimizer's moments of weights that stop receiving gradient.  On many x86 cores
(Intel's among them, not AMD's) every multiplication with a subnormal operand takes a
microcode assist about a hundred times slower than a normal one: a 3072x3072 dense net
trained with 3% of its weights subnormal ran its inference 8 times slower there.  A
subnormal float32 is below 1.2e-38, far below what it can add to any sum of normal terms,
so condnn stores such results as 0 where it makes them: in the optimizers' updates, in the
gradients of the L2 penalty and of weight decay (:func:`condnn.optim.kernels.add_scaled`),
and in the frozen copies of :func:`condnn.models.for_inference`.

The penalty's gradient needs its own care: 2 lambda w is subnormal long before w is (with
lambda 5e-5, for every w below 1.2e-34), and the weights that the penalty decays reach that
range by the thousands.  On an Intel Xeon, before those terms were dropped, the default
conditional net's training epochs slowed from 21 s to 30 s over a run of 12 (flat at 20-21
s since), and a step of the trained net took 60 ms instead of 43 ms.
"""
import numpy as np


def flush_subnormals(x: np.ndarray) -> int:
    """Sets the subnormal elements of the float array x to 0, in place; returns how many
    there were.  Other arrays (ints, bools) are left alone and give 0."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        return 0
    tiny = np.finfo(x.dtype).tiny
    subnormal = np.abs(x) < tiny
    subnormal &= x != 0
    count = int(np.count_nonzero(subnormal))
    if count:
        x[subnormal] = 0
    return count
