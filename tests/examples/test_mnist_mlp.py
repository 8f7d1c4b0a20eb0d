"""A short run of the MNIST example: it trains, checkpoints and reloads."""
import importlib.util
import os

import numpy as np

import condnn

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "mnist_mlp.py")


def load_example():
    spec = importlib.util.spec_from_file_location("mnist_mlp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_run_learns_and_saves_best_checkpoint(tmp_path, capsys):
    example = load_example()
    # 2 x 188 steps on 6,000 images with a narrower network.
    result = example.main(["--epochs", "2", "--train-size", "6000", "--val-size", "1000",
                           "--batch-size", "32", "--hidden", "128", "--out", str(tmp_path),
                           "--quiet"])
    assert result["test_accuracy"] > 0.9
    assert len(result["epoch_seconds"]) == 2
    assert "test accuracy" in capsys.readouterr().out
    best = condnn.load(result["checkpoint"])
    assert type(best.model).__name__ == "MLP" and best.model.config["n_hidden"] == 128
    assert best.metadata["val_accuracy"] == result["val_accuracy"]
    assert best.optimizer_state["step"] == best.epoch * 188
    x = np.zeros((1, 784), np.float32)
    assert best.model(x, train=False)[0].shape == (1, 10)
