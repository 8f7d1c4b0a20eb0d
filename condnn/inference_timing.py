"""Single-core inference time of a block model: sparse execution against dense execution.

Three executions of the same trained model are timed on the same examples, in evaluation
mode (see :data:`condnn.models.trace.EXECUTIONS`):

* ``sparse``: the block-sparse kernels skip the inactive blocks (the policies included),
  run by the model's frozen copy (:func:`condnn.models.for_inference`), whose weights are
  stored block by block as a deployed model's would be (in float16 with ``storage``);
* ``dense``: the same function, with the same masks and outputs, computed with dense BLAS
  products (``numpy.matmul``) and the masks multiplied in: the network "run densely";
* ``all_on``: every block on and no policy, dense BLAS: the plain dense network of these
  weights (its outputs differ, since the network was trained with its blocks gated).

``speedup`` is dense over sparse time.  Every time is one pass over the examples at a batch
size (256 and 1), Python overhead included, as a user's loop would pay.

One core: the kernels are set to one thread with :func:`condnn.set_num_threads`, and the
BLAS with threadpoolctl, in this process, when threadpoolctl is installed.  Without it the
BLAS's thread count can only be set before it loads, so :func:`measure_checkpoint_speed`
then times in a fresh Python process started with ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``CONDNN_NUM_THREADS`` set to 1
(``python -m condnn.inference_timing CKPT --data SPEC``, which prints the report as JSON).

OpenBLAS picks its kernels for the CPU it finds unless ``OPENBLAS_CORETYPE`` (or
``OPENBLAS_L2_SIZE``) says otherwise, and a core type forced by the environment may be slower
than the CPU's own (AVX2 kernels on an AVX-512 core run at about half its speed).  So where
one of them is set, :func:`measure_checkpoint_speed` and :func:`condnn.report.checkpoint_report`
also time the model in a subprocess without them and keep, for every execution, the faster
of the two (:func:`faster_of`): dense execution is compared at the best speed this
machine's BLAS has.

To resist the load of a shared machine, the executions take turns: at batch 256 each
repeat times every execution once and the median over repeats is kept; at batch 1 the
examples are timed in chunks, every execution in turn on each chunk, and the chunk times
are summed.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from condnn.block_weights import BlockWeights
from condnn.models.inference import for_inference
from condnn.sparse import get_num_threads, set_num_threads

EXECUTIONS_TIMED = ("sparse", "dense", "all_on")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "CONDNN_NUM_THREADS")
# Variables that make OpenBLAS use another core type's kernels than the CPU's own.
BLAS_CORE_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_BATCH1_CHUNK = 250


@dataclass
class SpeedReport:
    """Seconds of one pass over ``examples`` (batch ``batch_size``) and over
    ``batch1_examples`` (batch 1), per execution, and the speedups they give;
    ``weight_storage``: the dtype the sparse execution's layers store their weights in.

    With weights stored in another dtype than the model's, ``time_sparse_unconverted_s``
    and ``time_sparse_unconverted_batch1_s`` are those of the frozen copy in the model's
    own dtype, timed in the same turns (None otherwise): what the storage gains is a
    ratio of one run."""

    time_sparse_s: float
    time_dense_s: float
    time_all_on_s: float
    time_sparse_batch1_s: float
    time_dense_batch1_s: float
    time_all_on_batch1_s: float
    examples: int
    batch_size: int
    batch1_examples: int
    repeats: int
    how: str
    weight_storage: str = "float32"
    time_sparse_unconverted_s: Optional[float] = None
    time_sparse_unconverted_batch1_s: Optional[float] = None

    @property
    def speedup(self) -> float:
        """Dense over sparse time at ``batch_size``."""
        return self.time_dense_s / self.time_sparse_s

    @property
    def speedup_batch1(self) -> float:
        """Dense over sparse time at batch 1."""
        return self.time_dense_batch1_s / self.time_sparse_batch1_s

    def to_dict(self) -> Dict[str, object]:
        """The times and the speedups (also over ``all_on``) as a JSON-ready dict."""
        result = asdict(self)
        result.update(speedup=self.speedup, speedup_batch1=self.speedup_batch1,
                      speedup_all_on=self.time_all_on_s / self.time_sparse_s,
                      speedup_all_on_batch1=self.time_all_on_batch1_s / self.time_sparse_batch1_s)
        return result


def blas_core_overrides() -> List[str]:
    """The variables of :data:`BLAS_CORE_VARIABLES` that this process's environment sets."""
    return [name for name in BLAS_CORE_VARIABLES if os.environ.get(name)]


