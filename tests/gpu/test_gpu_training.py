"""Training on the GPU: the objective's step, the trainer with ``device="gpu"`` and the
command line, against the CPU.  The GPU is the host emulation of the kernels (see
test_gpu_models.py); the same tests run on a real device where PyCUDA and a GPU are
present."""
import copy
import subprocess
import sys

import _emulator
import numpy as np
import pytest

import condnn
import condnn.gpu
from condnn.baselines import make_baseline
from condnn.device import to_device
from condnn.models import ConditionalMLP
from condnn.objective import ConditionalObjective
from condnn.train import train
from condnn.train_config import from_mapping

import synthetic_idx

DATA = synthetic_idx.data_set(n_train=600, n_test=100)


# The baselines with a state (their kernels are tested in test_gpu_training_kernels.py).
@pytest.mark.parametrize("baseline", ["moving-average", "learned-linear"])
def test_an_objective_step_matches_the_cpu(gpu, baseline):
    cpu_model = ConditionalMLP(n_in=784, n_classes=10, hidden=[[4, 8], [4, 8]], tau=0.5,
                               dropout=0.2, seed=4)
    gpu_model = copy.deepcopy(cpu_model).to_gpu()
    objectives = [ConditionalObjective(2.0, 1.0, 1e-4, make_baseline(baseline, 784))
                  for _ in range(2)]
    for step in range(2):               # the second step uses the baseline's state
        # Small batches: the emulator's time grows with the rows of the element-wise grids.
        x, y = DATA.x_train[24 * step:24 * (step + 1)], DATA.y_train[24 * step:24 * (step + 1)]
        expected = objectives[0].step(cpu_model, x, y)
        got = objectives[1].step(gpu_model, to_device(x, "gpu"), to_device(y, "gpu")).result()
        assert got.errors == expected.errors
        assert got.activation == pytest.approx(expected.activation)
        for name in ("objective", "nll", "policy_penalty", "l2", "flops_fraction"):
            assert getattr(got, name) == pytest.approx(getattr(expected, name), rel=1e-4,
                                                       abs=1e-6), name
        gpu_grads = gpu_model.named_grads()
        for path, value in cpu_model.named_grads().items():
            scale = np.abs(value).max() + 1e-30
            np.testing.assert_allclose(to_device(gpu_grads[path], "cpu") / scale,
                                       value / scale, atol=2e-5, err_msg=path)
        cpu_model.zero_grads()
        gpu_model.zero_grads()
    objectives[1].sync_baseline()
    cpu_state, gpu_state = (o.baseline.state_dict() for o in objectives)
    for key, value in cpu_state.items():
        if key != "name":
            np.testing.assert_allclose(gpu_state[key], value, rtol=1e-5, err_msg=key)


def _config(out, **changes):
    settings = dict(hidden=[[4, 8], [4, 8]], tau=0.5, epochs=2, batch_size=16,
                    train_size=48, val_size=16, out=str(out), seed=3)
    settings.update(changes)
    return from_mapping(settings)


def test_training_on_the_gpu_follows_the_cpu_run(gpu, tmp_path):
    on_cpu = train(_config(tmp_path / "cpu"), echo=None, data=DATA)
    on_gpu = train(_config(tmp_path / "gpu"), echo=None, data=DATA, device="gpu")
    for a, b in zip(on_cpu.log, on_gpu.log):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["train_activation"] == pytest.approx(a["train_activation"], abs=0.02)
        assert b["val_error"] == pytest.approx(a["val_error"], abs=0.05)
    # Its checkpoints hold host arrays: they load on the CPU, and the run resumes there.
    loaded = condnn.load(on_gpu.last_path)
    assert loaded.model.device == "cpu"
    assert loaded.metadata["baseline"]["value"] == pytest.approx(
        condnn.load(on_cpu.last_path).metadata["baseline"]["value"], rel=1e-3)
    # Stopped after one epoch on the GPU, the run ends on the CPU as it ended on the GPU.
    train(_config(tmp_path / "split"), echo=None, data=DATA, device="gpu", stop_after=1)
    resumed = train(_config(tmp_path / "split"), resume=True, echo=None, data=DATA)
    assert [r["epoch"] for r in resumed.log] == [1, 2]
    assert resumed.log[1]["train_loss"] == pytest.approx(on_gpu.log[1]["train_loss"],
                                                         rel=1e-3)


@pytest.mark.parametrize("config", [dict(model="dense", hidden=[16, 16]),
                                    dict(model="bdnn", hidden=[[4, 8], [4, 8]], tau=0.5)],
                         ids=["dense", "bdnn"])
def test_the_baselines_train_on_the_gpu_as_on_the_cpu(gpu, tmp_path, config):
    on_cpu = train(_config(tmp_path / "cpu", **config), echo=None, data=DATA)
    on_gpu = train(_config(tmp_path / "gpu", **config), echo=None, data=DATA, device="gpu")
    for a, b in zip(on_cpu.log, on_gpu.log):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_error"] == pytest.approx(a["val_error"], abs=0.05)
    cpu_params = condnn.load(on_cpu.last_path).model.named_params()
    for path, value in condnn.load(on_gpu.last_path).model.named_params().items():
        np.testing.assert_allclose(value, cpu_params[path], rtol=1e-4, atol=1e-5,
                                   err_msg=path)


def test_bad_devices_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'gpu'\)"):
        train(_config(tmp_path), echo=None, data=DATA, device="tpu")


@pytest.mark.skipif(condnn.gpu.available(), reason="needs a machine without a usable GPU")
def test_the_command_line_says_why_it_cannot_train_on_the_gpu(tmp_path):
    done = subprocess.run([sys.executable, "-m", "condnn", "train", "--device", "gpu",
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "--device gpu: " in done.stderr and condnn.gpu.unavailable_reason() in done.stderr


def test_a_training_step_never_waits_for_the_device(monkeypatch):
    """Nothing is read back from the GPU inside a step and its optimizer update (emulated:
    the reads are counted)."""
    if _emulator.unavailable_reason() is not None:
        pytest.skip(_emulator.unavailable_reason())
    _emulator.patch(monkeypatch)
    reads = []
    monkeypatch.setattr(_emulator.EmulatorBackend, "read_int32",
                        lambda self, ptr: reads.append(ptr) or 0)
    monkeypatch.setattr(_emulator.Device, "to_host",
                        staticmethod(lambda x: reads.append(x) or x.get()))
    model = ConditionalMLP(n_in=784, n_classes=10, hidden=[[4, 8], [4, 8]], tau=0.5,
                           dropout=0.2)
    optimizer = condnn.optim.Adam(model, lr=0.01)
    model.to_gpu(optimizer)
    objective = ConditionalObjective(2.0, 1.0, 1e-4)
    x, y = to_device(DATA.x_train[:16], "gpu"), to_device(DATA.y_train[:16], "gpu")
    step = objective.step(model, x, y, report_l2=False, check_labels=False)
    optimizer.step()
    assert reads == []
    step.result()                        # reading the statistics is what waits
    assert reads


def test_bad_labels_and_masks_are_caught_on_the_gpu(gpu):
    model = ConditionalMLP(n_in=784, n_classes=10, hidden=[[4, 8]], tau=0.5).to_gpu()
    x = to_device(DATA.x_train[:4], "gpu")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, classes\)"):
        ConditionalObjective().step(model, x, to_device(np.array([0, 1, 10, 2]), "gpu"))
    with pytest.raises(ValueError, match="PolicyGate: mask must hold only 0 and 1"):
        model.trace(x, False, masks=[to_device(np.full((4, 4), 2, np.uint8), "gpu")])
