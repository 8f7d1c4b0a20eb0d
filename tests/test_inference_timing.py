"""Single-core timing where the environment forces an OpenBLAS core type: the faster of the
times with it and without it (condnn.inference_timing)."""
import json
import subprocess

import pytest

from condnn import inference_timing
from condnn.inference_timing import SpeedReport, blas_core_overrides, faster_of


def report(**times) -> SpeedReport:
    fields = dict(time_sparse_s=1.0, time_dense_s=4.0, time_all_on_s=5.0,
                  time_sparse_batch1_s=0.5, time_dense_batch1_s=2.0,
                  time_all_on_batch1_s=3.0, examples=100, batch_size=10, batch1_examples=7,
                  repeats=1, how="first")
    fields.update(times)
    return SpeedReport(**fields)


def test_faster_of_keeps_the_smaller_of_each_time():
    forced = report(time_dense_s=4.0, time_dense_batch1_s=2.0, time_sparse_s=1.0)
    unforced = report(time_dense_s=2.5, time_dense_batch1_s=2.2, time_sparse_s=1.1, how="x")
    both = faster_of(forced, unforced, "either")
    assert (both.time_dense_s, both.time_dense_batch1_s, both.time_sparse_s) == (2.5, 2.0, 1.0)
    assert both.speedup == 2.5 and both.how == "either"
    assert both.time_sparse_unconverted_s is None       # neither report has one


def test_faster_of_keeps_the_unconverted_times_and_refuses_different_runs():
    first = report(weight_storage="float16", time_sparse_unconverted_s=3.0)
    second = report(weight_storage="float16", time_sparse_unconverted_s=2.0)
    assert faster_of(first, second, "h").time_sparse_unconverted_s == 2.0
    with pytest.raises(ValueError, match="same examples"):
        faster_of(report(), report(batch1_examples=8), "h")
    with pytest.raises(ValueError, match="same examples"):
        faster_of(report(), report(weight_storage="float16"), "h")


def test_overrides_are_the_openblas_core_variables_set(monkeypatch):
    for name in inference_timing.BLAS_CORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert blas_core_overrides() == []
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "")          # empty: not an override
    assert blas_core_overrides() == ["OPENBLAS_CORETYPE"]


def test_without_overrides_nothing_more_is_timed(monkeypatch):
    for name in inference_timing.BLAS_CORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(inference_timing, "_subprocess_speed",
                        lambda *a, **k: pytest.fail("timed again with nothing to unset"))
    first = report()
    assert inference_timing.with_fastest_blas(first, "ckpt.h5", None, batch1_examples=7,
                                              repeats=1, mode=None, storage=None) is first


def test_the_subprocess_runs_without_the_forced_core_type(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    seen = {}

    def fake_run(command, capture_output, text, env):
        seen["command"], seen["env"] = command, env
        out = json.dumps({**report(time_dense_s=1.5).to_dict(), "how": "worker"})
        return subprocess.CompletedProcess(command, 0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(inference_timing.subprocess, "run", fake_run)
    both = inference_timing.with_fastest_blas(report(), "ckpt.h5", "mnist",
                                              batch1_examples=7, repeats=1, mode=None,
                                              storage=None)
    assert "OPENBLAS_CORETYPE" not in seen["env"]
    assert seen["env"]["OPENBLAS_NUM_THREADS"] == "1" and seen["env"]["CONDNN_NUM_THREADS"] == "1"
    assert seen["command"][-6:] == ["--repeats", "1", "--data", "mnist", "--batch1-examples", "7"]
    assert both.time_dense_s == 1.5 and both.time_sparse_s == 1.0
    assert "without OPENBLAS_CORETYPE" in both.how
