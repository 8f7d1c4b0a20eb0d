"""The trainer: learning, checkpoints, logs, early stopping and bitwise resume."""
import json
import os

import numpy as np
import pytest

import condnn
from condnn.train import train
from condnn.train_config import TrainConfig, from_mapping, from_saved

import synthetic_idx

DATA = synthetic_idx.data_set()


pytestmark = pytest.mark.usefixtures("one_thread")


def small_config(out, **changes):
    settings = dict(hidden=[[8, 16], [8, 16]], tau=0.5, epochs=3, batch_size=32,
                    val_size=200, out=str(out), seed=3)
    settings.update(changes)
    return from_mapping(settings)


def test_training_learns_and_writes_checkpoints_and_log(tmp_path):
    result = train(small_config(tmp_path), echo=None, data=DATA)
    log = result.log
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert log[-1]["val_error"] < 0.5                       # chance is 0.9
    for name in ("best.h5", "last.h5", "log.jsonl", "config.json"):
        assert os.path.exists(tmp_path / name)
    with open(tmp_path / "log.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert records == json.loads(json.dumps(log))
    expected_keys = {"epoch", "train_loss", "train_objective", "train_error", "val_error",
                     "val_loss", "mean_activation", "train_activation", "flops_fraction",
                     "seconds", "lr", "policy_lr", "best"}
    assert expected_keys <= set(records[0])
    assert len(records[0]["mean_activation"]) == 2
    assert 0 < records[-1]["flops_fraction"] < 1
    best = condnn.load(result.best_path)
    assert best.epoch == result.best_epoch
    assert best.metadata["trainer"]["best_val_error"] == result.best_val_error
    assert best.metadata["config"] == small_config(tmp_path).to_dict()


def test_resumed_training_is_bitwise_the_uninterrupted_one(tmp_path):
    straight = train(small_config(tmp_path / "straight"), echo=None, data=DATA)
    config = small_config(tmp_path / "resumed")
    train(config, echo=None, data=DATA, stop_after=1)
    resumed = train(config, resume=True, echo=None, data=DATA)
    a = condnn.load(straight.last_path)
    b = condnn.load(resumed.last_path)
    for path, value in a.model.named_params().items():
        np.testing.assert_array_equal(b.model.named_params()[path], value, err_msg=path)
    for key in ("train_loss", "val_error", "mean_activation", "train_activation"):
        assert [r[key] for r in straight.log] == [r[key] for r in resumed.log]
    assert a.metadata["baseline"] == b.metadata["baseline"]
    with open(tmp_path / "resumed" / "log.jsonl") as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2, 3]


def test_two_fresh_runs_log_the_same_losses(tmp_path):
    # Where the arrays land in memory differs from run to run: it must not change a bit.
    a = train(small_config(tmp_path / "a"), echo=None, data=DATA)
    b = train(small_config(tmp_path / "b"), echo=None, data=DATA, stop_after=1)
    assert a.log[0]["train_loss"] == b.log[0]["train_loss"]


def test_resume_refuses_other_settings(tmp_path):
    config = small_config(tmp_path, epochs=2)
    train(config, echo=None, data=DATA, stop_after=1)
    with pytest.raises(ValueError, match="lambda_s"):
        train(config.replace(lambda_s=7.0), resume=True, echo=None, data=DATA)
    with pytest.raises(FileNotFoundError, match="last.h5"):
        train(small_config(tmp_path / "nothing"), resume=True, echo=None, data=DATA)


def test_early_stopping(tmp_path):
    # A learning rate too small to change the validation error: no epoch improves on the
    # first, so the run stops after 1 + patience epochs.
    config = small_config(tmp_path, model="dense", hidden=[16], epochs=6, patience=2,
                          lr=1e-12)
    result = train(config, echo=None, data=DATA)
    assert result.stopped_early and len(result.log) == 3 and result.best_epoch == 1


@pytest.mark.parametrize("model", ["dense", "bdnn"])
def test_baseline_models_train(model, tmp_path):
    result = train(small_config(tmp_path, model=model, epochs=2), echo=None, data=DATA)
    assert result.log[-1]["val_error"] < 0.6
    assert result.log[-1]["policy_lr"] is None


@pytest.mark.parametrize("baseline", ["none", "batch-min", "learned-linear"])
def test_every_baseline_trains(baseline, tmp_path):
    result = train(small_config(tmp_path, baseline=baseline, epochs=2), echo=None, data=DATA)
    assert np.isfinite(result.log[-1]["train_loss"])


def test_same_seed_same_run(tmp_path):
    a = train(small_config(tmp_path / "a", epochs=1), echo=None, data=DATA)
    b = train(small_config(tmp_path / "b", epochs=1), echo=None, data=DATA)
    assert a.log[0]["train_loss"] == b.log[0]["train_loss"]


@pytest.mark.parametrize("changes, match", [
    ({"tau": 1.2}, "tau"), ({"tau": [0.1]}, "one per hidden layer"),
    ({"hidden": [[4, 8], [4, 16]]}, "same block size"), ({"model": "moe"}, "model"),
    ({"baseline": "best"}, "baseline"), ({"epochs": 0}, "epochs"),
    ({"lr": -1.0}, "lr"), ({"colour": "red"}, "unknown setting"),
    ({"shared_blocks": -1}, "shared_blocks must be"), ({"shared_blocks": "half"}, "auto"),
    ({"shared_blocks": [1]}, "one per hidden layer"),
    ({"shared_blocks": 8}, "hidden layer 1 has 48 blocks and tau 0.15, so it runs 7.2 blocks "
                           "per example; fewer must be shared, got 8")])
def test_bad_settings_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        from_mapping(changes)


def test_too_large_validation_set_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="val_size"):
        train(small_config(tmp_path, val_size=5000), echo=None, data=DATA)


def test_default_config_is_valid():
    assert TrainConfig().check().model == "condnet"


@pytest.mark.parametrize("tau, n_blocks, shared", [
    (0.15, 48, 4), (0.25, 8, 1), (0.5, 8, 2), (0.2, 4, 0), (0.5, 2, 0), (0.9, 2, 1)])
def test_auto_shares_half_the_budget_and_leaves_some_to_route(tau, n_blocks, shared):
    config = from_mapping({"hidden": [[n_blocks, 16]], "tau": tau})
    assert config.shared_block_counts() == [shared]
    assert shared < tau * n_blocks


def test_settings_saved_before_shared_blocks_existed_read_as_none():
    saved = TrainConfig().to_dict()
    assert from_saved(saved).shared_blocks == "auto"
    del saved["shared_blocks"]
    assert from_saved(saved).shared_blocks == 0


def test_shared_blocks_reach_the_model_and_its_checkpoint(tmp_path):
    config = small_config(tmp_path, epochs=1, shared_blocks=[3, 1])
    result = train(config, echo=None, data=DATA)
    model = condnn.load(result.best_path).model
    assert model.shared_blocks == [3, 1]
    assert [g.n_blocks for g in model.gates] == [5, 7]
    assert from_mapping({"model": "dense", "hidden": [64], "shared_blocks": 9}).model == "dense"


def test_models_are_trained_on_centred_inputs(tmp_path):
    # The trainer gives the model its training examples' mean input, which the checkpoint
    # keeps: a model loaded later centres its inputs the same way.
    result = train(small_config(tmp_path, epochs=1), echo=None, data=DATA)
    model = condnn.load(result.best_path).model
    np.testing.assert_allclose(model.input_mean, result.split.x_train.mean(axis=0),
                               rtol=1e-5, atol=1e-6)
