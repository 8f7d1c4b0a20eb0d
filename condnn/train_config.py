"""The settings of a training run, their defaults and their checks.

A run is described by a :class:`TrainConfig`; ``condnn train`` builds one from its defaults,
then a JSON config file, then its flags.  The defaults train the default conditional MLP:
two hidden layers of 48 blocks of 64 units, 15% of the blocks on (4 of them shared by every
example), on the bundled MNIST.
None of them depends on MNIST: the input and output widths come from the data set.
"""
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

from condnn.baselines import BASELINES
from condnn.models.conditional_mlp import check_shared_blocks, shared_block_list

MODELS = ("condnet", "dense", "bdnn")
OPTIMIZERS = ("sgd", "adam")
MODES = ("threshold", "sample")


@dataclass
class TrainConfig:
    """Every setting of a run.

    Model:
        model: "condnet" (:class:`condnn.models.ConditionalMLP`), "dense"
            (:class:`condnn.models.DenseMLP`) or "bdnn" (block dropout,
            :class:`condnn.models.BlockDropoutMLP`, keep rate ``tau``).
        hidden: per hidden layer ``[n_blocks, block_size]`` (a dense model may also take
            plain widths; a pair means ``n_blocks * block_size`` units).
        tau: target fraction of blocks on, one number or one per hidden layer.
        shared_blocks: of the condnet, the blocks of each hidden layer that every example
            runs (the policy routes the others; see ConditionalMLP): a count, one per
            hidden layer, or "auto" (the default): half of each layer's budget of
            ``tau * n_blocks`` blocks, rounded, and always fewer than the budget.
        eps: the policies' squashing margin.
        policy_init_scale: scale of the policies' initial Z (see PolicyGate).
        mode: evaluation masks: "threshold" (p > 0.5) or "sample".
        dropout: dropout rate of the hidden units of the condnet (inside its active blocks)
            and of the dense model; block dropout has its own masks only.
    Objective:
        lambda_s, lambda_v, lambda_l2: weights of L_b + L_e, of L_v and of the squared
            weights (see :mod:`condnn.objective`).
        baseline: the REINFORCE baseline (:data:`condnn.baselines.BASELINES`);
        baseline_momentum: of the moving average; baseline_lr: of the learned baselines.
    Optimisation:
        optimizer: "sgd" (Nesterov momentum) or "adam"; lr: the network's learning rate,
        policy_lr: the policies' (both decay to 0 along a cosine over the run);
        momentum: SGD's; batch_size; epochs; patience: stop after this many epochs without
        a better validation error (None: never).
    Data:
        data: ``mnist``, ``idx:DIR``, ``cifar10:PATH`` or ``svhn:DIR``; train_size: use only
        this many training examples (None: all); val_size: held out for validation (None:
        5000, or a tenth of the training set when that is smaller).
    Run:
        seed: seeds the model, the masks and the data order; out: the output directory.
    """

    data: str = "mnist"
    model: str = "condnet"
    hidden: List[Any] = field(default_factory=lambda: [[48, 64], [48, 64]])
    tau: Union[float, List[float]] = 0.15
    shared_blocks: Union[str, int, List[int]] = "auto"
    eps: float = 0.01
    policy_init_scale: float = 12.0
    mode: str = "threshold"
    dropout: float = 0.2
    lambda_s: float = 80.0
    lambda_v: float = 80.0
    lambda_l2: float = 5e-5
    baseline: str = "moving-average"
    baseline_momentum: float = 0.9
    baseline_lr: float = 0.1
    optimizer: str = "adam"
    lr: float = 0.001
    policy_lr: float = 0.003
    momentum: float = 0.9
    batch_size: int = 128
    epochs: int = 12
    patience: Optional[int] = None
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    seed: int = 0
    out: str = os.path.join("runs", "condnet")

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> "TrainConfig":
        """Raises ValueError naming the first setting that is out of range."""
        def number(name: str, low: float, high: float = float("inf"),
                   low_open: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not (low < value if low_open else low <= value) or not value < high:
                interval = f"{'(' if low_open else '['}{low}, {high})"
                raise ValueError(f"{name} must be a number in {interval}, got {value!r}")

        def integer(name: str, low: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}"
                                 f"{' or null' if optional else ''}, got {value!r}")

        def choice(name: str, options) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {options}, got {getattr(self, name)!r}")

        choice("model", MODELS)
        choice("mode", MODES)
        choice("baseline", BASELINES)
        choice("optimizer", OPTIMIZERS)
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"data must be a data set spec such as 'mnist' or 'idx:DIR', "
                             f"got {self.data!r}")
        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"out must be a directory path, got {self.out!r}")
        self._check_hidden()
        taus = self.tau if isinstance(self.tau, list) else [self.tau]
        if isinstance(self.tau, list) and len(self.tau) != len(self.hidden):
            raise ValueError(f"tau must be one number or one per hidden layer "
                             f"({len(self.hidden)}), got {self.tau!r}")
        for tau in taus:
            if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < 1:
                raise ValueError(f"tau must be a number in (0, 1) or a list of them, "
                                 f"got {self.tau!r}")
        self._check_shared_blocks()
        number("eps", 0, 0.5)
        number("policy_init_scale", 0)
        number("dropout", 0, 1)
        for name in ("lambda_s", "lambda_v", "lambda_l2"):
            number(name, 0)
        number("baseline_momentum", 0, 1)
        number("baseline_lr", 0, 1.000001, low_open=True)
        number("lr", 0, low_open=True)
        number("policy_lr", 0, low_open=True)
        number("momentum", 0, 1)
        integer("batch_size", 1)
        integer("epochs", 1)
        integer("patience", 1, optional=True)
        integer("train_size", 1, optional=True)
        integer("val_size", 1, optional=True)
        integer("seed", 0)
        return self

    def _check_hidden(self) -> None:
        if not isinstance(self.hidden, list) or not self.hidden:
            raise ValueError(f"hidden must be a non-empty list of [n_blocks, block_size] "
                             f"pairs, got {self.hidden!r}")
        for layer in self.hidden:
            plain = isinstance(layer, int) and not isinstance(layer, bool) and layer >= 1
            pair = (isinstance(layer, list) and len(layer) == 2 and
                    all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                        for v in layer))
            if not pair and not (plain and self.model == "dense"):
                raise ValueError(f"hidden must be a list of [n_blocks, block_size] pairs of "
                                 f"positive ints (plain widths only for the dense model), "
                                 f"got the entry {layer!r}")
        if self.model != "dense" and len({bs for _, bs in self.hidden}) > 1:
            raise ValueError(f"hidden: every layer must have the same block size, got "
                             f"{self.hidden!r}")

    def _check_shared_blocks(self) -> None:
        if self.shared_blocks == "auto":
            return
        if isinstance(self.shared_blocks, str):
            raise ValueError(f"shared_blocks must be \"auto\", an int >= 0 or a list of them "
                             f"(one per hidden layer), got {self.shared_blocks!r}")
        # Only the condnet has a budget of blocks to share; the other models ignore it.
        if self.model == "condnet":
            check_shared_blocks(self.shared_blocks, self.hidden, self.layer_taus())
        else:
            shared_block_list(self.shared_blocks, len(self.hidden))

    def layer_taus(self) -> List[float]:
        """tau of each hidden layer."""
        return list(self.tau) if isinstance(self.tau, list) else [self.tau] * len(self.hidden)

    def shared_block_counts(self) -> List[int]:
        """The shared blocks of each hidden layer of the condnet ("auto" worked out)."""
        if self.shared_blocks == "auto":
            return [auto_shared_blocks(tau, layer[0])
                    for tau, layer in zip(self.layer_taus(), self.hidden)]
        return shared_block_list(self.shared_blocks, len(self.hidden))

    def widths(self) -> List[int]:
        """The number of units of each hidden layer."""
        return [layer if isinstance(layer, int) else layer[0] * layer[1]
                for layer in self.hidden]

    def to_dict(self) -> Dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some settings changed (checked)."""
        return from_mapping({**self.to_dict(), **changes})


def auto_shared_blocks(tau: float, n_blocks: int) -> int:
    """Half of a layer's budget of ``tau * n_blocks`` blocks, rounded half up, and fewer
    than the budget: 4 of the 7.2 blocks of 48 at tau 0.15, none of a budget of 1 or less."""
    budget = tau * n_blocks
    return max(0, min(int(math.floor(budget / 2 + 0.5)), int(math.ceil(budget)) - 1))


def _normalise(key: str, value: Any) -> Any:
    # JSON gives lists; tuples from Python callers are accepted the same.
    if key == "hidden" and isinstance(value, (list, tuple)):
        return [list(v) if isinstance(v, (list, tuple)) else v for v in value]
    if key in ("tau", "shared_blocks") and isinstance(value, tuple):
        return list(value)
    return value


def from_mapping(values: Mapping[str, Any], base: Optional[TrainConfig] = None) -> TrainConfig:
    """A TrainConfig from ``base`` (default: the defaults) with ``values`` changed.

    Raises:
        ValueError: a key is not a setting (the known ones are listed), or a value is out of
            range.
    """
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; the settings are {known}")
    merged = (base or TrainConfig()).to_dict()
    merged.update({key: _normalise(key, value) for key, value in values.items()})
    return TrainConfig(**merged)


def from_saved(values: Mapping[str, Any]) -> TrainConfig:
    """The settings a run saved in its checkpoints (see :func:`from_mapping`).  Runs saved
    before the condnet had shared blocks had none, so their ``shared_blocks`` is 0."""
    return from_mapping({"shared_blocks": 0, **values})


def load_config_file(path: str, base: Optional[TrainConfig] = None) -> TrainConfig:
    """Reads a JSON object of settings from ``path`` (see :func:`from_mapping`)."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except OSError as error:
        raise ValueError(f"cannot read the config file {path!r}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"the config file {path!r} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"the config file {path!r} must hold a JSON object of settings, "
                         f"got {type(values).__name__}")
    try:
        return from_mapping(values, base)
    except ValueError as error:
        raise ValueError(f"config file {path!r}: {error}") from None
