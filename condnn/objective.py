"""The training objective of conditional networks and one step of its gradient.

For a batch of n examples, with C_i = -log P(y_i | x_i) the example's cost::

    J = mean_i C_i
        + sum_l [ lambda_s (L_b^l + L_e^l) + lambda_v L_v^l ]        (each policy, its tau_l)
        + lambda_l2 (sum |W|^2 + sum |Z|^2)

The network's weights follow the gradient of J.  The masks are sampled, so mean_i C_i has
no gradient for the policy; the policy follows REINFORCE's estimate of the gradient of the
expected cost instead, ``mean_i (C_i - b_i) grad log pi(u_i | x_i)`` with b a baseline
(:mod:`condnn.baselines`), plus the exact gradients of its regularizers.  Both are
descended together, in one backward pass.
"""
from dataclasses import dataclass, field
from typing import List

import numpy as np

from condnn.baselines import Baseline, LearnedBaseline, MovingAverageBaseline
from condnn.device import on_gpu, to_device
from condnn.flops import flops_fraction
from condnn.layers.policy_regularizers import PolicyPenalty
from condnn.layers.softmax_cross_entropy import softmax_cross_entropy
from condnn.optim.kernels import add_scaled


@dataclass
class StepResult:
    """What :meth:`ConditionalObjective.step` measured on a batch.

    ``objective`` is J; ``nll`` its first term, ``policy_penalty`` the sum of the policies'
    regularizers (with their coefficients), ``l2`` the weight penalty.  ``activation`` is
    the fraction of blocks on per gated layer, ``flops_fraction`` the work of the sampled
    masks over the dense network's.
    """

    objective: float
    nll: float
    policy_penalty: float
    l2: float
    errors: int
    activation: List[float] = field(default_factory=list)
    flops_fraction: float = 1.0


