"""condnn's CPU performance targets, measured in one run and reported PASS or FAIL.

A report, not a test: it always exits 0 and says what it measured, slower results as slower.
Every configuration is float32, n = 1024, k = m = 4096, one thread, unless it says otherwise;
speedups are against the fastest dense NumPy baseline of ``sparse_dot.py`` (whose docstring
describes how it is measured).

Usage::

    python benchmarks/targets.py [--rounds R] [--min-time S] [--out-dir DIR]

Every point and every dense baseline is measured in R rounds (default 3), one after the
other, and each side's time is the median over the rounds: on a shared machine the load
changes from minute to minute, and a baseline measured once, minutes away from the points
it is compared with, can make a ratio look better or worse than it is.  The report also says
how many targets each round met on its own.

Writes ``targets_cpu.md``, ``targets_cpu.csv`` (the combined points) and
``targets_cpu_rounds.csv`` (every round's points, with a ``round`` column) in the output
directory (default ``benchmarks/results``).  Takes every core for a few minutes per round:
the dense baselines at this size run for about a second each.
"""
import argparse
import os
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import benchlib  # noqa: E402
import sparse_dot  # noqa: E402
from benchlib import Point  # noqa: E402

Row = Dict[str, object]


def point(variant: str = "ss", bs: int = 64, density: float = 0.25, n: int = 1024,
          k: int = 4096, pass_: str = "fwd", threads: int = 1) -> Point:
    return Point(variant, pass_, n, k, k, bs, density, threads, "float32")


@dataclass
class Target:
    """A goal: ``measure(rows)`` gives the measured value, compared with ``goal``."""
    name: str
    points: Tuple[Point, ...]
    measure: Callable[[Dict[Point, Row]], float]
    goal: float
    unit: str     # how the value reads: "x dense", "x bs64 throughput", ...

    def check(self, rows: Dict[Point, Row]) -> Tuple[float, bool]:
        value = self.measure(rows)
        return value, value >= self.goal


def _speedup(p: Point) -> Callable[[Dict[Point, Row]], float]:
    return lambda rows: float(rows[p]["speedup"])


def _throughput_ratio(p: Point, q: Point) -> Callable[[Dict[Point, Row]], float]:
    """Useful GFLOP/s of p over that of q."""
    return lambda rows: float(rows[p]["useful_gflops"]) / float(rows[q]["useful_gflops"])


def targets() -> List[Target]:
    ss64 = point()
    result = [
        Target("ss bs64 d0.25 forward", (ss64,), _speedup(ss64), 8.0, "x dense"),
        Target("ss bs64 d0.1 forward", (point(density=0.1),), _speedup(point(density=0.1)),
               25.0, "x dense"),
    ]
    for variant in ("sf", "fs"):
        for density, goal in ((0.25, 2.5), (0.1, 5.0)):
            p = point(variant, density=density)
            result.append(Target(f"{variant} bs64 d{density} forward", (p,), _speedup(p), goal,
                                 "x dense"))
    ss32 = point(bs=32)
    # "bs32 within 1.5x of bs64": bs32's throughput at least 1 / 1.5 of bs64's.
    result.append(Target("ss bs32 d0.25 throughput vs bs64", (ss32, ss64),
                         _throughput_ratio(ss32, ss64), 1 / 1.5, "x bs64 GFLOP/s"))
    ss16 = point(bs=16)
    result.append(Target("ss bs16 d0.25 forward beats dense", (ss16,), _speedup(ss16), 1.0,
                         "x dense"))
    for n in (1, 64):
        p = point(n=n, k=1024)
        result.append(Target(f"ss bs64 d0.25 forward, n={n}, k=m=1024", (p,), _speedup(p), 4.0,
                             "x dense"))
    bwd = point(pass_="bwd")
    result.append(Target("ss bs64 d0.25 backward (da and db) vs dense backward", (bwd,),
                         _speedup(bwd), 4.0, "x dense"))
    for density in (0.25, 0.1):
        p = point(density=density, pass_="fwd-blocks")
        result.append(Target(f"ss bs64 d{density} forward, b as BlockWeights (not a target of "
                             f"its own: the goal of the plain matrix)", (p,), _speedup(p),
                             8.0 if density == 0.25 else 25.0, "x dense"))
    two = point(threads=2)
    result.append(Target("ss bs64 d0.25 forward, 2 threads vs 1", (two, ss64),
                         _throughput_ratio(two, ss64), 1.8, "x 1-thread GFLOP/s"))
    return result


def point_of(row: Row) -> Point:
    return Point(row["variant"], row["pass"], row["n"], row["k"], row["m"], row["bs"],
                 row["density"], row["threads"], row["dtype"])


