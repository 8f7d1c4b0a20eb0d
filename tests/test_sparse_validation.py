"""Argument validation of ``condnn.sparse_dot``, ``condnn.sparse_dot_backward`` and the thread
settings: each bad argument raises the right exception type, with a message that names the
argument and, for shapes, the expected shape."""
import re
from typing import Callable, Dict

import numpy as np
import pytest

import condnn

BS, N, K, M = 4, 3, 8, 12    # k / bs = 2 input blocks, m / bs = 3 output blocks


def _good() -> Dict[str, object]:
    """Valid arguments of both functions; tests replace one of them."""
    rng = np.random.default_rng(0)
    return {
        "a": rng.standard_normal((N, K)).astype(np.float32),
        "amask": np.ones((N, K // BS), np.uint8),
        "b": rng.standard_normal((K, M)).astype(np.float32),
        "omask": np.ones((N, M // BS), np.uint8),
        "c": np.zeros(M, np.float32),
        "block_size": BS,
        "grad_out": np.ones((N, M), np.float32),
    }


def call_forward(**changes):
    kw = {**_good(), **changes}
    return condnn.sparse_dot(kw["a"], kw["amask"], kw["b"], kw["omask"], kw["c"],
                             kw["block_size"], **({"out": kw["out"]} if "out" in kw else {}))


def call_backward(**changes):
    kw = {**_good(), **changes}
    return condnn.sparse_dot_backward(kw["grad_out"], kw["a"], kw["amask"], kw["b"],
                                      kw["omask"], kw["block_size"],
                                      **({"db_into": kw["db_into"]} if "db_into" in kw else {}))


BOTH = pytest.mark.parametrize("call", [call_forward, call_backward],
                               ids=["forward", "backward"])
# (function, matrix argument it takes)
MATRICES = pytest.mark.parametrize(
    "call,name", [(call_forward, "a"), (call_forward, "b"), (call_backward, "a"),
                  (call_backward, "b"), (call_backward, "grad_out")],
    ids=["forward-a", "forward-b", "backward-a", "backward-b", "backward-grad_out"])


def _raises(call: Callable, exc, pattern: str, **changes) -> None:
    """``call(**changes)`` raises ``exc`` with a message matching ``pattern``."""
    with pytest.raises(exc, match=pattern):
        call(**changes)


def test_valid_arguments_pass() -> None:
    """The baseline every other test changes one argument of is itself valid."""
    assert call_forward().shape == (N, M)
    assert [x.shape for x in call_backward()] == [(N, K), (K, M), (M,)]


# ----------------------------------------------------------------------------------------------
# Matrices


@BOTH
@pytest.mark.parametrize("name", ["a", "b"])
@pytest.mark.parametrize("bad", [[[1.0]], 3.0, None, "x"], ids=["list", "float", "None", "str"])
def test_matrix_not_an_array(call, name, bad) -> None:
    _raises(call, TypeError, rf"^{name} must be a numpy\.ndarray", **{name: bad})


@MATRICES
@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, np.complex64, np.bool_])
def test_matrix_bad_dtype(call, name, dtype) -> None:
    x = _good()[name].astype(dtype)
    _raises(call, TypeError, rf"^{name} must have dtype float32 or float64", **{name: x})


@MATRICES
@pytest.mark.parametrize("dtype", [np.dtype(">f4"), np.dtype(">f8")])
def test_matrix_non_native_byte_order(call, name, dtype) -> None:
    x = _good()[name].astype(dtype)
    _raises(call, TypeError, rf"^{name} must have native byte order", **{name: x})


@MATRICES
def test_matrix_masked_array_refused(call, name) -> None:
    x = np.ma.masked_array(_good()[name], mask=False)
    _raises(call, TypeError, rf"^{name} must be a plain numpy\.ndarray, got a masked array",
            **{name: x})


@MATRICES
@pytest.mark.parametrize("shape", [(N * K,), (1, N, K), ()])
def test_matrix_wrong_ndim(call, name, shape) -> None:
    x = np.zeros(shape, np.float32)
    _raises(call, ValueError, rf"^{name} must be 2-D, got shape {re.escape(str(shape))}",
            **{name: x})


@pytest.mark.parametrize(
    "call,name", [(call_forward, "b"), (call_forward, "c"), (call_backward, "b"),
                  (call_backward, "grad_out")],
    ids=["forward-b", "forward-c", "backward-b", "backward-grad_out"])
def test_mixed_dtypes(call, name) -> None:
    """float64 next to a float32 ``a`` is an error naming both dtypes, not a silent cast."""
    x = _good()[name].astype(np.float64)
    _raises(call, TypeError, rf"^{name} has dtype float64 but a has dtype float32", **{name: x})


@BOTH
def test_a_float64_with_float32_b(call) -> None:
    g = _good()
    _raises(call, TypeError, r"^b has dtype float32 but a has dtype float64",
            a=g["a"].astype(np.float64), grad_out=g["grad_out"].astype(np.float64))


@BOTH
@pytest.mark.parametrize("rows", [K - 1, K + 4, 0])
def test_b_rows_do_not_match_a(call, rows) -> None:
    b = np.zeros((rows, M), np.float32)
    _raises(call, ValueError,
            rf"^b must have shape \({K}, m\) to match a of shape \({N}, {K}\), "
            rf"got \({rows}, {M}\)", b=b)


@pytest.mark.parametrize("shape", [(N, M + 1), (N + 1, M), (M, N)])
def test_grad_out_shape(shape) -> None:
    _raises(call_backward, ValueError,
            rf"^grad_out must have shape \({N}, {M}\), got {re.escape(str(shape))}",
            grad_out=np.zeros(shape, np.float32))


# ----------------------------------------------------------------------------------------------
# Bias


@pytest.mark.parametrize("bad", [[0.0] * M, 1.0], ids=["list", "float"])
def test_c_not_an_array(bad) -> None:
    _raises(call_forward, TypeError, r"^c must be a numpy\.ndarray", c=bad)


def test_c_bad_dtype() -> None:
    _raises(call_forward, TypeError, r"^c must have dtype float32 or float64",
            c=np.zeros(M, np.int32))


@pytest.mark.parametrize("shape", [(1, M), (M, 1), ()])
def test_c_wrong_ndim(shape) -> None:
    _raises(call_forward, ValueError, r"^c must be 1-D", c=np.zeros(shape, np.float32))


@pytest.mark.parametrize("size", [M - 1, M + 1, 0])
def test_c_wrong_length(size) -> None:
    _raises(call_forward, ValueError, rf"^c must have shape \({M},\), got \({size},\)",
            c=np.zeros(size, np.float32))


# ----------------------------------------------------------------------------------------------
# Masks


MASKS = pytest.mark.parametrize("name,dim,size", [("amask", "k", K), ("omask", "m", M)])


@BOTH
@MASKS
@pytest.mark.parametrize("bad", [[[1, 1]], 1, True], ids=["list", "int", "bool"])
def test_mask_not_an_array(call, name, dim, size, bad) -> None:
    _raises(call, TypeError, rf"^{name} must be a numpy\.ndarray or None", **{name: bad})


@BOTH
@MASKS
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.int64,
                                   np.uint16])
