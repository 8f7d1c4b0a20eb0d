"""A conditional network and a dense one moved to the GPU (``model.to_gpu()``): their
passes, gradients and optimizer steps against the same networks on the CPU.  The GPU is the host emulation of the
kernels, with its own array type, so the layers take their GPU paths; the same tests run on
a real device where PyCUDA and a GPU are present (the ``gpu`` fixture, conftest.py)."""
import copy

import numpy as np
import pytest

import condnn
from condnn.device import on_gpu, to_device
from condnn.layers import (Dense, Dropout, PolicyGate, PolicyPenalty, ReLU, Sequential,
                           Tanh)
from condnn.models import BlockDropoutMLP, ConditionalMLP, DenseMLP, for_inference
from condnn.optim import SGD, Adam


def _model(dtype="float32", dropout=0.2, seed=1):
    rng = np.random.default_rng(seed)
    return ConditionalMLP(n_in=24, n_classes=3, hidden=[[4, 8], [4, 8]], tau=0.5,
                          dropout=dropout, seed=seed, dtype=dtype,
                          input_mean=list(rng.random(24)))


def _shared_model(dtype="float32", dropout=0.2, seed=1):
    """A condnet whose layers have shared blocks (on for every example)."""
    rng = np.random.default_rng(seed)
    return ConditionalMLP(n_in=24, n_classes=3, hidden=[[5, 8], [4, 8]], tau=0.5,
                          shared_blocks=[2, 1], dropout=dropout, seed=seed, dtype=dtype,
                          input_mean=list(rng.random(24)))


def _dense_model(dtype="float32", dropout=0.2, seed=1):
    rng = np.random.default_rng(seed)
    return DenseMLP(n_in=24, n_classes=3, hidden=[16, 12], dropout=dropout, seed=seed,
                    dtype=dtype, input_mean=list(rng.random(24)))


def _own_rate(model) -> str:
    """The parameters given a learning rate of their own: the policies', if any."""
    return "policy*" if getattr(model, "gates", None) else "out/*"


def _bdnn_model(dtype="float32", dropout=None, seed=1):
    rng = np.random.default_rng(seed)
    return BlockDropoutMLP(n_in=24, n_classes=3, hidden=[[4, 8], [4, 8]], keep_rate=0.5,
                           seed=seed, dtype=dtype, input_mean=list(rng.random(24)))


# Every model of condnn.models (each runs on the GPU).
MODELS = pytest.mark.parametrize("make_model", [_model, _shared_model, _dense_model,
                                                _bdnn_model],
                                 ids=["condnet", "condnet-shared", "dense", "bdnn"])


def _data(n=40, dtype=np.float32, seed=2):
    rng = np.random.default_rng(seed)
    return rng.random((n, 24)).astype(dtype), rng.integers(0, 3, n)


def _host(x):
    return None if x is None else to_device(x, "cpu")


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10,
                                                                     "atol": 1e-12}


@MODELS
def test_to_gpu_moves_parameters_gradients_and_the_input_mean(gpu, make_model):
    model = make_model()
    params = {path: value.copy() for path, value in model.named_params().items()}
    assert model.to_gpu() is model and model.device == "gpu"
    assert all(on_gpu(v) for v in model.named_params().values())
    assert all(on_gpu(v) for v in model.named_grads().values())
    assert on_gpu(model.input_mean)
    model.to_cpu()
    assert model.device == "cpu"
    for path, value in model.named_params().items():
        assert isinstance(value, np.ndarray)
        np.testing.assert_array_equal(value, params[path])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["threshold", "sample"])
