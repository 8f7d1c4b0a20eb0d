"""benchmarks/targets.py: how rounds of measurements are combined (no timing is asserted)."""
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "_bench_targets", os.path.join(ROOT, "benchmarks", "targets.py"))
targets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(targets)


def _row(condnn_ms, env_ms, unset_ms, n=1024, density=0.25, method="dot"):
    """A result row as sparse_dot.run writes it, for 1e9 useful FLOPs and 2e9 dense ones."""
    dense_ms = min(env_ms, unset_ms)
    return {"variant": "ss", "pass": "fwd", "n": n, "k": 4096, "m": 4096, "bs": 64,
            "density": density, "threads": 1, "dtype": "float32", "condnn_ms": condnn_ms,
            "condnn_calls": 10, "useful_gflops": 1e9 / (condnn_ms * 1e-3) / 1e9,
            "dense_env_ms": env_ms, "dense_env_core": "Haswell", "dense_env_method": method,
            "dense_unset_ms": unset_ms, "dense_unset_core": "Haswell",
            "dense_unset_method": "matmul", "dense_gflops": 2e9 / (dense_ms * 1e-3) / 1e9,
            "speedup": dense_ms / condnn_ms}


def test_each_side_takes_its_median_over_the_rounds_and_the_ratios_follow() -> None:
    rounds = [[_row(10.0, 400.0, 500.0), _row(2.0, 30.0, 20.0, n=64)],
              [_row(30.0, 300.0, 200.0, method="matmul"), _row(4.0, 40.0, 60.0, n=64)],
              [_row(14.0, 100.0, 450.0), _row(3.0, 10.0, 50.0, n=64)]]
    big, small = targets.combine_rounds(rounds)
    assert (big["condnn_ms"], big["dense_env_ms"], big["dense_unset_ms"]) == (14.0, 300.0,
                                                                             450.0)
    assert big["speedup"] == pytest.approx(300.0 / 14.0)
    assert big["useful_gflops"] == pytest.approx(1e9 / 14e-3 / 1e9)
    assert big["dense_gflops"] == pytest.approx(2e9 / 300e-3 / 1e9)
    assert big["condnn_calls"] == 30
    assert big["dense_env_method"] == "dot"          # two rounds of three
    assert (small["n"], small["condnn_ms"], small["speedup"]) == (64, 3.0, 30.0 / 3.0)


def test_one_round_is_returned_as_measured() -> None:
    rows = [_row(12.5, 400.0, 380.0), _row(2.0, 30.0, 20.0, n=64)]
    combined = targets.combine_rounds([rows])
    for got, want in zip(combined, rows):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key]), key


def test_rounds_of_other_points_are_refused() -> None:
    with pytest.raises(ValueError, match="same points"):
        targets.combine_rounds([[_row(1.0, 2.0, 3.0)], [_row(1.0, 2.0, 3.0, density=0.1)]])


def test_targets_read_the_combined_rows() -> None:
    ss = targets.point()
    ten = targets.point(density=0.1)
    rows = {targets.point_of(r): r for r in targets.combine_rounds(
        [[_row(50.0, 400.0, 420.0), _row(20.0, 400.0, 420.0, density=0.1)]])}
    goal = [t for t in targets.targets() if t.points == (ss,)][0]
    assert goal.check(rows) == (pytest.approx(8.0), True)
    goal = [t for t in targets.targets() if t.points == (ten,)][0]
    assert goal.check(rows) == (pytest.approx(20.0), False)
