"""The trainer: epochs of minibatch descent on the objective, validation, checkpoints, logs.

``train(config)`` runs a :class:`condnn.train_config.TrainConfig` and writes into
``config.out``:

* ``last.h5``: the checkpoint after the latest epoch (model, optimizer, every generator,
  the baseline and the trainer's own state): ``train(config, resume=True)`` continues from
  it and ends bit for bit where an uninterrupted run ends;
* ``best.h5``: the checkpoint of the epoch with the lowest validation error;
* ``log.jsonl``: one JSON object per epoch (see :func:`train`); ``config.json``: the settings.

Checkpoints are written atomically (:mod:`condnn.checkpoint`).  The progress bar (tqdm)
is shown only when stderr is a terminal and ``quiet`` is not set.
"""
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from tqdm import tqdm

from condnn import datasets
from condnn.baselines import Baseline, make_baseline
from condnn.checkpoint import restore
from condnn.device import check_device, to_device
from condnn.evaluation import evaluate
from condnn.model import Model
from condnn.models import BlockDropoutMLP, ConditionalMLP, DenseMLP
from condnn.objective import ConditionalObjective
from condnn.optim import SGD, Adam, CosineDecay, Optimizer
from condnn.thread_teams import one_team
from condnn.train_config import TrainConfig, from_mapping, from_saved

LOG_NAME, BEST_NAME, LAST_NAME, CONFIG_NAME = "log.jsonl", "best.h5", "last.h5", "config.json"
POLICY_GROUP = "policy*"
CALIBRATION_EXAMPLES = 2000     # the policies' parameters: policy<l>/Z, policy<l>/d


@dataclass
class Split:
    """The examples of a run: training, validation and test parts of one data set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int


@dataclass
class TrainResult:
    """What :func:`train` returns: the log records, the checkpoints, the best epoch."""

    log: List[Dict[str, Any]]
    best_path: str
    last_path: str
    best_epoch: int
    best_val_error: float
    stopped_early: bool = False
    split: Optional[Split] = field(default=None, repr=False)


def load_split(config: TrainConfig, data: Optional[datasets.DataSet] = None) -> Split:
    """The data set of ``config`` (or ``data``), cut to ``train_size`` and split into
    training and validation parts by ``seed``."""
    data = data if data is not None else datasets.load(config.data)
    x, y = data.x_train, data.y_train
    val_size = config.val_size
    if val_size is None:
        available = len(y) if config.train_size is None else config.train_size
        val_size = max(1, min(5000, available // 10))
    if config.train_size is not None:
        if config.train_size + val_size > len(y):
            raise ValueError(f"train_size {config.train_size} + val_size {val_size} exceeds "
                             f"the {len(y)} training examples of {config.data!r}")
        x, y = x[:config.train_size + val_size], y[:config.train_size + val_size]
    if val_size >= len(y):
        raise ValueError(f"val_size {val_size} leaves no training examples of the {len(y)} "
                         f"of {config.data!r}")
    x_train, y_train, x_val, y_val = datasets.train_val_split(x, y, val_size, seed=config.seed)
    return Split(x_train, y_train, x_val, y_val, data.x_test, data.y_test, data.classes)


def build_model(config: TrainConfig, n_in: int, n_classes: int,
                input_mean: Optional[np.ndarray] = None) -> Model:
    """The model ``config`` describes, for inputs of width n_in and n_classes classes, that
    subtracts ``input_mean`` from its inputs (if given)."""
    mean = None if input_mean is None else [float(v) for v in input_mean]
    if config.model == "dense":
        return DenseMLP(n_in, n_classes, hidden=config.widths(), dropout=config.dropout,
                        seed=config.seed, input_mean=mean)
    if config.model == "bdnn":
        return BlockDropoutMLP(n_in, n_classes, hidden=config.hidden, keep_rate=config.tau,
                               seed=config.seed, input_mean=mean)
    return ConditionalMLP(n_in, n_classes, hidden=config.hidden, tau=config.tau,
                          eps=config.eps, mode=config.mode,
                          policy_init_scale=config.policy_init_scale, dropout=config.dropout,
                          seed=config.seed, input_mean=mean,
                          shared_blocks=config.shared_block_counts())


def build_optimizer(config: TrainConfig, model: Model, total_steps: int) -> Optimizer:
    """SGD (Nesterov) or Adam, cosine-decayed over the run; the policies get their own
    learning rate.  L2 is part of the objective, not of the optimizer."""
    groups = None
    if any(path.startswith("policy") for path in model.named_params()):
        groups = {POLICY_GROUP: {"lr": CosineDecay(config.policy_lr, total_steps)}}
    lr = CosineDecay(config.lr, total_steps)
    if config.optimizer == "adam":
        return Adam(model, lr=lr, groups=groups)
    return SGD(model, lr=lr, momentum=config.momentum, nesterov=config.momentum > 0,
               groups=groups)


def build_baseline(config: TrainConfig, n_in: int) -> Baseline:
    """The REINFORCE baseline of ``config``."""
    return make_baseline(config.baseline, n_in, momentum=config.baseline_momentum,
                         lr=config.baseline_lr)


def _progress_enabled(quiet: bool) -> bool:
    return not quiet and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def read_log(path: str, up_to_epoch: int) -> List[Dict[str, Any]]:
    """The records of a JSON-lines log up to an epoch (none if the file is missing)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["epoch"] <= up_to_epoch]


