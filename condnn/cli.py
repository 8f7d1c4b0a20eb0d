"""The ``condnn`` command: train, evaluate, bench, plot.

::

    condnn train                         # the default conditional MLP on the bundled MNIST
    condnn train --data idx:DIR --hidden 32x64,32x64 --tau 0.125 --epochs 12 --out runs/a
    condnn train --config run.json --seed 3        # flags override the config file
    condnn train --out runs/a --resume             # continue an interrupted run
    condnn evaluate runs/a/best.h5 [--json] [--mode sample]
    condnn bench --quick                 # benchmarks/sparse_dot.py, arguments passed through
    condnn plot runs/a/best.h5 [--out DIR]

Settings come from the defaults (:class:`condnn.train_config.TrainConfig`), then the config
file, then the flags.  Errors in the arguments are reported on one line naming the argument,
with exit status 2.
"""
import argparse
import importlib.util
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from condnn.checkpoint import CheckpointError
from condnn.train_config import (MODELS, OPTIMIZERS, TrainConfig, from_mapping, from_saved,
                                 load_config_file)

_FLAG_SETTINGS = ("data", "model", "hidden", "tau", "eps", "mode", "dropout", "lambda_s",
                  "lambda_v", "lambda_l2", "baseline", "baseline_momentum", "baseline_lr",
                  "optimizer", "lr", "policy_lr", "momentum", "batch_size", "epochs",
                  "patience", "train_size", "val_size", "seed", "out", "policy_init_scale",
                  "shared_blocks")


class UsageError(Exception):
    """A bad argument: reported without a traceback, exit status 2."""


def parse_hidden(text: str) -> List[Any]:
    """``"32x64,32x64"`` -> ``[[32, 64], [32, 64]]``; plain widths (``"1024,1024"``) for
    the dense model."""
    layers: List[Any] = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            if "x" in part:
                blocks, size = part.split("x")
                layers.append([int(blocks), int(size)])
            else:
                layers.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--hidden takes comma-separated layers, each BLOCKSxSIZE (e.g. 32x64,32x64) "
                f"or a plain width for the dense model, got {text!r}") from None
    return layers


def parse_tau(text: str) -> Any:
    """``"0.125"`` -> 0.125; ``"0.1,0.2"`` -> [0.1, 0.2] (one per hidden layer)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--tau takes a number or comma-separated numbers, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def parse_shared_blocks(text: str) -> Any:
    """``"auto"``; ``"4"`` -> 4; ``"4,2"`` -> [4, 2] (one per hidden layer)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shared-blocks takes auto, a count or comma-separated counts, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _train_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a conditional (or baseline) MLP",
                              description="Trains, validates each epoch, keeps the best and "
                              "last checkpoints and a JSON-lines log in --out, then reports "
                              "the test error, mean activation and single-core speedup.")
    p.add_argument("--config", help="JSON file of settings (flags override it)")
    p.add_argument("--data", help="mnist (default), idx:DIR, cifar10:PATH or svhn:DIR")
    p.add_argument("--model", choices=MODELS, help="condnet (default), dense or bdnn")
    p.add_argument("--hidden", type=parse_hidden,
                   help="hidden layers as BLOCKSxSIZE (default 48x64,48x64)")
    p.add_argument("--tau", type=parse_tau, help="target fraction of blocks on, or one per "
                   "layer (default 0.15)")
    p.add_argument("--shared-blocks", type=parse_shared_blocks, dest="shared_blocks",
                   help="blocks of each hidden layer that every example runs, or one count "
                   "per layer; auto (default): half of tau * blocks; 0: all routed")
    p.add_argument("--eps", type=float, help="policy squashing margin (default 0.01)")
    p.add_argument("--mode", choices=("threshold", "sample"),
                   help="evaluation masks (default threshold)")
    p.add_argument("--dropout", type=float,
                   help="dropout rate of the hidden units (condnet and dense; default 0.2)")
    p.add_argument("--lambda-s", type=float, dest="lambda_s", help="weight of L_b + L_e")
    p.add_argument("--lambda-v", type=float, dest="lambda_v", help="weight of L_v")
    p.add_argument("--lambda-l2", type=float, dest="lambda_l2", help="weight of |W|^2 + |Z|^2")
    p.add_argument("--baseline", help="REINFORCE baseline: none, batch-min, moving-average "
                   "(default), learned-linear, learned-scalar")
    p.add_argument("--baseline-momentum", type=float, dest="baseline_momentum")
    p.add_argument("--baseline-lr", type=float, dest="baseline_lr")
    p.add_argument("--policy-init-scale", type=float, dest="policy_init_scale")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, help="network learning rate")
    p.add_argument("--policy-lr", type=float, dest="policy_lr", help="policy learning rate")
    p.add_argument("--momentum", type=float)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--epochs", type=int)
    p.add_argument("--patience", type=int, help="early stopping after this many epochs "
                   "without a better validation error")
    p.add_argument("--train-size", type=int, dest="train_size",
                   help="use only this many training examples")
    p.add_argument("--val-size", type=int, dest="val_size")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output directory (default runs/condnet)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="where to train: cpu (default) or gpu (needs the GPU extra, "
                   "pip install \"condnn[gpu]\"); the final report times the CPU")
    p.add_argument("--resume", action="store_true", help="continue from --out/last.h5")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no epoch lines")
    p.add_argument("--no-timing", action="store_true", dest="no_timing",
                   help="skip the final single-core timing")
    p.add_argument("--batch1-examples", type=int, default=1000, dest="batch1_examples",
                   help="test examples timed at batch 1 at the end (default 1000)")


