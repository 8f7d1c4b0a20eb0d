"""Determinism of the block-sparse kernels: bitwise identical results across repeated calls
and whatever the thread count, for every variant, forward and backward, on problems big
enough that the work is split between threads."""
import importlib.machinery
import os
import subprocess
import sys
import threading
from typing import Iterator, Tuple

import numpy as np
import pytest

import condnn
from condnn import _sparse
from condnn.sparse_reference import reference_sparse_dot, reference_sparse_dot_backward

COMPILED = _sparse.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


@pytest.fixture
def restore_threads() -> Iterator[int]:
    before = condnn.get_num_threads()
    yield before
    condnn.set_num_threads(before)


def _problem(variant: str, n: int, k: int, m: int, bs: int, density: float, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal((k, m)).astype(np.float32)
    c = rng.standard_normal(m).astype(np.float32)
    g = rng.standard_normal((n, m)).astype(np.float32)
    amask = rng.random((n, k // bs)) < density if variant in ("ss", "sf") else None
    omask = rng.random((n, m // bs)) < density if variant in ("ss", "fs") else None
    return a, amask, b, omask, c, g


def _run(args, bs: int) -> Tuple[np.ndarray, ...]:
    a, amask, b, omask, c, g = args
    out = condnn.sparse_dot(a, amask, b, omask, c, bs)
    return (out,) + tuple(condnn.sparse_dot_backward(g, a, amask, b, omask, bs))


def _bits(x: np.ndarray) -> np.ndarray:
    """The raw bits, so that -0.0 vs 0.0 or two NaN payloads count as different."""
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64)


NAMES = ("out", "da", "db", "dc")


# n = 300 rows over k = m = 512 split across threads by rows and by blocks; n = 3 leaves
# some threads with no rows at all.
@pytest.mark.parametrize("n", [300, 3])
@pytest.mark.parametrize("variant", ["ss", "sf", "fs", "dense"])
def test_bitwise_identical_across_calls_and_thread_counts(variant, n, restore_threads) -> None:
    bs, k, m = 32, 512, 512
    args = _problem(variant, n, k, m, bs, 0.5, seed=n)
    condnn.set_num_threads(1)
    one = _run(args, bs)
    condnn.set_num_threads(2)
    runs = [_run(args, bs) for _ in range(3)]
    for run in runs:
        for name, x, y in zip(NAMES, one, run):
            assert np.array_equal(_bits(x), _bits(y)), \
                f"{name} differs between 1 and 2 threads, or between calls ({variant}, n={n})"

    # The single-threaded result is also right, within the float32 error bound of a dot
    # product (see test_sparse.py): a kernel that is deterministically wrong must not pass.
    a, amask, b, omask, c, g = args
    want = (reference_sparse_dot(a, amask, b, omask, c, bs),) + \
        reference_sparse_dot_backward(g, a, amask, b, omask, bs)
    scale = (reference_sparse_dot(abs(a), amask, abs(b), omask, abs(c), bs),) + \
        reference_sparse_dot_backward(abs(g), abs(a), amask, abs(b), omask, bs)
    eps = np.finfo(np.float32).eps
    for name, x, w, s, terms in zip(NAMES, one, want, scale, (k, m, n, n)):
        err = np.abs(x - w)
        assert (err <= (terms + 2) * eps * s).all(), \
            f"{name} wrong ({variant}, n={n}): max error {err.max():.3g}"


def test_calls_from_several_python_threads_at_once(restore_threads) -> None:
    """The kernels release the GIL and take their working memory from a shared pool of
    spare blocks: calls running at the same time must each get their own, and give the
    results of calls made one after the other."""
    condnn.set_num_threads(1)
    problems = [(_problem(variant, n, 256, 192, 32, 0.5, seed=i), variant)
                for i, (variant, n) in enumerate([("ss", 300), ("sf", 200), ("fs", 257),
                                                  ("ss", 130), ("dense", 150), ("ss", 3)])]
    alone = [_run(args, 32) for args, _ in problems]
    errors = []

    def work(index: int) -> None:
        try:
            for _ in range(20):
                for name, x, y in zip(NAMES, alone[index], _run(problems[index][0], 32)):
                    assert np.array_equal(_bits(x), _bits(y)), \
                        f"{name} of {problems[index][1]} changed when run alongside others"
        except AssertionError as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(problems))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


def _placed(x: np.ndarray, offset: int) -> np.ndarray:
    """A C-contiguous copy of x whose data starts ``offset`` bytes past a 64-byte boundary."""
    buffer = np.empty(x.nbytes + 128, np.uint8)
    start = (-buffer.ctypes.data) % 64 + offset
    y = buffer[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
    y[...] = x
    return y


# Each shape leaves a last tile of one row after full tiles, over many pairs of blocks: the
# case in which code left for the compiler to fuse rounded differently with the address
# of the next weight block (the prefetch stream it drove is the only thing that changes).
@pytest.mark.parametrize("variant,n,k,m,bs,density", [
    ("sf", 8, 3072, 10, 64, 0.5), ("sf", 7, 3072, 10, 64, 1.0), ("sf", 8, 3072, 10, 16, 0.5),
    ("ss", 13, 1024, 192, 64, 0.5), ("fs", 7, 1024, 192, 64, 0.5)])
def test_bitwise_identical_wherever_the_arrays_lie(variant, n, k, m, bs, density,
                                                    restore_threads) -> None:
    args = _problem(variant, n, k, m, bs, density, seed=k + n)
    a, amask, b, omask, c, g = args
    condnn.set_num_threads(1)
    first = _run(args, bs)
    for offset in range(4, 64, 4):
        placed = (_placed(a, offset), amask, _placed(b, offset), omask, _placed(c, offset),
                  _placed(g, offset))
        for name, x, y in zip(NAMES, first, _run(placed, bs)):
            assert np.array_equal(_bits(x), _bits(y)), \
                f"{name} differs with the arrays {offset} bytes past a cache line ({variant})"


@pytest.mark.skipif(not COMPILED, reason="the thread defaults belong to the compiled kernels")
@pytest.mark.parametrize("env,expected", [({"CONDNN_NUM_THREADS": "1"}, 1),
                                          ({"CONDNN_NUM_THREADS": "2"}, 2),
                                          ({"OMP_NUM_THREADS": "1"}, 1)])
def test_default_thread_count_from_environment(env, expected) -> None:
    """The documented defaults: CONDNN_NUM_THREADS, else OMP_NUM_THREADS."""
    clean = {key: value for key, value in os.environ.items()
             if key not in ("CONDNN_NUM_THREADS", "OMP_NUM_THREADS")}
    result = subprocess.run(
        [sys.executable, "-c", "import condnn; print(condnn.get_num_threads())"],
        env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) == expected