def _write_log(path: str, records: List[Dict[str, Any]]) -> None:
    # Rewritten whole and renamed: a resumed run drops the records of epochs after its
    # checkpoint, and a crash never leaves half a line.
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    os.replace(temporary, path)


def _config_differences(a: TrainConfig, b: TrainConfig) -> List[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{key}: {db[key]!r} saved, {da[key]!r} given" for key in da if da[key] != db[key]]


def train(config: TrainConfig, *, resume: bool = False, quiet: bool = False,
          echo: Optional[Callable[[str], None]] = print,
          data: Optional[datasets.DataSet] = None,
          stop_after: Optional[int] = None, device: str = "cpu") -> TrainResult:
    """Trains the model of ``config``; see the module docstring for what is written.

    Each epoch's log record holds: ``epoch``; ``train_loss`` (mean NLL of the training
    batches, masks sampled), ``train_objective`` (with the penalties, the L2 term taken at
    the end of the epoch), ``train_error``;
    ``val_error`` and ``val_loss`` (evaluation mode: masks by ``mode``);
    ``mean_activation`` (per gated layer, validation), ``val_mean_activation`` (all gated
    blocks), ``train_activation`` (per layer, sampled masks); ``flops_fraction``
    (validation masks' multiply-adds over the dense twin's, policy included) and
    ``train_flops_fraction``; ``seconds`` (the epoch's training time), ``val_seconds``;
    ``lr`` and ``policy_lr`` at the epoch's start; ``best`` (a new best validation error).

    Args:
        config: the settings.
        resume: continue from ``<out>/last.h5``; the settings must equal the saved ones.
        quiet: no progress bar.
        echo: called with a one-line summary per epoch (None: silent).
        data: the data set to use instead of loading ``config.data`` (tests, benchmarks).
        stop_after: run at most this many epochs in this call (the schedule is still that
            of ``config.epochs``); resume later to go on.
        device: "cpu" or "gpu": where the model trains (:meth:`condnn.Model.to_gpu`).  On
            the GPU each batch is copied to the device and the step runs there; its
            statistics are read back once the epoch is done.  Checkpoints hold host arrays
            either way, so a run resumes on either device.
    """
    device = check_device(device)
    config = from_mapping(config.to_dict())
    split = load_split(config, data)
    n_in = split.x_train.shape[1]
    # Centred inputs: uncentred, images of mostly 1s (MNIST inverted) trained to 6.25%
    # test error against 2.15% for MNIST; centred, to 2.53% and 2.48%.
    model = build_model(config, n_in, split.classes,
                        input_mean=split.x_train.mean(axis=0, dtype=np.float64))
    steps_per_epoch = -(-len(split.y_train) // config.batch_size)
    optimizer = build_optimizer(config, model, config.epochs * steps_per_epoch)
    baseline = build_baseline(config, n_in)
    objective = ConditionalObjective(config.lambda_s, config.lambda_v, config.lambda_l2,
                                     baseline)
    data_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
    os.makedirs(config.out, exist_ok=True)
    best_path, last_path = (os.path.join(config.out, name) for name in (BEST_NAME, LAST_NAME))
    log_path = os.path.join(config.out, LOG_NAME)
    state = {"best_val_error": float("inf"), "best_epoch": 0, "bad_epochs": 0}
    records: List[Dict[str, Any]] = []
    start_epoch = 1
    if resume:
        if not os.path.exists(last_path):
            raise FileNotFoundError(f"cannot resume: no checkpoint {last_path!r}")
        checkpoint = restore(last_path, model)
        saved = from_saved(checkpoint.metadata["config"])
        differences = _config_differences(config, saved)
        if differences:
            raise ValueError("cannot resume with other settings than the run's: "
                             + "; ".join(differences))
        optimizer.load_state_dict(checkpoint.optimizer_state)
        data_rng = checkpoint.rngs["data"]
        baseline.load_state_dict(checkpoint.metadata["baseline"])
        state = dict(checkpoint.metadata["trainer"])
        records = read_log(log_path, checkpoint.epoch)
        start_epoch = checkpoint.epoch + 1
    elif hasattr(model, "calibrate"):
        # Data-dependent start: every block on for tau of the examples (see calibrate).
        model.calibrate(split.x_train[:CALIBRATION_EXAMPLES])
    if device == "gpu":
        model.to_gpu(optimizer)
    with open(os.path.join(config.out, CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(config.to_dict(), f, indent=2)

    last_epoch = config.epochs if stop_after is None else min(config.epochs,
                                                               start_epoch + stop_after - 1)
    with one_team(block_sparse=not isinstance(model, DenseMLP)):
        stopped_early = _run_epochs(model, objective, optimizer, baseline, split, config,
                                    data_rng, state, records, range(start_epoch, last_epoch + 1),
                                    steps_per_epoch, quiet, echo)
    return TrainResult(records, best_path, last_path, state["best_epoch"],
                       state["best_val_error"], stopped_early, split)


def _run_epochs(model: Model, objective: ConditionalObjective, optimizer: Optimizer,
                baseline: Baseline, split: Split, config: TrainConfig,
                data_rng: np.random.Generator, state: Dict[str, Any],
                records: List[Dict[str, Any]], epochs: range, steps_per_epoch: int,
                quiet: bool, echo: Optional[Callable[[str], None]]) -> bool:
    """The epochs of :func:`train`: trains, validates, logs and saves; True if it stopped
    early."""
    best_path, last_path = (os.path.join(config.out, name) for name in (BEST_NAME, LAST_NAME))
    log_path = os.path.join(config.out, LOG_NAME)
    for epoch in epochs:
        if config.patience is not None and state["bad_epochs"] >= config.patience:
            return True
        rates = optimizer.learning_rates()
        record = _train_epoch(model, objective, optimizer, split, config, data_rng, epoch,
                              steps_per_epoch, quiet)
        record["lr"] = rates["default"]
        record["policy_lr"] = rates.get(POLICY_GROUP)
        start = time.perf_counter()
        objective.sync_baseline()            # the GPU steps' baseline, for the checkpoint
        val = evaluate(model, split.x_val, split.y_val)
        record.update(val_error=val.error, val_loss=val.loss, mean_activation=val.activation,
                      val_mean_activation=val.mean_activation,
                      flops_fraction=val.flops_fraction,
                      val_seconds=time.perf_counter() - start)
        improved = val.error < state["best_val_error"]
        record["best"] = improved
        if improved:
            state.update(best_val_error=val.error, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        records.append(record)
        _write_log(log_path, records)
        metadata = {"config": config.to_dict(), "baseline": baseline.state_dict(),
                    "trainer": state, "data": config.data, "record": record}
        rngs = {"data": data_rng}
        if improved:
            model.save(best_path, optimizer, step=optimizer.step_count, epoch=epoch, rngs=rngs,
                       metadata=metadata)
        model.save(last_path, optimizer, step=optimizer.step_count, epoch=epoch, rngs=rngs,
                   metadata=metadata)
        if echo is not None:
            echo(_summary_line(record))
    return False


def _train_epoch(model: Model, objective: ConditionalObjective, optimizer: Optimizer,
                 split: Split, config: TrainConfig, data_rng: np.random.Generator, epoch: int,
                 steps: int, quiet: bool) -> Dict[str, Any]:
    """One pass over the training examples; the epoch's log record so far."""
    totals = {"nll": 0.0, "objective": 0.0, "penalty": 0.0, "errors": 0, "flops": 0.0,
              "seen": 0, "activation": None}
    start = time.perf_counter()
    batches = tqdm(datasets.minibatches(split.x_train, split.y_train, config.batch_size,
                                        rng=data_rng),
                   total=steps, desc=f"epoch {epoch}", leave=False,
                   disable=not _progress_enabled(quiet))
    deferred, gpu = [], model.device == "gpu"
    for xb, yb in batches:
        if gpu:
            # The statistics stay on the device until the epoch is done; the labels were
            # checked with the data set.
            deferred.append(objective.step(model, to_device(xb, "gpu"),
                                           to_device(yb.astype(np.int64), "gpu"),
                                           report_l2=False, check_labels=False))
            optimizer.step()
            continue
        result = objective.step(model, xb, yb, report_l2=False)
        optimizer.step()
        _accumulate(totals, result, len(yb))
        batches.set_postfix(loss=f"{result.nll:.4f}", refresh=False)
    for step in deferred:
        _accumulate(totals, step.result(), len(step.losses))
    # On the GPU this includes waiting for the device's last steps and reading back their
    # statistics, so it is the epoch's whole time.
    seconds = time.perf_counter() - start
    seen, activation_sums = totals["seen"], totals["activation"]
    # The weights' L2 term, at the end of the epoch (per batch it is a pass over them all).
    return {"epoch": epoch, "train_loss": totals["nll"] / seen,
            "train_objective": totals["objective"] / seen + objective.l2_value(model),
            "policy_penalty": totals["penalty"] / seen,
            "train_error": totals["errors"] / seen,
            "train_activation": [] if activation_sums is None
            else (activation_sums / seen).tolist(),
            "train_flops_fraction": totals["flops"] / seen, "seconds": seconds}


def _accumulate(totals: Dict[str, Any], result, n: int) -> None:
    """Adds one step's :class:`condnn.objective.StepResult` (of n examples) to the epoch's
    sums."""
    totals["seen"] += n
    totals["nll"] += result.nll * n
    totals["objective"] += result.objective * n
    totals["penalty"] += result.policy_penalty * n
    totals["errors"] += result.errors
    totals["flops"] += result.flops_fraction * n
    activation = np.asarray(result.activation, dtype=np.float64) * n
    totals["activation"] = activation if totals["activation"] is None \
        else totals["activation"] + activation


def _summary_line(record: Dict[str, Any]) -> str:
    activation = ", ".join(f"{a:.3f}" for a in record["mean_activation"]) or "dense"
    return (f"epoch {record['epoch']:3d}  {record['seconds']:6.1f} s  "
            f"train loss {record['train_loss']:.4f}  val error "
            f"{100 * record['val_error']:5.2f}%  activation [{activation}]  "
            f"flops {100 * record['flops_fraction']:5.1f}%" + ("  *" if record["best"] else ""))
