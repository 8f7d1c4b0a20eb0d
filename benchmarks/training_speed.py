"""Training speed: seconds per epoch of the default conditional MLP (and its dense twin) on
one CPU core, on every core, and on the GPU when there is one.

Usage::

    python benchmarks/training_speed.py [--steps N] [--quick] [--out-dir DIR]

Each configuration trains for ``--steps`` steps on random batches of the bundled MNIST (the
first two, warm-up, not counted) and the time is scaled to an epoch of the trainer's
55,000 examples.  On the GPU the timed steps end with a copy of the parameters to the host,
so the work queued on the device is included.  Writes ``training_speed.md`` and ``.csv``
(``training_speed_quick.*`` with ``--quick``) in ``--out-dir`` (default
``benchmarks/results``).  A GPU that is missing is reported as such; the CPU rows are
measured all the same.  Where the environment forces an OpenBLAS core type, every CPU time
is also measured in a subprocess without it, and the faster one is kept
(:func:`fastest_seconds_per_epoch`).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import benchlib  # noqa: E402

import condnn  # noqa: E402
import condnn.gpu  # noqa: E402
from condnn import datasets  # noqa: E402
from condnn.device import to_device  # noqa: E402
from condnn.inference_timing import blas_core_overrides  # noqa: E402
from condnn.objective import ConditionalObjective  # noqa: E402
from condnn.models import DenseMLP  # noqa: E402
from condnn.thread_teams import one_team  # noqa: E402
from condnn.train import build_baseline, build_model, build_optimizer, load_split  # noqa: E402
from condnn.train_config import TrainConfig, from_mapping  # noqa: E402

COLUMNS = ["model", "device", "threads", "seconds_per_epoch", "steps_timed"]


def seconds_per_epoch(config: TrainConfig, data: datasets.DataSet, steps: int,
                      device: str = "cpu", threads: Optional[int] = 1) -> float:
    """Training seconds per epoch of ``config``'s model from ``steps`` timed steps (after
    two of warm-up) on random batches; on the CPU with ``threads`` threads for the heavy
    products (None: as set), or on the GPU."""
    split = load_split(config, data)
    model = build_model(config, split.x_train.shape[1], split.classes,
                        input_mean=split.x_train.mean(axis=0, dtype=np.float64))
    steps_per_epoch = -(-len(split.y_train) // config.batch_size)
    optimizer = build_optimizer(config, model, config.epochs * steps_per_epoch)
    objective = ConditionalObjective(config.lambda_s, config.lambda_v, config.lambda_l2,
                                     build_baseline(config, split.x_train.shape[1]))
    if device == "gpu":
        model.to_gpu(optimizer)
    rng = np.random.default_rng(0)
    with _threads(threads if device == "cpu" else None,
                  block_sparse=not isinstance(model, DenseMLP)):
        for step in range(steps + 2):
            if step == 2:
                start = time.perf_counter()
            batch = rng.integers(0, len(split.y_train), config.batch_size)
            x, y = split.x_train[batch], split.y_train[batch]
            if device == "gpu":
                x, y = to_device(x, "gpu"), to_device(y.astype(np.int64), "gpu")
                objective.step(model, x, y, report_l2=False, check_labels=False)
            else:
                objective.step(model, x, y, report_l2=False)
            optimizer.step()
        if device == "gpu":      # waits for the device's queued work
            to_device(next(iter(model.named_params().values())), "cpu")
        return (time.perf_counter() - start) / steps * steps_per_epoch


def fastest_seconds_per_epoch(config: TrainConfig, data: datasets.DataSet, steps: int,
                              threads: Optional[int] = 1) -> float:
    """:func:`seconds_per_epoch` on the CPU, and where the environment forces an OpenBLAS
    core type (:func:`condnn.inference_timing.blas_core_overrides`), the faster of it and
    of the same measurement in a subprocess without that: a dense model is then trained
    with the BLAS's best kernels for this CPU."""
    seconds = seconds_per_epoch(config, data, steps, "cpu", threads)
    overrides = blas_core_overrides()
    if not overrides:
        return seconds
    env = {name: value for name, value in os.environ.items() if name not in overrides}
    request = {"config": config.to_dict(), "steps": steps, "threads": threads}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker"],
                          input=json.dumps(request), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the training-speed subprocess failed:\n{done.stderr[-2000:]}")
    return min(seconds, float(done.stdout.strip().splitlines()[-1]))


def _worker() -> int:
    """Reads {config, steps, threads} as JSON from stdin, prints the seconds per epoch."""
    request = json.load(sys.stdin)
    config = from_mapping(request["config"])
    print(seconds_per_epoch(config, datasets.load(config.data), request["steps"], "cpu",
                            request["threads"]))
    return 0


@contextmanager
def _threads(n: Optional[int], block_sparse: bool) -> Iterator[None]:
    """n threads for the model's heavy products (None: unchanged), restored on exit.  As
    the trainer does (condnn.thread_teams), only one library runs a team: condnn's kernels
    for a block-sparse model, with the BLAS on one thread, and the BLAS for a dense one."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    previous = condnn.get_num_threads()
    condnn.set_num_threads(n)
    try:
        with threadpool_limits(limits=n), one_team(block_sparse):
            yield
    finally:
        condnn.set_num_threads(previous)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--worker"]:
        return _worker()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, help="timed steps per configuration "
                   "(default 40, quick 3)")
    p.add_argument("--quick", action="store_true", help="a small network, a few steps")
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    base = TrainConfig()
    if args.quick:
        base = base.replace(hidden=[[8, 32], [8, 32]], tau=0.25, train_size=2000,
                            val_size=500)
    steps = args.steps or (3 if args.quick else 40)
    data = datasets.load(base.data)
    configs = {"condnet": base,
               "dense twin": base.replace(model="dense", hidden=base.widths())}
    cores = os.cpu_count() or 1
    rows: List[Dict[str, Any]] = []
    gpu_reason = condnn.gpu.unavailable_reason()
    for name, config in configs.items():
        for threads in sorted({1, cores}):
            rows.append({"model": name, "device": "cpu", "threads": threads,
                         "seconds_per_epoch": fastest_seconds_per_epoch(config, data, steps,
                                                                        threads),
                         "steps_timed": steps})
        if gpu_reason is None:
            rows.append({"model": name, "device": "gpu", "threads": "",
                         "seconds_per_epoch": seconds_per_epoch(config, data, steps, "gpu"),
                         "steps_timed": steps})
    suffix = "_quick" if args.quick else ""
    os.makedirs(args.out_dir, exist_ok=True)
    name = os.path.join(args.out_dir, "training_speed" + suffix)
    benchlib.atomic_write(name + ".csv", benchlib.csv_text(COLUMNS, rows))
    overrides = blas_core_overrides()
    setup = [f"- cpu: {benchlib.cpu_model()}, {cores} cores",
             "- BLAS: " + (f"each CPU time the faster of the environment as is and without "
                           f"{' and '.join(overrides)}" if overrides else
                           "the environment forces no OpenBLAS core type"),
             f"- gpu: {'unavailable: ' + gpu_reason if gpu_reason else 'used'}",
             f"- settings: {base.hidden} tau {base.tau}, batch {base.batch_size}",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]
    benchlib.atomic_write(name + ".md", "\n".join(
        ["# Training speed", ""] + setup + ["", benchlib.markdown_table(COLUMNS, rows)]) + "\n")
    print("\n".join(benchlib.text_table(COLUMNS, rows)))
    if gpu_reason:
        print(f"GPU not measured: {gpu_reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
