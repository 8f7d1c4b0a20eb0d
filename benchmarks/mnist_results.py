"""MNIST results: a conditional MLP against its dense execution, block dropout and dense nets.

Usage::

    python benchmarks/mnist_results.py            # the full run (about 20-25 min, 2 quiet cores)
    python benchmarks/mnist_results.py --quick    # a smoke run on a subset (a minute or two)

It trains, with the settings of ``condnn train`` (:class:`condnn.train_config.TrainConfig`):

(a) the condnet: the default conditional MLP;
(b) the same network run with every block on (no training: (a)'s weights, no policy);
(c) block dropout (bdNN) at (a)'s measured mean test activation, its masks drawn at random in
    evaluation too, so that it runs as sparsely as (a);
(d) a dense net with (a)'s inference multiply-adds (policy included), as many hidden layers of
    one width;
(e) the dense twin: a dense net of (a)'s widths;
and, for the Pareto plot, condnets at other tau and dense nets at other widths.  Every
condnet is also evaluated and timed with its block-sparse layers' weights stored in float16
(``condnn evaluate --half-weights``; its own test error, that of the rounded weights).

Every model is then timed alone, on one core (``condnn.inference_timing``), on the test set
at batch 256 and on the first ``--batch1-examples`` test images at batch 1.  Training runs
two at a time, one thread each (``--workers``), so the seconds per epoch of the logs are
those of a shared machine; the seconds per epoch of (a) and (e) are also measured alone, on
one core, over ``--step-sample`` steps.

Each condnet is then set against the most accurate dense net that runs no slower, at batch
256 and at batch 1 (:func:`best_dense_within`): the target is a condnet whose test error is
lower than that net's.

Writes in ``--out-dir`` (default ``benchmarks/results``): ``mnist_results.md`` and ``.csv``
(the table), ``mnist_pareto.csv`` and ``mnist_pareto.png`` (test error against single-core
time), ``mnist_results.json`` (every number); ``--quick`` writes ``mnist_results_quick.*``.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import benchlib  # noqa: E402
from training_speed import fastest_seconds_per_epoch  # noqa: E402

import condnn  # noqa: E402
from condnn import datasets  # noqa: E402
from condnn.inference_timing import THREAD_VARIABLES  # noqa: E402
from condnn.report import checkpoint_report  # noqa: E402
from condnn.train_config import TrainConfig  # noqa: E402

TABLE_COLUMNS = ["model", "description", "test_error_pct", "mean_activation",
                 "flops_pct", "batch1_s", "batch256_s", "speedup_batch1_vs_b",
                 "speedup_batch256_vs_b", "train_s_per_epoch"]
PARETO_COLUMNS = ["family", "setting", "test_error_pct", "batch1_s", "batch256_s",
                  "flops_pct"]
VERDICT_COLUMNS = ["condnet", "test_error_pct", "batch256_s", "dense_no_slower_batch256",
                   "dense_error_batch256_pct", "below_dense_batch256", "batch1_s",
                   "dense_no_slower_batch1", "dense_error_batch1_pct", "below_dense_batch1"]


def best_dense_within(dense: Sequence[Dict[str, Any]], key: str,
                      seconds: float) -> Optional[Dict[str, Any]]:
    """The most accurate of the dense nets that run in ``seconds`` or less of single-core
    time (``key``: "batch256_s" or "batch1_s"), or None if none is that fast: what a user
    with that time to spend would pick instead of a condnet."""
    within = [p for p in dense if p[key] <= seconds]
    return min(within, key=lambda p: p["test_error_pct"]) if within else None


def against_dense(pareto: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """For every condnet point, at batch 256 and at batch 1, the best dense net that runs
    no slower (see :func:`best_dense_within`): the condnet is below the dense nets' curve
    where its own test error is lower."""
    dense = [p for p in pareto if p["family"] == "dense"]
    rows = []
    for p in pareto:
        if p["family"] == "dense":
            continue
        row = {"condnet": p["setting"] + (", float16" if "float16" in p["family"] else ""),
               "test_error_pct": p["test_error_pct"]}
        for key, name in (("batch256_s", "batch256"), ("batch1_s", "batch1")):
            best = best_dense_within(dense, key, p[key])
            row[key] = p[key]
            row[f"dense_no_slower_{name}"] = "none" if best is None else best["setting"]
            row[f"dense_error_{name}_pct"] = "" if best is None else best["test_error_pct"]
            row[f"below_dense_{name}"] = best is None or \
                p["test_error_pct"] < best["test_error_pct"]
        rows.append(row)
    return rows


def dense_width_for(macs: float, n_in: int, n_classes: int, layers: int) -> int:
    """The width w of ``layers`` dense hidden layers with about ``macs`` multiply-adds per
    example: ``n_in w + (layers - 1) w^2 + w n_classes = macs``."""
    a, b = layers - 1, n_in + n_classes
    width = macs / b if a == 0 else (-b + np.sqrt(b * b + 4 * a * macs)) / (2 * a)
    return max(8, int(round(width / 8)) * 8)     # a multiple of 8, as BLAS likes


class Jobs:
    """Training runs as ``condnn train`` subprocesses, ``workers`` at a time, one thread
    each."""

    def __init__(self, workers: int, runs_dir: str, reuse: bool = False) -> None:
        self.workers, self.runs_dir, self.reuse = workers, runs_dir, reuse
        self.waiting: List[Dict[str, Any]] = []
        self.running: Dict[str, subprocess.Popen] = {}
        self.done: Dict[str, str] = {}
        self.names: List[str] = []
        self.env = dict(os.environ, **{name: "1" for name in THREAD_VARIABLES})
        self.env["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])

    def add(self, name: str, config: TrainConfig) -> None:
        out = os.path.join(self.runs_dir, name)
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "settings.json")
        settings = config.replace(out=out).to_dict()
        self.names.append(name)
        if self.reuse and _finished(out, settings):
            self.done[name] = os.path.join(out, "best.h5")
            print(f"  reusing {name}", flush=True)
            return
        with open(path, "w") as f:
            json.dump(settings, f)
        self.waiting.append({"name": name, "config": path, "out": out})

    def _start(self) -> None:
        while self.waiting and len(self.running) < self.workers:
            job = self.waiting.pop(0)
            log = open(os.path.join(job["out"], "stdout.txt"), "w")
            self.running[job["name"]] = subprocess.Popen(
                [sys.executable, "-m", "condnn", "train", "--config", job["config"], "--quiet",
                 "--no-timing"], stdout=log, stderr=subprocess.STDOUT, env=self.env)
            self.running[job["name"]].out = job["out"]
            print(f"  training {job['name']}", flush=True)

    def wait_for(self, names: Sequence[str]) -> None:
        """Runs jobs until every job in names has finished."""
        while True:
            self._start()
            for name, process in list(self.running.items()):
                if process.poll() is not None:
                    del self.running[name]
                    if process.returncode != 0:
                        with open(os.path.join(process.out, "stdout.txt")) as f:
                            raise RuntimeError(f"training {name} failed:\n{f.read()[-3000:]}")
                    self.done[name] = os.path.join(process.out, "best.h5")
                    print(f"  finished {name}", flush=True)
            if all(n in self.done for n in names):
                return
            time.sleep(0.5)


def _finished(out: str, settings: Dict[str, Any]) -> bool:
    """True if ``out`` holds a run of exactly these settings that ran all its epochs."""
    try:
        with open(os.path.join(out, "settings.json")) as f:
            same = json.load(f) == settings
        with open(os.path.join(out, "log.jsonl")) as f:
            epochs = [json.loads(line)["epoch"] for line in f if line.strip()]
    except (OSError, ValueError, KeyError):
        return False
    return same and bool(epochs) and epochs[-1] == settings["epochs"] \
        and os.path.exists(os.path.join(out, "best.h5"))


def describe(widths: Sequence[int]) -> str:
    """Hidden widths as 1024x1024."""
    return "x".join(str(w) for w in widths)


def row(name: str, description: str, report: Dict[str, Any], error: float,
        time1: float, time256: float, reference: Dict[str, Any],
        train_seconds: Optional[float]) -> Dict[str, Any]:
    return {"model": name, "description": description, "test_error_pct": 100 * error,
            "mean_activation": report["mean_activation"],
            "flops_pct": 100 * report["flops_fraction"], "batch1_s": time1,
            "batch256_s": time256,
            "speedup_batch1_vs_b": reference["time_all_on_batch1_s"] / time1,
            "speedup_batch256_vs_b": reference["time_all_on_s"] / time256,
            "train_s_per_epoch": "" if train_seconds is None else train_seconds}


def storage_gains(report: Dict[str, Any]) -> Tuple[float, float]:
    """How many times faster the float16 copy of a report ran than the float32 copy timed
    in the same turns, at batch 256 and at batch 1."""
    return (report["time_sparse_unconverted_s"] / report["time_sparse_s"],
            report["time_sparse_unconverted_batch1_s"] / report["time_sparse_batch1_s"])


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run on a subset")
    p.add_argument("--data", default="mnist")
    p.add_argument("--epochs", type=int, help="epochs of every run (default: condnn train's)")
    p.add_argument("--workers", type=int, default=2, help="trainings at a time")
    p.add_argument("--batch1-examples", type=int, help="test images timed at batch 1 "
                   "(default 1000, quick 100)")
    p.add_argument("--step-sample", type=int, help="steps timed for the seconds per epoch "
                   "alone (default 40, quick 5)")
    p.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--runs-dir", help="where the runs' checkpoints go (default: a temporary "
                   "directory, removed at the end)")
    p.add_argument("--reuse", action="store_true", help="keep the runs in --runs-dir that "
                   "finished with the same settings (to time them again) instead of "
                   "training them again")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    base = TrainConfig(data=args.data)
    suffix = "_quick" if args.quick else ""
    if args.quick:
        base = base.replace(hidden=[[8, 32], [8, 32]], tau=0.25, epochs=1, train_size=2000,
                            val_size=500)
    if args.epochs:
        base = base.replace(epochs=args.epochs)
    batch1 = args.batch1_examples or (100 if args.quick else 1000)
    step_sample = args.step_sample or (5 if args.quick else 40)
    taus = [base.tau] + ([0.5] if args.quick else [0.08, 0.25])
    block_widths = base.widths()
    dense_widths = [64, 128] if args.quick else [256, 384, 512, 768, 1024]
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="condnn-mnist-")
    os.makedirs(args.out_dir, exist_ok=True)
    started = time.time()
    data = datasets.load(args.data)
    n_in, n_classes = data.x_train.shape[1], data.classes

    print(f"training into {runs_dir}", flush=True)
    if args.reuse and not args.runs_dir:
        raise SystemExit("--reuse needs --runs-dir")
    jobs = Jobs(args.workers, runs_dir, reuse=args.reuse)
    jobs.add("condnet", base)
    jobs.add("dense_twin", base.replace(model="dense", hidden=block_widths))
    for tau in taus[1:]:
        jobs.add(f"condnet_tau{tau:g}", base.replace(tau=tau))
    for width in dense_widths:
        jobs.add(f"dense_{width}", base.replace(model="dense", hidden=[width] * len(block_widths)))
    jobs.wait_for(["condnet"])

    # (c) and (d) need (a)'s measured activation and cost.
    condnet = checkpoint_report(jobs.done["condnet"], timing=False, data_set=data)
    keep = float(np.clip(condnet["mean_activation"], 0.01, 0.99))
    ckpt = condnn.load(jobs.done["condnet"])
    products = ckpt.model.products()
    macs = condnet["flops_fraction"] * condnn.flops.dense_macs(products)
    width = dense_width_for(macs, n_in, n_classes, len(block_widths))
    jobs.add("bdnn", base.replace(model="bdnn", tau=round(keep, 4)))
    jobs.add("dense_same_flops", base.replace(model="dense", hidden=[width] * len(block_widths)))
    jobs.wait_for(jobs.names)

    print("timing each model alone on one core", flush=True)
    reports = {name: checkpoint_report(path, data=args.data, batch1_examples=batch1,
                                       data_set=data, repeats=3)
               for name, path in jobs.done.items()}
    half = {name: checkpoint_report(path, data=args.data, batch1_examples=batch1,
                                    data_set=data, repeats=3, storage="float16")
            for name, path in jobs.done.items() if name.startswith("condnet")}
    alone = {name: fastest_seconds_per_epoch(base if name == "condnet" else
                                             base.replace(model="dense", hidden=block_widths),
                                             data, step_sample, threads=1)
             for name in ("condnet", "dense_twin")}
    logs = {}
    for name, path in jobs.done.items():
        with open(os.path.join(os.path.dirname(path), "log.jsonl")) as f:
            logs[name] = [json.loads(line) for line in f]
    log_seconds = {name: float(np.median([r["seconds"] for r in records]))
                   for name, records in logs.items()}

    a, e = reports["condnet"], reports["dense_twin"]
    rows = [
        row("(a) condnet", f"{base.hidden} tau {base.tau}, sparse kernels", a,
            a["test_error"], a["time_sparse_batch1_s"], a["time_sparse_s"], a,
            alone["condnet"]),
        row("(a') condnet run densely", "the same masks and outputs, BLAS products", a,
            a["test_error"], a["time_dense_batch1_s"], a["time_dense_s"], a, None),
        row("(a16) condnet, float16 weights", "(a) with its block-sparse layers' weights "
            "stored in float16; {:.2f}x / {:.2f}x (batch 256 / 1) the speed of the float32 "
            "copy timed in turn".format(*storage_gains(half["condnet"])), half["condnet"],
            half["condnet"]["test_error"], half["condnet"]["time_sparse_batch1_s"],
            half["condnet"]["time_sparse_s"], a, None),
        row("(b) every block on", "(a)'s weights, no policy, BLAS", a,
            _all_on_error(jobs.done["condnet"], data), a["time_all_on_batch1_s"],
            a["time_all_on_s"], a, None),
        row("(c) bdNN", f"block dropout, keep {keep:.3f}, random masks in evaluation",
            reports["bdnn"], reports["bdnn"]["test_error"],
            reports["bdnn"]["time_sparse_batch1_s"], reports["bdnn"]["time_sparse_s"], a,
            log_seconds["bdnn"]),
        row("(d) dense, (a)'s FLOPs", f"{describe([width] * len(block_widths))}",
            reports["dense_same_flops"], reports["dense_same_flops"]["test_error"],
            reports["dense_same_flops"]["time_dense_batch1_s"],
            reports["dense_same_flops"]["time_dense_s"], a, log_seconds["dense_same_flops"]),
        row("(e) dense twin", describe(block_widths), e, e["test_error"],
            e["time_dense_batch1_s"], e["time_dense_s"], a, alone["dense_twin"]),
    ]
    rows[3]["mean_activation"], rows[3]["flops_pct"] = 1.0, 100.0
    pareto = []
    condnets = [(name, "condnet", report) for name, report in reports.items()
                if name.startswith("condnet")]
    condnets += [(name, "condnet float16", report) for name, report in half.items()]
    for name, family, report in condnets:
        tau = base.tau if name == "condnet" else float(name[len("condnet_tau"):])
        pareto.append({"family": family, "setting": f"tau {tau:g}",
                       "test_error_pct": 100 * report["test_error"],
                       "batch1_s": report["time_sparse_batch1_s"],
                       "batch256_s": report["time_sparse_s"],
                       "flops_pct": 100 * report["flops_fraction"]})
    for name, report in reports.items():
        if name.startswith("dense"):
            widths = condnn.load(jobs.done[name]).model.hidden
            pareto.append({"family": "dense", "setting": describe(widths),
                           "test_error_pct": 100 * report["test_error"],
                           "batch1_s": report["time_dense_batch1_s"],
                           "batch256_s": report["time_dense_s"], "flops_pct": 100.0})
    pareto.sort(key=lambda r: (r["family"], r["batch256_s"]))

    setup = {"data": args.data, "cpu": benchlib.cpu_model(), **benchlib.blas_info(),
             "settings": json.dumps({k: v for k, v in base.to_dict().items() if k != "out"}),
             "test examples": a["examples"], "batch-1 examples": a["batch1_examples"],
             "wall time": f"{(time.time() - started) / 60:.1f} min",
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    verdict = against_dense(pareto)
    _write(args.out_dir, suffix, rows, pareto, verdict, setup, {**reports, **{
        f"{name} float16": report for name, report in half.items()}}, logs, alone, log_seconds)
    if not args.runs_dir:
        shutil.rmtree(runs_dir, ignore_errors=True)
    print("\n".join(benchlib.text_table(TABLE_COLUMNS, rows)))
    print("\n".join(benchlib.text_table(VERDICT_COLUMNS, verdict)))
    return 0


def _all_on_error(path: str, data: datasets.DataSet) -> float:
    from condnn.evaluation import evaluate
    model = condnn.load(path).model
    return evaluate(model, data.x_test, data.y_test, execution="all_on").error


def _write(out_dir: str, suffix: str, rows, pareto, verdict, setup, reports, logs, alone,
           log_seconds) -> None:
    name = os.path.join(out_dir, "mnist_results" + suffix)
    benchlib.atomic_write(name + ".csv", benchlib.csv_text(TABLE_COLUMNS, rows))
    benchlib.atomic_write(os.path.join(out_dir, f"mnist_pareto{suffix}.csv"),
                          benchlib.csv_text(PARETO_COLUMNS, pareto))
    a = reports["condnet"]
    md = ["# condnn on MNIST", ""]
    md += [f"- {key}: {value}" for key, value in setup.items()]
    md += ["", "Single-core inference time of the whole test set at batch 256, and of the "
           "batch-1 examples one by one; speedups are over (b), the same network with every "
           "block on.  Training seconds per epoch: (a) and (e) timed alone on one core, the "
           "others from their logs (two runs at a time).", "",
           benchlib.markdown_table(TABLE_COLUMNS, rows), "",
           f"(a) against its own dense execution (a'): {a['speedup']:.2f}x at batch 256, "
           f"{a['speedup_batch1']:.2f}x at batch 1.  Training: {alone['condnet']:.1f} s per "
           f"epoch against {alone['dense_twin']:.1f} s for the dense twin.", "",
           "Pareto points (test error against single-core time):", "",
           benchlib.markdown_table(PARETO_COLUMNS, pareto), "",
           "Each condnet against the most accurate of the dense nets above that runs no "
           "slower: a condnet is below the dense nets' curve where its test error is lower "
           "(single runs: a seed alone moves a test error by about 0.1 point).", "",
           benchlib.markdown_table(VERDICT_COLUMNS, verdict), "",
           f"![Pareto](mnist_pareto{suffix}.png)"]
    benchlib.atomic_write(name + ".md", "\n".join(md) + "\n")
    benchlib.atomic_write(name + ".json", json.dumps(
        {"setup": setup, "table": rows, "pareto": pareto, "against_dense": verdict,
         "reports": reports, "logs": logs,
         "train_seconds_alone": alone, "train_seconds_log_median": log_seconds}, indent=1))
    _pareto_plot(pareto, os.path.join(out_dir, f"mnist_pareto{suffix}.png"))


def _pareto_plot(points, path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no Pareto plot", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, title in ((axes[0], "batch256_s", "batch 256 (whole test set)"),
                             (axes[1], "batch1_s", "batch 1")):
        for family, marker in (("condnet", "o"), ("condnet float16", "^"), ("dense", "s")):
            chosen = sorted((p for p in points if p["family"] == family), key=lambda p: p[key])
            axis.plot([p[key] for p in chosen], [p["test_error_pct"] for p in chosen],
                      marker=marker, label=family)
            for p in chosen:      # labels of the float16 points below theirs, apart
                axis.annotate(p["setting"], (p[key], p["test_error_pct"]), fontsize=7,
                              xytext=(3, -9 if family == "condnet float16" else 3),
                              textcoords="offset points")
        axis.set_xscale("log")
        axis.set_xlabel("single-core inference time (s)")
        axis.set_ylabel("test error (%)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path + ".tmp.png", dpi=120)
    plt.close(figure)
    os.replace(path + ".tmp.png", path)


if __name__ == "__main__":
    sys.exit(main())