@MODELS
def test_evaluation_pass_matches_the_cpu(gpu, dtype, mode, make_model):
    cpu_model = make_model(dtype)
    gpu_model = copy.deepcopy(cpu_model).to_gpu()
    x, _ = _data(dtype=np.dtype(dtype))
    expected = cpu_model.trace(x, False, mode=mode)
    got = gpu_model.trace(to_device(x, "gpu"), False, mode=mode)
    assert on_gpu(got.logits)
    for e, g in zip(expected.masks, got.masks):
        np.testing.assert_array_equal(_host(g), e)
    np.testing.assert_allclose(_host(got.logits), expected.logits, **_tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@MODELS
def test_training_pass_and_its_gradients_match_the_cpu(gpu, dtype, make_model):
    cpu_model = make_model(dtype)
    gpu_model = copy.deepcopy(cpu_model).to_gpu()
    x, y = _data(dtype=np.dtype(dtype))
    expected = cpu_model.trace(x, True)
    got = gpu_model.trace(to_device(x, "gpu"), True)
    # The same generators draw the same masks and dropout on either device.
    for e, g in zip(expected.masks, got.masks):
        np.testing.assert_array_equal(_host(g), e)
    np.testing.assert_allclose(_host(got.logits), expected.logits, **_tol(dtype))
    rng = np.random.default_rng(3)
    dlogits = rng.standard_normal(expected.logits.shape).astype(dtype) / len(y)
    advantages = rng.standard_normal(len(y)).astype(dtype) / len(y)
    penalty = PolicyPenalty(lambda_s=2.0, lambda_v=1.5, lambda_l2=1e-3)
    expected.backprop(dlogits, advantages=advantages, penalty=penalty)
    got.backprop(to_device(dlogits, "gpu"), advantages=to_device(advantages, "gpu"),
                 penalty=penalty)
    gpu_grads = gpu_model.named_grads()
    for path, value in cpu_model.named_grads().items():
        scale = np.abs(value).max() + 1e-30
        np.testing.assert_allclose(_host(gpu_grads[path]) / scale, value / scale,
                                   atol=1e-5 if dtype == "float32" else 1e-11, err_msg=path)


@pytest.mark.parametrize("make_optimizer", [
    lambda m: Adam(m, lr=0.01, groups={_own_rate(m): {"lr": 0.03}}),
    lambda m: SGD(m, lr=0.1, momentum=0.9, nesterov=True),
    lambda m: Adam(m, lr=0.01, clip_norm=0.01)])
@MODELS
def test_optimizer_steps_on_the_gpu_match_the_cpu(gpu, make_optimizer, make_model):
    cpu_model, (x, _) = make_model(dropout=0.0), _data()
    gpu_model = copy.deepcopy(cpu_model)
    cpu_opt, gpu_opt = make_optimizer(cpu_model), make_optimizer(gpu_model)
    gpu_model.to_gpu(gpu_opt)
    x_gpu = to_device(x, "gpu")
    for _ in range(2):
        for model, inputs, put in ((cpu_model, x, lambda a: a),
                                   (gpu_model, x_gpu, lambda a: to_device(a, "gpu"))):
            trace = model.trace(inputs, True)
            logits = _host(trace.logits)
            dlogits = (logits - logits.mean(axis=1, keepdims=True)).astype(np.float32) / 40
            trace.backprop(put(dlogits))
        cpu_opt.step()
        gpu_opt.step()
    gpu_params = gpu_model.named_params()
    for path, value in cpu_model.named_params().items():
        np.testing.assert_allclose(_host(gpu_params[path]), value, rtol=1e-4, atol=1e-5,
                                   err_msg=path)
    assert all(not _host(g).any() for g in gpu_model.named_grads().values())
    if cpu_opt.clip_norm:
        assert cpu_opt.grad_norm > cpu_opt.clip_norm         # it did clip
        assert gpu_opt.grad_norm == pytest.approx(cpu_opt.grad_norm, rel=1e-5)
    state = gpu_opt.state_dict()          # host copies, as checkpoints need
    assert all(isinstance(v, np.ndarray) for s in state["slots"].values() for v in s.values())


def test_a_gpu_model_saves_a_checkpoint_that_loads_on_the_cpu(gpu, tmp_path):
    model = _model()
    x, _ = _data()
    expected = model.trace(x, False).logits
    model.to_gpu()
    model.save(tmp_path / "model.h5")
    loaded = condnn.load(tmp_path / "model.h5").model
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.trace(x, False).logits, expected)


def test_inputs_on_the_other_device_are_refused(gpu):
    model = _model().to_gpu()
    x, _ = _data()
    with pytest.raises(ValueError, match="x is on the cpu but the model's parameters are on "
                                         "the gpu"):
        model.trace(x, False)
    cpu_model = _model()
    with pytest.raises(ValueError, match="x is on the gpu but the model's parameters"):
        cpu_model.trace(to_device(x, "gpu"), False)
    with pytest.raises(ValueError, match='execution "dense" runs on the CPU only'):
        model.trace(to_device(x, "gpu"), False, execution="dense")


class _OwnModel(condnn.Model):
    """A model written as the README's, that declares its GPU path."""

    runs_on_gpu = True

    def __init__(self):
        self.net = Sequential(Dense(24, 16, rng=1), ReLU(), Dropout(0.3, rng=2),
                              Dense(16, 3, rng=3))

    def forward(self, x, train):
        return self.net(x, train)


def test_a_model_of_ones_own_runs_on_the_gpu_as_on_the_cpu(gpu):
    rng = np.random.default_rng(8)
    cpu_net = _OwnModel()
    gpu_net = copy.deepcopy(cpu_net).to_gpu()
    x = rng.standard_normal((10, 24)).astype(np.float32)
    dy = rng.standard_normal((10, 3)).astype(np.float32)
    y, backprop = cpu_net(x, True)
    y_gpu, backprop_gpu = gpu_net(to_device(x, "gpu"), True)
    np.testing.assert_allclose(_host(y_gpu), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_host(backprop_gpu(to_device(dy, "gpu"))), backprop(dy),
                               rtol=1e-5, atol=1e-6)
    for path, grad in cpu_net.named_grads().items():
        np.testing.assert_allclose(_host(gpu_net.named_grads()[path]), grad, rtol=1e-5,
                                   atol=1e-6, err_msg=path)


class _UndeclaredModel(condnn.Model):
    def __init__(self):
        self.fc = Dense(24, 3)