class ConditionalObjective:
    """J above, for any model of :mod:`condnn.models` (baselines without a policy too).

    Args:
        lambda_s: weight of the sparsity terms L_b + L_e.
        lambda_v: weight of the variance term L_v.
        lambda_l2: weight of the squared norm of every weight matrix (``*/W`` and the
            policies' ``*/Z``; biases are not penalised).
        baseline: the REINFORCE baseline (default: a moving average).
        normalize_advantages: divide the batch's advantages ``C_i - b_i`` by their root
            mean square, so that the REINFORCE term has unit scale whatever the size of
            the costs (they shrink by orders of magnitude as the network learns); the
            lambdas then weigh the regularizers against a signal of fixed size.
    """

    def __init__(self, lambda_s: float = 0.0, lambda_v: float = 0.0, lambda_l2: float = 0.0,
                 baseline: Baseline = None, normalize_advantages: bool = True) -> None:
        self.penalty = PolicyPenalty(lambda_s, lambda_v, lambda_l2)
        self.baseline = baseline if baseline is not None else MovingAverageBaseline()
        self.normalize_advantages = bool(normalize_advantages)
        self._baseline_state = None          # the baseline's state on the GPU, once used

    def l2_value(self, model) -> float:
        """``lambda_l2`` times the squared norm of every ``*/W`` and ``*/Z`` (of a model on
        the GPU, from host copies)."""
        if not self.penalty.lambda_l2:
            return 0.0
        squares = 0.0
        for path, param in model.named_params().items():
            if path.rsplit("/", 1)[-1] in ("W", "Z"):
                param = to_device(param, "cpu")
                squares += float(np.vdot(param, param))
        return self.penalty.lambda_l2 * squares

    def step(self, model, x: np.ndarray, y: np.ndarray, execution: str = "sparse",
             report_l2: bool = True, check_labels: bool = True) -> StepResult:
        """A training forward and backward pass on (x, y): adds the gradient of J (and the
        policy's estimate) into the model's gradients, for the optimizer to apply.

        ``report_l2=False`` leaves the L2 term's value out of the result (0): it is a pass
        over every weight, which a trainer can make once per epoch instead of per batch;
        its gradient is added all the same.

        On the GPU (x and y GPU arrays, y int64) the step returns a :class:`DeviceStep`
        instead, and nothing in it waits for the device unless ``check_labels``, which
        checks y on the device (a trainer whose labels come from a checked data set turns it
        off)."""
        if on_gpu(x):
            return self._step_gpu(model, x, y, execution, report_l2, check_labels)
        trace = model.trace(x, True, execution=execution)
        loss = softmax_cross_entropy(trace.logits, y)
        n = len(y)
        advantages = None
        if getattr(model, "gates", []):
            advantages = self.baseline.advantages(x, loss.losses)
            if self.normalize_advantages:
                advantages /= np.sqrt(np.mean(advantages * advantages)) + 1e-12
            advantages /= n
        trace.backprop(loss.backprop(), advantages=advantages, penalty=self.penalty)
        self._add_l2_grads(model)
        return self.summary(model, trace.logits, y, loss.losses, trace.masks, trace.probs,
                            execution, self.l2_value(model) if report_l2 else 0.0)

    def _add_l2_grads(self, model) -> None:
        lambda_l2 = self.penalty.lambda_l2
        if lambda_l2:
            grads = model.named_grads()
            for path, param in model.named_params().items():
                if path.endswith("/W"):     # the gates add Z's (PolicyGate's backprop)
                    add_scaled(grads[path], 2 * lambda_l2, param)

    def summary(self, model, logits: np.ndarray, y: np.ndarray, losses: np.ndarray,
                masks, probs, execution: str, l2: float) -> StepResult:
        """The :class:`StepResult` of a step from what its pass gave (host arrays)."""
        gates = getattr(model, "gates", [])
        policy_penalty = 0.0
        for gate, prob in zip(gates, probs):
            if prob is not None:
                policy_penalty += self.penalty.value_and_grad(prob, gate.tau)[0]
        nll = float(np.mean(losses, dtype=np.float64))
        activation = [float(m.mean()) if m is not None else 1.0 for m in masks]
        fraction = flops_fraction(model.products(), masks, len(y),
                                  with_policy=execution != "all_on")
        errors = int((logits.argmax(axis=1) != y).sum())
        return StepResult(nll + policy_penalty + l2, nll, policy_penalty, l2, errors,
                          activation, fraction)

    def _step_gpu(self, model, x, y, execution: str, report_l2: bool,
                  check_labels: bool) -> "DeviceStep":
        """:meth:`step` on GPU arrays (x, and y as int64): every computation of the
        gradients runs on the device, and nothing is read back; the result is a
        :class:`DeviceStep`, whose :meth:`DeviceStep.result` reads its statistics later."""
        from condnn.gpu import training
        trace = model.trace(x, True, execution=execution)
        losses, probs = training.softmax_cross_entropy(trace.logits, y, check_labels)
        n = x.shape[0]
        advantages = None
        if getattr(model, "gates", []):
            state = self._device_baseline_state()
            if isinstance(self.baseline, LearnedBaseline):
                advantages = training.learned_advantages(
                    losses, x if self.baseline.linear else None, state, lr=self.baseline.lr,
                    normalize=self.normalize_advantages)
            else:
                advantages = training.advantages(
                    losses, self.baseline.name, state,
                    momentum=getattr(self.baseline, "momentum", 0.0),
                    normalize=self.normalize_advantages)
        dlogits = training.xent_grad(probs, y, 1.0 / n, out=probs)
        trace.backprop(dlogits, advantages=advantages, penalty=self.penalty)
        self._add_l2_grads(model)
        return DeviceStep(self, model, trace.logits, y, losses, list(trace.masks),
                          list(trace.probs), execution,
                          self.l2_value(model) if report_l2 else 0.0)

    def _device_baseline_state(self):
        """The baseline's state on the GPU, made from the host baseline at the first GPU
        step: (moving average, has a value), or a learned baseline's (c, w), all float64;
        :meth:`sync_baseline` copies it back."""
        if self._baseline_state is None:
            if isinstance(self.baseline, LearnedBaseline):
                state = np.concatenate([[self.baseline.c], self.baseline.w])
            else:
                value = getattr(self.baseline, "value", None)
                state = np.array([0.0 if value is None else value, value is not None])
            self._baseline_state = to_device(state.astype(np.float64), "gpu")
        return self._baseline_state

    def sync_baseline(self) -> None:
        """Copies the GPU steps' baseline state into the host baseline (whose state_dict
        checkpoints save); a no-op before any GPU step."""
        if self._baseline_state is None:
            return
        state = to_device(self._baseline_state, "cpu")
        if isinstance(self.baseline, LearnedBaseline):
            self.baseline.c, self.baseline.w = float(state[0]), state[1:].copy()
        elif hasattr(self.baseline, "value"):
            value, has_value = state
            self.baseline.value = float(value) if has_value else None


@dataclass
class DeviceStep:
    """A GPU step's outputs, kept on the device until :meth:`result` reads them (a trainer
    does so after the epoch, so the steps never wait for a copy to the host)."""

    objective: "ConditionalObjective"
    model: object
    logits: object
    y: object
    losses: object
    masks: List[object]
    probs: List[object]
    execution: str
    l2: float

    def result(self) -> StepResult:
        """The step's :class:`StepResult`."""
        host = lambda x: None if x is None else to_device(x, "cpu")   # noqa: E731
        return self.objective.summary(self.model, host(self.logits), host(self.y),
                                      host(self.losses), [host(m) for m in self.masks],
                                      [host(p) for p in self.probs], self.execution, self.l2)