def faster_of(first: SpeedReport, second: SpeedReport, how: str) -> SpeedReport:
    """Each time of ``first`` or ``second``, whichever is smaller (reports of one model on
    the same examples), described by ``how``."""
    if (first.examples, first.batch_size, first.batch1_examples, first.weight_storage) != (
            second.examples, second.batch_size, second.batch1_examples, second.weight_storage):
        raise ValueError("the two reports did not time the same examples and storage")
    fields = asdict(first)
    for name in (f for f in fields if f.startswith("time_")):
        values = [v for v in (getattr(first, name), getattr(second, name)) if v is not None]
        fields[name] = min(values) if values else None
    fields["how"] = how
    return SpeedReport(**fields)


def threadpoolctl_available() -> bool:
    """True if threadpoolctl can be imported (it sets the BLAS's threads in process)."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def single_core() -> Iterator[None]:
    """The condnn kernels and the BLAS on one thread, restored on exit (needs threadpoolctl)."""
    from threadpoolctl import threadpool_limits
    previous = get_num_threads()
    set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        set_num_threads(previous)


def _pass_seconds(model, x: np.ndarray, batch_size: int, execution: str,
                  mode: Optional[str]) -> float:
    start = time.perf_counter()
    for begin in range(0, len(x), batch_size):
        model.trace(x[begin:begin + batch_size], False, execution=execution, mode=mode)
    return time.perf_counter() - start


def time_executions(model, x: np.ndarray, *, batch_size: int = 256,
                    batch1_examples: Optional[int] = None, repeats: int = 3,
                    mode: Optional[str] = None,
                    executions: Sequence[str] = EXECUTIONS_TIMED,
                    storage=None) -> SpeedReport:
    """Times the executions of ``model`` on x in this process, on the threads it has.

    Use it inside :func:`single_core` for single-core times.

    Args:
        model: a model of :mod:`condnn.models`.
        x: (N, D) examples.
        batch_size: the large batch size.
        batch1_examples: how many of x to time at batch 1 (None: all).
        repeats: passes at ``batch_size`` per execution (the median is kept).
        mode: the policies' evaluation mode (default: the model's).
        storage: the frozen copy's weight storage (:func:`condnn.models.for_inference`):
            None, or np.float16 for half-precision weights in the sparse execution; the
            copy in the model's own dtype is then timed too, in the same turns.  The dense
            executions run that copy too, in the model's dtype: the weights of ``model``
            with their subnormal numbers 0, as the sparse execution has them (see
            :mod:`condnn.subnormals`).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if len(x) == 0:
        raise ValueError("x holds no examples to time")
    n1 = len(x) if batch1_examples is None else min(int(batch1_examples), len(x))
    if n1 < 1:
        raise ValueError(f"batch1_examples must be positive or None, got {batch1_examples!r}")
    # Timed name -> (model, execution of its trace).
    frozen = for_inference(model)
    runs = {e: (for_inference(model, storage) if e == "sparse" and storage is not None
                else frozen, e)
            for e in executions}
    if storage is not None and "sparse" in runs:
        runs["sparse_unconverted"] = (frozen, "sparse")
    for run, execution in runs.values():     # warm-up: first-call allocations, caches
        _pass_seconds(run, x[:batch_size], batch_size, execution, mode)
        _pass_seconds(run, x[:4], 1, execution, mode)
    large: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (run, execution) in runs.items():
            large[name].append(_pass_seconds(run, x, batch_size, execution, mode))
    single: Dict[str, float] = {name: 0.0 for name in runs}
    for begin in range(0, n1, _BATCH1_CHUNK):
        chunk = x[begin:min(begin + _BATCH1_CHUNK, n1)]
        for name, (run, execution) in runs.items():
            single[name] += _pass_seconds(run, chunk, 1, execution, mode)
    median = {name: float(np.median(times)) for name, times in large.items()}
    return SpeedReport(median.get("sparse", np.nan), median.get("dense", np.nan),
                       median.get("all_on", np.nan), single.get("sparse", np.nan),
                       single.get("dense", np.nan), single.get("all_on", np.nan),
                       examples=len(x), batch_size=batch_size, batch1_examples=n1,
                       repeats=repeats, how="in process, threadpoolctl",
                       weight_storage=stored_dtype(runs.get("sparse", (model,))[0]),
                       time_sparse_unconverted_s=median.get("sparse_unconverted"),
                       time_sparse_unconverted_batch1_s=single.get("sparse_unconverted"))


def stored_dtype(model) -> str:
    """The dtype name the frozen layers of ``model`` store their weights in (that of its
    parameters if none is frozen)."""
    for _, layer in model.walk():
        frozen = getattr(layer, "frozen", None)
        if isinstance(frozen, BlockWeights):
            return frozen.slabs.dtype.name
    return next(iter(model.named_params().values())).dtype.name