def test_mask_bad_dtype(call, name, dim, size, dtype) -> None:
    mask = _good()[name].astype(dtype)
    _raises(call, TypeError, rf"^{name} must have dtype bool, int8 or uint8", **{name: mask})


@BOTH
@MASKS
@pytest.mark.parametrize("value,dtype", [(2, np.uint8), (255, np.uint8), (-1, np.int8),
                                         (127, np.int8)])
def test_mask_values_other_than_0_1(call, name, dim, size, value, dtype) -> None:
    mask = _good()[name].astype(dtype)
    mask[-1, -1] = value
    _raises(call, ValueError, rf"^{name} must hold only 0 and 1", **{name: mask})


@BOTH
@MASKS
def test_bool_mask_with_non_0_1_bytes(call, name, dim, size) -> None:
    """A bool array built from raw bytes can hold 2; that is not a valid mask either."""
    mask = _good()[name].copy()
    mask[0, 0] = 2
    _raises(call, ValueError, rf"^{name} must hold only 0 and 1", **{name: mask.view(np.bool_)})


@BOTH
@MASKS
def test_mask_wrong_shape(call, name, dim, size) -> None:
    expected = (N, size // BS)
    for shape in [(N + 1, size // BS), (N, size // BS + 1), (N, size // BS - 1), (N,),
                  (N, size // BS, 1), (size // BS + 1, N), (N, size)]:
        pattern = (rf"^{name} must have shape {re.escape(str(expected))} "
                   rf"\(rows, {dim} / block_size\), got {re.escape(str(shape))}")
        _raises(call, ValueError, pattern, **{name: np.ones(shape, np.uint8)})


@BOTH
@MASKS
@pytest.mark.parametrize("bs", [5, 7, 16, 24])    # none divides k = 8 or m = 12
def test_block_size_does_not_divide_masked_dimension(call, name, dim, size, bs) -> None:
    """Only a masked dimension must be a multiple of the block size; the message says which."""
    other = "omask" if name == "amask" else "amask"
    blocks = max(size // bs, 1)
    _raises(call, ValueError,
            rf"^block_size {bs} does not divide {dim} = {size}, the dimension {name} applies to",
            **{name: np.ones((N, blocks), np.uint8), other: None, "block_size": bs})


@BOTH
def test_unmasked_dimension_need_not_divide(call) -> None:
    """bs = 8 divides neither k = 12 nor m = 10, which is fine when both masks are None."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((N, 12)).astype(np.float32)
    b = rng.standard_normal((12, 10)).astype(np.float32)
    result = call(a=a, b=b, c=np.zeros(10, np.float32), amask=None, omask=None, block_size=8,
                  grad_out=np.ones((N, 10), np.float32))
    shapes = [result.shape] if call is call_forward else [x.shape for x in result]
    assert shapes == ([(N, 10)] if call is call_forward else [(N, 12), (12, 10), (10,)])


# ----------------------------------------------------------------------------------------------
# Block size


@BOTH
@pytest.mark.parametrize("bad", [0, -1, -16])
def test_block_size_not_positive(call, bad) -> None:
    _raises(call, ValueError, rf"^block_size must be at least 1, got {bad}", block_size=bad)


@BOTH
@pytest.mark.parametrize("bad", [4.0, "4", None, True, False, np.bool_(True), np.float32(4),
                                 [4]])
def test_block_size_not_an_int(call, bad) -> None:
    _raises(call, TypeError, r"^block_size must be an int", block_size=bad)


@BOTH
def test_block_size_numpy_integer_accepted(call) -> None:
    as_tuple = (lambda r: (r,)) if call is call_forward else tuple
    for x, y in zip(as_tuple(call()), as_tuple(call(block_size=np.int64(BS)))):
        assert np.array_equal(x, y)


# ----------------------------------------------------------------------------------------------
# out=


def test_out_not_an_array() -> None:
    _raises(call_forward, TypeError, r"^out must be a plain numpy\.ndarray or None",
            out=[[0.0] * M] * N)


@pytest.mark.parametrize("amask_on", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("shape", [(N, M + 1), (M, N), (N * M,)])
def test_out_wrong_shape(shape, amask_on) -> None:
    masks = {} if amask_on else {"amask": None, "omask": None}
    _raises(call_forward, ValueError,
            rf"^out must have shape \({N}, {M}\), got {re.escape(str(shape))}",
            out=np.zeros(shape, np.float32), **masks)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_out_wrong_dtype(dtype) -> None:
    _raises(call_forward, TypeError, r"^out must have dtype float32, got",
            out=np.zeros((N, M), dtype))


def test_out_read_only() -> None:
    out = np.zeros((N, M), np.float32)
    out.flags.writeable = False
    _raises(call_forward, ValueError, r"^out is read-only", out=out)


@pytest.mark.parametrize("amask_on", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_out_sharing_memory_with_an_input(name, amask_on) -> None:
    """out overlapping an input would be read after being written."""
    buf = np.zeros(4 * N * M + 4 * K * M, np.float32)
    kw = {} if amask_on else {"amask": None, "omask": None}
    out = buf[:N * M].reshape(N, M)
    if name == "a":
        kw["a"] = buf[:N * K].reshape(N, K)
    elif name == "b":
        kw["b"] = buf[N * M // 2:N * M // 2 + K * M].reshape(K, M)
    else:
        kw["c"] = buf[N * M - 1:N * M - 1 + M]
    _raises(call_forward, ValueError, rf"^out must not share memory with {name}", out=out, **kw)


@pytest.mark.parametrize("name", ["amask", "omask"])
def test_out_sharing_memory_with_a_mask(name) -> None:
    out = np.zeros((N, M), np.float32)      # all zeros: its bytes are a valid 0/1 mask
    mask = out.view(np.uint8)[:, :(K if name == "amask" else M) // BS]
    _raises(call_forward, ValueError, rf"^out must not share memory with {name}",
            out=out, **{name: mask})


# db_into=


@pytest.mark.parametrize("amask_on", [True, False], ids=["sparse", "dense"])
def test_db_into_must_fit_the_weights(amask_on) -> None:
    masks = {} if amask_on else {"amask": None, "omask": None}
    _raises(call_backward, TypeError, r"^db_into must be a plain numpy\.ndarray or None",
            db_into=[[0.0] * M] * K, **masks)
    _raises(call_backward, ValueError, rf"^db_into must have shape \({K}, {M}\), got",
            db_into=np.zeros((M, K), np.float32), **masks)
    _raises(call_backward, TypeError, r"^db_into must have dtype float32, got float64",
            db_into=np.zeros((K, M)), **masks)
    _raises(call_backward, ValueError, r"^db_into must be C-contiguous",
            db_into=np.zeros((M, K), np.float32).T, **masks)
    read_only = np.zeros((K, M), np.float32)
    read_only.flags.writeable = False
    _raises(call_backward, ValueError, r"^db_into is read-only", db_into=read_only, **masks)


@pytest.mark.parametrize("name", ["a", "b", "grad_out"])
def test_db_into_sharing_memory_with_an_input(name) -> None:
    """db_into overlapping an input would change it while it is read."""
    good = _good()
    db_into = np.zeros((K, M), np.float32)
    shared = {"a": db_into.ravel()[:N * K].reshape(N, K), "b": db_into,
              "grad_out": db_into.ravel()[:N * M].reshape(N, M)}[name]
    shared[...] = good[name]
    _raises(call_backward, ValueError, rf"^db_into must not share memory with {name}",
            db_into=db_into, **{name: shared})


# ----------------------------------------------------------------------------------------------
# Thread settings


@pytest.fixture
def restore_threads():
    before = condnn.get_num_threads()
    yield before
    condnn.set_num_threads(before)


def test_get_num_threads_is_positive_int(restore_threads) -> None:
    assert isinstance(restore_threads, int) and restore_threads >= 1


@pytest.mark.parametrize("n", [1, 2, 3, np.int64(2), np.int32(1)])
def test_set_num_threads_round_trip(restore_threads, n) -> None:
    condnn.set_num_threads(n)
    got = condnn.get_num_threads()
    assert got == int(n) and isinstance(got, int)


@pytest.mark.parametrize("bad", [0, -1, np.int64(0), condnn.sparse.MAX_THREADS + 1, 2 ** 31])
def test_set_num_threads_out_of_range(restore_threads, bad) -> None:
    with pytest.raises(ValueError, match=rf"^n must be between 1 and \d+, got {int(bad)}"):
        condnn.set_num_threads(bad)
    assert condnn.get_num_threads() == restore_threads, "a rejected value changed the setting"


@pytest.mark.parametrize("bad", [1.0, 2.5, "2", None, True, False, np.bool_(True), [2]])
def test_set_num_threads_not_an_int(restore_threads, bad) -> None:
    with pytest.raises(TypeError, match=r"^n must be an int"):
        condnn.set_num_threads(bad)
    assert condnn.get_num_threads() == restore_threads, "a rejected value changed the setting"