def combine_rounds(rounds: Sequence[Sequence[Row]]) -> List[Row]:
    """One row per point from several rounds' rows: condnn's time and each dense baseline's
    are the medians over the rounds, and the figures derived from them (throughputs, speedup)
    are computed again from those medians.  The points are those of the first round, in its
    order; every round must hold the same points."""
    by_point: Dict[Point, List[Row]] = {}
    for rows in rounds:
        if Counter(map(point_of, rows)) != Counter(map(point_of, rounds[0])):
            raise ValueError("every round must measure the same points")
        for row in rows:
            by_point.setdefault(point_of(row), []).append(row)
    combined = []
    for p, rows in by_point.items():
        first = rows[0]
        # The work is the same in every round (the problems are seeded).
        useful_flops = float(first["useful_gflops"]) * float(first["condnn_ms"]) * 1e6
        dense_flops = float(first["dense_gflops"]) * min(float(first["dense_env_ms"]),
                                                         float(first["dense_unset_ms"])) * 1e6
        median = {key: statistics.median(float(r[key]) for r in rows)
                  for key in ("condnn_ms", "dense_env_ms", "dense_unset_ms")}
        dense_ms = min(median["dense_env_ms"], median["dense_unset_ms"])
        row = dict(first)
        row.update(median)
        row["condnn_calls"] = sum(int(r["condnn_calls"]) for r in rows)
        for side in ("dense_env_method", "dense_unset_method"):
            row[side] = Counter(r[side] for r in rows).most_common(1)[0][0]
        row["useful_gflops"] = useful_flops / median["condnn_ms"] / 1e6
        row["dense_gflops"] = dense_flops / dense_ms / 1e6
        row["speedup"] = dense_ms / median["condnn_ms"]
        combined.append(row)
    return combined


def report(rows_by_point: Dict[Point, Row], goals: Sequence[Target]) -> List[str]:
    lines = []
    for t in goals:
        value, ok = t.check(rows_by_point)
        lines.append(f"{'PASS' if ok else 'FAIL'}  {t.name}: {value:.3g} {t.unit} "
                     f"(target >= {t.goal:.3g})")
    return lines


def met(lines: Sequence[str]) -> int:
    """How many of report()'s lines say PASS."""
    return sum(line.startswith("PASS") for line in lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="seconds of samples per point at least (default 0.5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every measurement; medians are reported (default 3)")
    parser.add_argument("--out-dir", default=sparse_dot.DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")

    goals = targets()
    points = list(dict.fromkeys(p for t in goals for p in t.points))
    timing = {"min_time": args.min_time, "max_time": 20.0, "min_samples": 3,
              "max_samples": 50}
    rounds, setups, round_lines = [], [], []
    for number in range(1, args.rounds + 1):
        print(f"round {number} of {args.rounds}", file=sys.stderr, flush=True)
        rows, setup = sparse_dot.run(points, timing)
        rounds.append(rows)
        setups.append(setup)
        round_met = met(report({point_of(r): r for r in rows}, goals))
        round_lines.append(f"round {number}: {round_met} of {len(goals)} met "
                           f"(load average {setup['load average before the run']})")
    rows = combine_rounds(rounds)
    lines = report({point_of(r): r for r in rows}, goals)
    print()
    print("\n".join(lines))
    summary = f"{met(lines)} of {len(lines)} targets met, by the medians of {args.rounds} rounds"
    print(summary)
    print("\n".join(round_lines))

    benchlib.atomic_write(os.path.join(args.out_dir, "targets_cpu.csv"),
                          benchlib.csv_text(sparse_dot.COLUMNS, rows))
    benchlib.atomic_write(os.path.join(args.out_dir, "targets_cpu_rounds.csv"),
                          benchlib.csv_text(("round",) + sparse_dot.COLUMNS,
                                            [dict(r, round=number)
                                             for number, rs in enumerate(rounds, 1)
                                             for r in rs]))
    setup = dict(setups[0])
    setup["date"] = f"{setups[0]['date']} to {setups[-1]['date']}"
    setup["load average after the run"] = setups[-1].get("load average after the run",
                                                         "unknown")
    md = ["# condnn CPU performance targets", ""]
    md += [f"- {key}: {value}" for key, value in setup.items()]
    md += ["", "```", *lines, summary, *round_lines, "```", "",
           f"Measured points (medians of {args.rounds} rounds):", "",
           benchlib.markdown_table(sparse_dot.COLUMNS, rows)]
    benchlib.atomic_write(os.path.join(args.out_dir, "targets_cpu.md"), "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
