"""Counting the multiply-adds a pass of a block model executed, against its dense twin.

For a :class:`condnn.models.trace.Product` of an (n, n_in) input and an (n_in, n_out)
weight, example i executes ``a_i * o_i`` multiply-adds, where ``a_i`` is the number of its
active input units (``n_in`` when the input is ungated) and ``o_i`` that of its active output
units.  The dense twin executes ``n_in * n_out`` per example for every non-policy product;
the policy's products count as executed work (they are overhead the dense twin does not
pay) but not as dense work.
"""
from typing import Optional, Sequence

import numpy as np

from condnn.models.trace import Product


def dense_macs(products: Sequence[Product]) -> int:
    """Multiply-adds per example of the dense twin (every block on, no policy)."""
    return sum(p.n_in * p.n_out for p in products if not p.policy)


def _active_units(mask: Optional[np.ndarray], width: int, block_size: int,
                  n: int) -> np.ndarray:
    if mask is None:
        return np.full(n, width, dtype=np.int64)
    return mask.sum(axis=1, dtype=np.int64) * block_size


def executed_macs(products: Sequence[Product], masks: Sequence[Optional[np.ndarray]], n: int,
                  with_policy: bool = True) -> int:
    """Multiply-adds a pass over n examples executed, given the trace's masks.

    A None mask counts every unit on that side; ``with_policy=False`` (an ``all_on`` pass,
    which does not evaluate the policy) leaves the policy's products out.
    """
    total = 0
    for p in products:
        if p.policy and not with_policy:
            continue
        in_mask = None if p.in_mask is None else masks[p.in_mask]
        out_mask = None if p.out_mask is None else masks[p.out_mask]
        inputs = _active_units(in_mask, p.n_in, p.block_size, n)
        outputs = _active_units(out_mask, p.n_out, p.block_size, n)
        total += int((inputs * outputs).sum())
    return total


def flops_fraction(products: Sequence[Product], masks: Sequence[Optional[np.ndarray]], n: int,
                   with_policy: bool = True) -> float:
    """Executed multiply-adds over those of the dense twin on the same n examples."""
    return executed_macs(products, masks, n, with_policy) / (n * dense_macs(products))