def _evaluate_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="test error, activation and single-core "
                              "speed of a checkpoint",
                              description="Test error, mean activation per layer and "
                              "single-core inference time of the sparse execution against "
                              "the same network run densely (numpy BLAS), at batch 256 and 1.")
    p.add_argument("checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--mode", choices=("threshold", "sample"),
                   help="evaluation masks (default: threshold, deterministic)")
    p.add_argument("--data", help="data set spec (default: the run's)")
    p.add_argument("--batch1-examples", type=int, dest="batch1_examples",
                   help="test examples timed at batch 1 (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes at batch 256")
    p.add_argument("--no-timing", action="store_true", dest="no_timing")
    p.add_argument("--half-weights", action="store_true", dest="half_weights",
                   help="store the block-sparse layers' weights in float16 (float32 "
                   "arithmetic): half their memory, faster products; the test error and "
                   "times are those of the rounded weights")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="condnn", description="Conditional-computation "
                                     "neural networks with block-sparse kernels.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _train_parser(subparsers)
    _evaluate_parser(subparsers)
    bench = subparsers.add_parser("bench", help="the block-sparse kernel benchmark "
                                  "(benchmarks/sparse_dot.py; arguments passed through)",
                                  add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    plot = subparsers.add_parser("plot", help="PNG figures of a checkpoint")
    plot.add_argument("checkpoint")
    plot.add_argument("--out", help="directory of the figures (default: the checkpoint's)")
    plot.add_argument("--data", help="data set spec (default: the run's)")
    return parser


def _train_config(args: argparse.Namespace) -> TrainConfig:
    flags = {name: getattr(args, name) for name in _FLAG_SETTINGS
             if getattr(args, name) is not None}
    if args.resume:
        from condnn import checkpoint
        out = flags.get("out") or (load_config_file(args.config).out if args.config
                                   else TrainConfig().out)
        last = os.path.join(out, "last.h5")
        if not os.path.exists(last):
            raise UsageError(f"--resume: no checkpoint {last!r} to continue from")
        base = from_saved(checkpoint.load(last).metadata["config"])
    else:
        base = load_config_file(args.config) if args.config else TrainConfig()
    return from_mapping(flags, base)


def _format_report(report: Dict[str, Any]) -> str:
    layers = ", ".join(f"{a:.3f}" for a in report["activation_per_layer"]) or "dense"
    lines = [f"test error {100 * report['test_error']:.2f}%  mean activation "
             f"{report['mean_activation']:.3f} (per layer {layers})  flops "
             f"{100 * report['flops_fraction']:.1f}% of the dense network"]
    if report.get("weight_storage") == "float16":
        lines.append("weights of the block-sparse layers stored in float16")
    if "time_sparse_s" in report:
        lines.append(
            f"single-core inference, {report['examples']} test examples at batch "
            f"{report['batch_size']}: sparse {report['time_sparse_s']:.3f} s, dense "
            f"{report['time_dense_s']:.3f} s: speedup {report['speedup']:.2f}x "
            f"(all blocks on, no policy: {report['time_all_on_s']:.3f} s, "
            f"{report['speedup_all_on']:.2f}x)")
        lines.append(
            f"at batch 1, {report['batch1_examples']} examples: sparse "
            f"{report['time_sparse_batch1_s']:.3f} s, dense {report['time_dense_batch1_s']:.3f}"
            f" s: speedup {report['speedup_batch1']:.2f}x (all on: "
            f"{report['speedup_all_on_batch1']:.2f}x)")
    if report.get("time_sparse_unconverted_s"):
        lines.append(
            f"the same copy with {report['weight_storage']} weights against its own dtype's, "
            f"timed in turn: {report['time_sparse_s']:.3f} s against "
            f"{report['time_sparse_unconverted_s']:.3f} s at batch {report['batch_size']}, "
            f"{report['time_sparse_batch1_s']:.3f} s against "
            f"{report['time_sparse_unconverted_batch1_s']:.3f} s at batch 1")
    return "\n".join(lines)


def _command_train(args: argparse.Namespace) -> int:
    from condnn.report import checkpoint_report
    from condnn.train import train
    config = _train_config(args)
    echo = None if args.quiet else (lambda line: print(line, flush=True))
    if not args.quiet:
        target = "" if config.model == "dense" else f" tau {config.tau}"
        print(f"training {config.model} {config.hidden}{target} on {config.data} for "
              f"{config.epochs} epochs into {config.out}", flush=True)
    if args.device == "gpu":
        import condnn.gpu
        if not condnn.gpu.available():
            raise UsageError(f"--device gpu: {condnn.gpu.unavailable_reason()}")
    result = train(config, resume=args.resume, quiet=args.quiet, echo=echo, device=args.device)
    seconds = [r["seconds"] for r in result.log]
    report = checkpoint_report(result.best_path, data=config.data, timing=not args.no_timing,
                               batch1_examples=args.batch1_examples,
                               repeats=3)
    print(f"best epoch {result.best_epoch} (validation error "
          f"{100 * result.best_val_error:.2f}%), {sum(seconds) / max(len(seconds), 1):.1f} s "
          f"per training epoch; checkpoint {result.best_path}")
    print(_format_report(report))
    return 0


def _command_evaluate(args: argparse.Namespace) -> int:
    from condnn.report import checkpoint_report
    if args.repeats < 1:
        raise UsageError(f"--repeats must be at least 1, got {args.repeats}")
    if args.batch1_examples is not None and args.batch1_examples < 1:
        raise UsageError(f"--batch1-examples must be at least 1, got {args.batch1_examples}")
    if not os.path.exists(args.checkpoint):
        raise UsageError(f"checkpoint {args.checkpoint!r} does not exist")
    report = checkpoint_report(args.checkpoint, data=args.data, mode=args.mode,
                               timing=not args.no_timing, batch1_examples=args.batch1_examples,
                               repeats=args.repeats,
                               storage="float16" if args.half_weights else None)
    print(json.dumps(report) if args.json else _format_report(report))
    return 0


def benchmark_script() -> Optional[str]:
    """The path of ``benchmarks/sparse_dot.py`` of the source tree, or None if condnn is
    installed without it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "benchmarks", "sparse_dot.py")
    return path if os.path.isfile(path) else None


def _command_bench(args: argparse.Namespace) -> int:
    path = benchmark_script()
    if path is None:
        raise UsageError("condnn bench runs benchmarks/sparse_dot.py of the source tree, "
                         "which this installation does not have: run it from a checkout of "
                         "condnn (python benchmarks/sparse_dot.py, or pip install -e .)")
    spec = importlib.util.spec_from_file_location("condnn_bench_sparse_dot", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main(list(args.args))
    return int(status or 0)


def _command_plot(args: argparse.Namespace) -> int:
    from condnn import checkpoint, datasets
    from condnn.plots import MissingDependency, write_figures
    from condnn.train import LOG_NAME, read_log
    if not os.path.exists(args.checkpoint):
        raise UsageError(f"checkpoint {args.checkpoint!r} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("condnn plot needs matplotlib: pip install matplotlib (or "
                         "pip install 'condnn[plot]')") from None
    loaded = checkpoint.load(args.checkpoint)
    data = datasets.load(args.data or loaded.metadata.get("data", "mnist"))
    directory = os.path.dirname(os.path.abspath(args.checkpoint))
    log_path = os.path.join(directory, LOG_NAME)
    records = read_log(log_path, up_to_epoch=10 ** 9)
    if not records:
        print(f"condnn plot: no log {log_path!r} next to the checkpoint: no learning curves",
              file=sys.stderr)
    try:
        written = write_figures(loaded.model, data.x_test, data.y_test, records,
                                args.out or directory)
    except MissingDependency as error:
        raise UsageError(str(error)) from None
    for path in written:
        print(path)
    return 0


COMMANDS = {"train": _command_train, "evaluate": _command_evaluate, "bench": _command_bench,
            "plot": _command_plot}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:    # everything after "bench" belongs to the benchmark
        args = argparse.Namespace(command="bench", args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        parser.exit(2, f"condnn {args.command}: error: {error}\n")
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        # Settings out of range, unreadable data or checkpoints: the message names them.
        parser.exit(2, f"condnn {args.command}: error: {error}\n")
    return 0
