"""The condnn command line: train, evaluate, plot, bench, and its errors."""
import json
import os
import subprocess
import sys

import pytest

from condnn import cli
from condnn.train_config import TrainConfig

import synthetic_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--hidden", "8x16,8x16", "--tau", "0.25", "--batch-size", "64", "--epochs", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return synthetic_idx.write_idx_dir(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="module")
def trained(idx_dir, tmp_path_factory):
    """A small run through the command line; its output directory and stdout."""
    out = tmp_path_factory.mktemp("run")
    capture = pytest.MonkeyPatch()
    lines = []
    capture.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    try:
        status = cli.main(["train", "--data", f"idx:{idx_dir}", *SMALL, "--out", str(out),
                           "--batch1-examples", "20"])
    finally:
        capture.undo()
    assert status == 0
    return out, "\n".join(lines)


def test_train_reports_test_error_activation_and_speedup(trained):
    out, stdout = trained
    assert "test error" in stdout and "mean activation" in stdout and "speedup" in stdout
    for name in ("best.h5", "last.h5", "log.jsonl", "config.json"):
        assert os.path.exists(out / name)
    with open(out / "config.json") as f:
        config = json.load(f)
    assert config["hidden"] == [[8, 16], [8, 16]] and config["tau"] == 0.25


def test_evaluate_json_has_the_keys_and_types(trained, capsys):
    out, _ = trained
    assert cli.main(["evaluate", str(out / "best.h5"), "--json", "--batch1-examples", "20",
                     "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("test_error", "mean_activation", "time_sparse_s", "time_dense_s", "speedup",
                "speedup_batch1"):
        assert isinstance(report[key], float), key
    assert 0 <= report["test_error"] <= 1 and 0 < report["mean_activation"] <= 1
    assert report["time_sparse_unconverted_s"] is None     # no other storage to compare
    assert report["mode"] == "threshold" and len(report["activation_per_layer"]) == 2


def test_evaluate_with_half_weights_reports_the_rounded_copy(trained, capsys):
    out, _ = trained
    assert cli.main(["evaluate", str(out / "best.h5"), "--json", "--no-timing"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert cli.main(["evaluate", str(out / "best.h5"), "--json", "--half-weights",
                     "--batch1-examples", "20", "--repeats", "1"]) == 0
    half = json.loads(capsys.readouterr().out)
    assert single["weight_storage"] == "float32" and half["weight_storage"] == "float16"
    assert abs(half["test_error"] - single["test_error"]) <= 0.02
    assert half["time_sparse_s"] > 0 and half["speedup"] > 0
    # The float32 copy, timed in the same turns, for the gain of the storage.
    assert half["time_sparse_unconverted_s"] > 0 and half["time_sparse_unconverted_batch1_s"] > 0
    assert cli.main(["evaluate", str(out / "best.h5"), "--half-weights", "--no-timing"]) == 0
    assert "stored in float16" in capsys.readouterr().out
    assert cli.main(["evaluate", str(out / "best.h5"), "--half-weights", "--batch1-examples",
                     "5", "--repeats", "1"]) == 0
    assert "float16 weights against its own dtype's, timed in turn" in capsys.readouterr().out


def test_timing_in_a_subprocess_passes_the_storage_on(trained):
    from condnn.inference_timing import measure_checkpoint_speed
    out, _ = trained
    report = measure_checkpoint_speed(str(out / "best.h5"), batch1_examples=5, repeats=1,
                                      in_process=False, storage="float16")
    assert report.weight_storage == "float16" and report.how.startswith("subprocess")
    assert report.time_sparse_s > 0 and report.batch1_examples == 5
    assert report.time_sparse_unconverted_s > 0


def test_evaluate_also_times_without_a_forced_blas_core_type(trained, capsys, monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    out, _ = trained
    assert cli.main(["evaluate", str(out / "best.h5"), "--json", "--batch1-examples", "5",
                     "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert ", and a subprocess without OPENBLAS_CORETYPE" in report["how"]
    assert report["how"].endswith(": each time the faster")
    assert report["time_dense_s"] > 0 and report["batch1_examples"] == 5


def test_evaluate_in_sample_mode_and_without_timing(trained, capsys):
    out, _ = trained
    assert cli.main(["evaluate", str(out / "best.h5"), "--mode", "sample", "--no-timing"]) == 0
    assert "test error" in capsys.readouterr().out


def test_plot_writes_pngs(trained, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, _ = trained
    assert cli.main(["plot", str(out / "best.h5"), "--out", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(os.path.basename(p) for p in written) == [
        "activation_histogram.png", "activation_per_class.png", "learning_curves.png"]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_config_file_with_flags_overriding(idx_dir, tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"tau": 0.5, "lambda_s": 3.0, "seed": 4}))
    args = cli.build_parser().parse_args(["train", "--config", str(config), "--tau", "0.25"])
    settings = cli._train_config(args)
    assert settings.tau == 0.25 and settings.lambda_s == 3.0 and settings.seed == 4


@pytest.mark.parametrize("argv, message", [
    (["train", "--tau", "1.5", "--epochs", "1"], "tau must be"),
    (["train", "--tau", "0.1,0.2,0.3"], "one per hidden layer"),
    (["train", "--hidden", "8x16,8x32"], "same block size"),
    (["train", "--data", "imagenet"], "spec must be"),
    (["train", "--resume", "--out", "/nonexistent/run"], "no checkpoint"),
    (["evaluate", "/nonexistent/best.h5"], "does not exist"),
    (["evaluate", "x.h5", "--repeats", "0"], "--repeats")])
def test_bad_arguments_give_a_clear_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unparseable_values_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--hidden", "8y16"])
    assert exit_info.value.code == 2 and "--hidden" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--shared-blocks", "some"])
    assert exit_info.value.code == 2 and "--shared-blocks" in capsys.readouterr().err


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("AUTO", "auto"), ("3", 3),
                                         ("4,2", [4, 2])])
def test_shared_blocks_flag(text, value):
    assert cli.parse_shared_blocks(text) == value


def test_bad_config_file_is_named(tmp_path, capsys):
    config = tmp_path / "bad.json"
    config.write_text('{"taus": 0.1}')
    with pytest.raises(SystemExit):
        cli.main(["train", "--config", str(config)])
    err = capsys.readouterr().err
    assert "bad.json" in err and "unknown setting" in err


def test_bench_without_the_source_tree_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(cli, "benchmark_script", lambda: None)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--quick"])
    assert exit_info.value.code == 2 and "benchmarks/sparse_dot.py" in capsys.readouterr().err


def test_bench_passes_its_arguments_through(monkeypatch, tmp_path):
    script = tmp_path / "sparse_dot.py"
    script.write_text("import json, sys\n"
                      f"def main(argv):\n    open({str(tmp_path / 'args.json')!r}, 'w')"
                      ".write(json.dumps(argv))\n    return 0\n")
    monkeypatch.setattr(cli, "benchmark_script", lambda: str(script))
    assert cli.main(["bench", "--quick", "--n", "1"]) == 0
    assert json.loads((tmp_path / "args.json").read_text()) == ["--quick", "--n", "1"]


def test_python_dash_m_condnn_runs():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    done = subprocess.run([sys.executable, "-m", "condnn", "--help"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0
    for command in ("train", "evaluate", "bench", "plot"):
        assert command in done.stdout


def test_defaults_train_sensibly_on_another_idx_data_set(tmp_path, capsys):
    # Every setting at its default: only the data set changes.
    data_dir = synthetic_idx.write_idx_dir(tmp_path / "idx", n_train=800, n_test=200)
    assert cli.main(["train", "--data", f"idx:{data_dir}", "--out", str(tmp_path / "run"),
                     "--quiet", "--no-timing"]) == 0
    out = capsys.readouterr().out
    error = float(out.split("test error ")[1].split("%")[0])
    assert error < 25.0                      # chance is 90%
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    defaults = TrainConfig().to_dict()
    assert {k: v for k, v in saved.items() if k not in ("data", "out")} == \
        {k: v for k, v in defaults.items() if k not in ("data", "out")}


def test_plot_without_matplotlib_is_a_clear_error(trained, monkeypatch, capsys):
    out, _ = trained
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib fails
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plot", str(out / "best.h5")])
    assert exit_info.value.code == 2 and "needs matplotlib" in capsys.readouterr().err