def measure_speed(model, x: np.ndarray, **options) -> SpeedReport:
    """:func:`time_executions` on one core, in this process (needs threadpoolctl)."""
    if not threadpoolctl_available():
        raise RuntimeError("single-core timing in this process needs threadpoolctl "
                           "(pip install threadpoolctl); measure_checkpoint_speed works "
                           "without it")
    with single_core():
        return time_executions(model, x, **options)


def measure_checkpoint_speed(path: str, data: Optional[str] = None, *,
                             batch1_examples: Optional[int] = None, repeats: int = 3,
                             mode: Optional[str] = None,
                             in_process: Optional[bool] = None,
                             storage=None, fastest_blas: bool = True) -> SpeedReport:
    """Single-core times of a checkpoint's model on its data set's test examples.

    Args:
        path: a checkpoint written by :func:`condnn.train.train`.
        data: the data set spec (default: the one the run trained on).
        in_process: None times in this process when threadpoolctl is installed and in a
            subprocess otherwise; True / False force one of the two.
        storage: None, or np.float16 (see :func:`time_executions`).
        fastest_blas: where the environment forces an OpenBLAS core type, also time in a
            subprocess without it and keep the faster times (see the module's text).
    """
    if in_process is None:
        in_process = threadpoolctl_available()
    options = dict(batch1_examples=batch1_examples, repeats=repeats, mode=mode,
                   storage=storage)
    if in_process:
        from condnn import checkpoint, datasets
        loaded = checkpoint.load(path)
        data_set = datasets.load(data or loaded.metadata["data"])
        report = measure_speed(loaded.model, data_set.x_test, **options)
    else:
        report = _subprocess_speed(path, data, **options)
    return with_fastest_blas(report, path, data, **options) if fastest_blas else report


def with_fastest_blas(report: SpeedReport, path: str, data: Optional[str],
                      **options) -> SpeedReport:
    """``report`` (of the checkpoint at path, timed in this environment), or where the
    environment forces an OpenBLAS core type, the faster times of it and of a subprocess
    without that (options: those of :func:`measure_checkpoint_speed`)."""
    overrides = blas_core_overrides()
    if not overrides:
        return report
    unforced = _subprocess_speed(path, data, unset=overrides, **options)
    return faster_of(report, unforced,
                     f"{report.how}, and a subprocess without {' and '.join(overrides)}: "
                     f"each time the faster")


def _subprocess_speed(path: str, data: Optional[str], *, batch1_examples: Optional[int],
                      repeats: int, mode: Optional[str], storage,
                      unset: Sequence[str] = ()) -> SpeedReport:
    """The report of ``python -m condnn.inference_timing`` on the checkpoint, started with
    the thread variables set to 1 and the variables ``unset`` removed."""
    command = [sys.executable, "-m", "condnn.inference_timing", os.fspath(path),
               "--repeats", str(repeats)]
    if data:
        command += ["--data", data]
    if batch1_examples is not None:
        command += ["--batch1-examples", str(batch1_examples)]
    if mode:
        command += ["--mode", mode]
    if storage is not None:
        command += ["--storage", np.dtype(storage).name]
    env = dict(os.environ, **{name: "1" for name in THREAD_VARIABLES})
    for name in unset:
        env.pop(name, None)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the timing subprocess failed:\n{done.stderr[-2000:]}")
    values = json.loads(done.stdout.strip().splitlines()[-1])
    fields = {k: values[k] for k in SpeedReport.__dataclass_fields__}
    fields["how"] = "subprocess, thread variables set to 1" + (
        f", without {' and '.join(unset)}" if unset else "")
    return SpeedReport(**fields)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Times a checkpoint in this process, which must have been started with the thread
    variables set to 1; prints the report as one JSON line."""
    parser = argparse.ArgumentParser(description="single-core inference timing")
    parser.add_argument("checkpoint")
    parser.add_argument("--data")
    parser.add_argument("--batch1-examples", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=("threshold", "sample"))
    parser.add_argument("--storage", choices=("float16",))
    args = parser.parse_args(argv)
    from condnn import checkpoint, datasets
    set_num_threads(1)
    loaded = checkpoint.load(args.checkpoint)
    data_set = datasets.load(args.data or loaded.metadata["data"])
    report = time_executions(loaded.model, data_set.x_test, batch1_examples=args.batch1_examples,
                             repeats=args.repeats, mode=args.mode, storage=args.storage)
    print(json.dumps(report.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
