import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import condnn
from condnn import CheckpointError, checkpoint
from condnn.layers import Dense, Dropout, ReLU
from condnn.optim import SGD, Adam

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tiny(condnn.Model):
    def __init__(self, width=5, rate=0.5, seed=0):
        rng = np.random.default_rng(seed)
        self.fc1 = Dense(3, width, rng=rng)
        self.act = ReLU()
        self.drop = Dropout(rate, rng=seed + 1)
        self.fc2 = Dense(width, 2, rng=rng)

    def forward(self, x, train):
        h, fc1_backprop = self.fc1(x, train)
        h, act_backprop = self.act(h, train)
        h, drop_backprop = self.drop(h, train)
        y, fc2_backprop = self.fc2(h, train)
        return y, lambda dy: fc1_backprop(act_backprop(drop_backprop(fc2_backprop(dy))))


def trained(optimizer_class=SGD, steps=3, **model_args):
    model = Tiny(**model_args)
    optimizer = optimizer_class(model, lr=0.1)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        y, backprop = model(rng.standard_normal((4, 3)).astype(np.float32))
        backprop(np.ones_like(y))
        optimizer.step()
    return model, optimizer


def assert_same_params(a, b):
    pa, pb = a.named_params(), b.named_params()
    assert list(pa) == list(pb)
    for path in pa:
        assert pa[path].dtype == pb[path].dtype
        np.testing.assert_array_equal(pa[path], pb[path])


def test_round_trip_is_bitwise(tmp_path):
    model, optimizer = trained(Adam, width=7)
    data_rng = np.random.default_rng(11)
    data_rng.random(3)
    path = str(tmp_path / "ckpt.h5")
    model.save(path, optimizer, step=3, epoch=1, rngs={"data": data_rng},
               metadata={"val_accuracy": 0.5})
    loaded = condnn.load(path)
    assert type(loaded.model) is Tiny and loaded.model.config["width"] == 7
    assert_same_params(model, loaded.model)
    assert (loaded.step, loaded.epoch, loaded.metadata) == (3, 1, {"val_accuracy": 0.5})
    saved = optimizer.state_dict()
    assert loaded.optimizer_state["type"] == "Adam" and loaded.optimizer_state["step"] == 3
    for param, slots in saved["slots"].items():
        for name, value in slots.items():
            np.testing.assert_array_equal(loaded.optimizer_state["slots"][param][name], value)
    # Generators continue exactly where they were.
    np.testing.assert_array_equal(loaded.rngs["data"].random(5), data_rng.random(5))
    np.testing.assert_array_equal(loaded.model.drop.rng.random(5), model.drop.rng.random(5))


def test_load_params_and_restore_into_built_model(tmp_path):
    model, optimizer = trained()
    path = str(tmp_path / "ckpt.h5")
    model.save(path, optimizer, step=3)
    fresh = Tiny(seed=5)
    fresh.load_params(path)
    assert_same_params(model, fresh)
    other = Tiny(seed=6)
    result = condnn.restore(path, other)
    assert result.model is other and result.step == 3
    new_optimizer = SGD(other, lr=0.1)
    new_optimizer.load_state_dict(result.optimizer_state)
    assert new_optimizer.step_count == 3


def test_strict_loading_names_missing_extra_and_misshaped(tmp_path):
    path = str(tmp_path / "ckpt.h5")
    Tiny(width=5).save(path)
    with pytest.raises(CheckpointError, match=r"fc1/W is float32\[3, 5\] in the file but "
                                              r"float32\[3, 6\] in the model"):
        Tiny(width=6).load_params(path)

    class Wider(Tiny):
        def __init__(self):
            super().__init__()
            self.fc3 = Dense(2, 2)

    with pytest.raises(CheckpointError, match="missing parameters: fc3/W, fc3/b"):
        Wider().load_params(path)

    class Narrower(Tiny):
        def __init__(self):
            super().__init__()
            del self.fc2

    with pytest.raises(CheckpointError, match="unexpected parameters: fc2/W, fc2/b"):
        Narrower().load_params(path)
    without_dropout = Tiny()
    without_dropout.drop = ReLU()
    with pytest.raises(CheckpointError, match=r"random generators missing: \[\], "
                                              r"unexpected: \[drop/rng\]"):
        condnn.restore(path, without_dropout)