def test_models_without_a_gpu_path_refuse_to_move(gpu):
    net = Sequential(Dense(24, 16), Tanh(), Dense(16, 3))
    with pytest.raises(ValueError, match="Tanh does not run on the GPU yet"):
        net.to_device("gpu")
    assert net[0].device == "cpu"                # nothing moved
    with pytest.raises(ValueError, match="_UndeclaredModel does not run on the GPU yet.*"
                                         "runs_on_gpu = True"):
        _UndeclaredModel().to_gpu()
    with pytest.raises(ValueError, match="frozen for evaluation"):
        for_inference(_model()).to_gpu()
    with pytest.raises(ValueError, match="optimizer must be an optimizer of this model"):
        _model().to_gpu(Adam(_model(), lr=0.1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_policy_gate_takes_a_gradient_of_its_probabilities_on_the_gpu(gpu, dtype):
    cpu_gate = PolicyGate(16, 6, tau=0.3, input_block_size=4, rng=5, dtype=dtype,
                          input_grad=True)
    gpu_gate = copy.deepcopy(cpu_gate).to_device("gpu")
    rng = np.random.default_rng(6)
    amask = (rng.random((20, 4)) < 0.6).astype(np.uint8)
    # Zero outside its blocks that are on, as a model's layer outputs are.
    h = (rng.standard_normal((20, 16)) * np.repeat(amask, 4, axis=1)).astype(dtype)
    dprob = rng.standard_normal((20, 6)).astype(dtype)
    advantages = rng.standard_normal(20).astype(dtype) / 20
    penalty = PolicyPenalty(lambda_s=2.0, lambda_v=1.0, lambda_l2=1e-3)
    expected, cpu_backprop = cpu_gate(h, True, amask=amask)
    got, gpu_backprop = gpu_gate(to_device(h, "gpu"), True, amask=to_device(amask, "gpu"))
    np.testing.assert_array_equal(_host(got.mask), expected.mask)
    dh = cpu_backprop(advantages, penalty, dprob)
    gpu_dh = gpu_backprop(to_device(advantages, "gpu"), penalty, to_device(dprob, "gpu"))
    for name, want, have in [("dh", dh, gpu_dh), *((f"d{p}", cpu_gate.grads[p],
                                                   gpu_gate.grads[p]) for p in ("Z", "d"))]:
        scale = np.abs(want).max() + 1e-30
        np.testing.assert_allclose(_host(have) / scale, want / scale,
                                   atol=1e-5 if dtype == "float32" else 1e-11, err_msg=name)


def test_a_condnet_with_shared_blocks_takes_a_callers_masks_on_the_gpu(gpu):
    cpu_model = _shared_model(dropout=0.0)
    gpu_model = copy.deepcopy(cpu_model).to_gpu()
    x, _ = _data()
    rng = np.random.default_rng(8)
    masks = [(rng.random((len(x), blocks)) < 0.5).astype(np.uint8) for blocks in (5, 4)]
    advantages = rng.standard_normal(len(x)) / len(x)
    expected = cpu_model.trace(x, True, masks=masks)
    got = gpu_model.trace(to_device(x, "gpu"), True,
                          masks=[to_device(m, "gpu") for m in masks])
    np.testing.assert_allclose(_host(got.logits), expected.logits, rtol=1e-5, atol=1e-6)
    for e, g in zip(expected.probs, got.probs):
        np.testing.assert_allclose(_host(g), e, rtol=1e-5, atol=1e-6)
    # The policies differentiate the routed part of the masks, on either device.
    expected.backprop(np.zeros_like(expected.logits), advantages=advantages)
    got.backprop(to_device(np.zeros_like(expected.logits), "gpu"),
                 advantages=to_device(advantages.astype(np.float32), "gpu"))
    for name in ("policy1/Z", "policy2/Z", "policy2/d"):
        np.testing.assert_allclose(_host(gpu_model.named_grads()[name]),
                                   cpu_model.named_grads()[name], rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_block_dropout_takes_a_callers_masks_on_the_gpu(gpu):
    cpu_model = _bdnn_model()
    gpu_model = copy.deepcopy(cpu_model).to_gpu()
    x, _ = _data()
    rng = np.random.default_rng(9)
    masks = [rng.random((len(x), 4)) < 0.5 for _ in range(2)]       # bool, on the host
    expected = cpu_model.trace(x, True, masks=masks)
    got = gpu_model.trace(to_device(x, "gpu"), True, masks=masks)
    np.testing.assert_allclose(_host(got.logits), expected.logits, rtol=1e-5, atol=1e-6)
    bad = [m.astype(np.uint8) for m in masks]
    bad[1][0, 0] = 2
    with pytest.raises(ValueError, match="BlockDropout: mask must hold only 0 and 1"):
        gpu_model.trace(to_device(x, "gpu"), True, masks=bad)


def test_the_cpu_only_backward_options_are_refused_on_the_gpu(gpu):
    rng = np.random.default_rng(10)
    a, b = (to_device(rng.standard_normal(shape).astype(np.float32), "gpu")
            for shape in ((4, 8), (8, 6)))
    g = to_device(np.ones((4, 6), np.float32), "gpu")
    with pytest.raises(ValueError, match="db_into and compute_da are not supported on the GPU"):
        condnn.sparse_dot_backward(g, a, None, b, None, 2, compute_da=False)