def test_not_hdf5_truncated_and_corrupt_files(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.h5"):
        condnn.load(str(text))

    path = str(tmp_path / "ckpt.h5")
    Tiny().save(path)
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.h5"):
        condnn.load(str(truncated))

    # Damage the bytes of one parameter in place: the checksum catches it.
    with h5py.File(path, "r") as f:
        offset = f["params/fc1/W"].id.get_offset()
    damaged = bytearray(data)
    damaged[offset:offset + 8] = bytes(8)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match=r"corrupt.h5.*params/fc1/W is corrupt"):
        condnn.load(str(corrupt))

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones(3)
    with pytest.raises(CheckpointError, match="other.h5' is an HDF5 file but not a condnn"):
        condnn.load(str(other))
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        condnn.load(str(tmp_path / "missing.h5"))


def test_unknown_class_and_newer_format_are_clear_errors(tmp_path):
    path = str(tmp_path / "ckpt.h5")
    Tiny().save(path)
    with h5py.File(path, "r+") as f:
        f.attrs["model_class"] = "NoSuchModel"
    with pytest.raises(CheckpointError, match="no model class is registered as 'NoSuchModel'"):
        condnn.load(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = checkpoint.FORMAT_VERSION + 1
    with pytest.raises(CheckpointError, match="format version 2; this condnn reads up to 1"):
        condnn.load(path)


def test_failure_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.h5")
    old, _ = trained(steps=1)
    old.save(path, step=1)
    before = open(path, "rb").read()
    written = []

    def failing_write(group, name, array):
        if len(written) == 2:
            raise OSError("disk full")
        written.append(name)
        checkpoint_write(group, name, array)

    checkpoint_write = checkpoint._write_array
    monkeypatch.setattr(checkpoint, "_write_array", failing_write)
    new, optimizer = trained(steps=4)
    with pytest.raises(OSError, match="disk full"):
        new.save(path, optimizer, step=4)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["ckpt.h5"]          # the temporary file is gone
    assert_same_params(condnn.load(path).model, old)


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path):
    path = str(tmp_path / "ckpt.h5")
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import numpy as np
        from condnn import checkpoint
        from test_checkpoint import Tiny
        Tiny(seed=0).save({path!r})
        original = checkpoint._write_array
        def dying_write(group, name, array):
            if name == "fc2/W":
                os._exit(3)              # the process dies with the new file half written
            original(group, name, array)
        checkpoint._write_array = dying_write
        Tiny(seed=1).save({path!r})
    """)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert result.returncode == 3, result.stderr.decode()
    assert_same_params(condnn.load(path).model, Tiny(seed=0))


def test_load_imports_the_defining_module(tmp_path):
    module = tmp_path / "user_models.py"
    module.write_text(textwrap.dedent("""
        import condnn
        from condnn.layers import Dense

        class UserNet(condnn.Model):
            def __init__(self, width=3):
                self.fc = Dense(2, width, rng=0)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
    ckpt = str(tmp_path / "user.h5")
    save = f"import user_models; user_models.UserNet(width=4).save({ckpt!r})"
    load = (f"import condnn, sys; m = condnn.load({ckpt!r}).model; "
            f"print(type(m).__name__, m.fc.params['W'].shape, 'user_models' in sys.modules)")
    subprocess.run([sys.executable, "-c", save], env=env, check=True)
    result = subprocess.run([sys.executable, "-c", load], env=env, check=True,
                            capture_output=True, text=True)
    assert result.stdout.split() == ["UserNet", "(2,", "4)", "True"]


def test_save_rejects_bad_arguments(tmp_path):
    model, _ = trained()
    path = str(tmp_path / "ckpt.h5")
    _, other_optimizer = trained()
    with pytest.raises(ValueError, match="optimizer was not built on this model"):
        model.save(path, other_optimizer)
    with pytest.raises(ValueError, match="step must be a non-negative int"):
        model.save(path, step=-1)
    with pytest.raises(TypeError, match=r"rngs\['data'\] must be a numpy.random.Generator"):
        model.save(path, rngs={"data": 3})
    with pytest.raises(TypeError, match="metadata must be JSON-serializable"):
        model.save(path, metadata={"array": np.ones(2)})
    with pytest.raises(TypeError, match="model must be a condnn.Model"):
        checkpoint.save(path, Dense(2, 2))
    assert not os.listdir(tmp_path)


def test_saved_file_is_readable_by_others(tmp_path):
    path = tmp_path / "ckpt.h5"
    Tiny().save(str(path))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
