"""The policy gate: which blocks of a layer's output each example switches on."""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

from condnn import _policy
from condnn.device import check_same_device, on_gpu, to_device
from condnn.initializers import Initializer, glorot_uniform
from condnn.layers.base import Layer, check_input, check_size, float_dtype
from condnn.layers.policy_regularizers import PolicyPenalty, log_likelihood
from condnn.optim.kernels import add_scaled
from condnn.rng import RngLike, as_generator
from condnn.sparse import sparse_dot

MODES = ("sample", "threshold")

# backprop(advantages=None, penalty=None, dprob=None) -> dh, or None (stop-gradient).
GateBackprop = Callable[..., Optional[np.ndarray]]


class GateOutput(NamedTuple):
    """What :meth:`PolicyGate.forward` gives: ``mask`` (n, B) uint8 of 0/1, the blocks
    switched on, and ``prob`` (n, B), the probabilities they were drawn with."""

    mask: np.ndarray
    prob: np.ndarray


class PolicyGate(Layer):
    """A Bernoulli policy over the B blocks of a layer's output, from the layer's input h.

    Forward, for h of shape (n, n_in)::

        z = (h * Am) @ Z + d                     # (n, B); Am: h's own block mask, if any
        p = eps + (1 - 2 eps) sigmoid(z)         # squashed into [eps, 1 - eps]
        u ~ Bernoulli(p)                         # training, and mode "sample"
        u = [p > 0.5]                            # mode "threshold" (evaluation default)

    In threshold mode an example with no block above 0.5 keeps its most probable block: a
    layer with every block off passes on nothing, and the output of the network would be
    its last bias whatever the input.  A gate whose layer has blocks on anyway (the shared
    blocks of :class:`condnn.models.ConditionalMLP`) is built with ``keep_a_block=False``.

    The squashing keeps ``log pi(u | h)`` and its gradient finite, and keeps every block
    a chance of being tried.  Z is (n_in, B), initialised at random (``init`` times
    ``init_scale``), and d is (B,), initialised to logit(tau): with a small scale p starts
    near tau for every input, with a large one the policy starts as a random projection of
    h that already routes each input decisively (``ConditionalMLP.calibrate`` then sets d
    so that each block is on for a fraction tau of the data).

    Backward: ``backprop(advantages=None, penalty=None, dprob=None)`` adds to the gradients
    of Z and d the gradient of::

        sum_i A_i log pi(u_i | h_i)                                 (the REINFORCE term)
        + lambda_s (L_b + L_e) + lambda_v L_v                       (at this gate's tau)
        + lambda_l2 |Z|^2
        + sum_ij dprob_ij p_ij                                      (anything else of p)

    with ``A = advantages`` of shape (n,) and ``penalty`` a :class:`PolicyPenalty` (see
    :mod:`condnn.layers.policy_regularizers` for L_b, L_e and L_v).  To descend on the
    expected cost ``E[C]``, pass ``A_i = (C_i - b_i) / n`` (C the per-example cost, b a
    baseline): then ``sum_i A_i grad log pi(u_i | h_i)`` estimates ``grad E[mean_i C_i]``.

    The policy's input is a stop-gradient by default (``input_grad=False``): backprop
    returns None and nothing flows from the policy into the layers below.  The policy is
    a separate learner (the REINFORCE term is a noisy estimate that would disturb the
    features), and the layers below are trained by the classification loss alone.
    ``input_grad=True`` returns ``dh = (dz @ Z.T) * Am`` instead.

    Args:
        n_in: width of the input h.
        n_blocks: B, the number of blocks of the gated layer's output.
        tau: the target fraction of blocks on, in (0, 1).
        eps: the squashing margin, in [0, 0.5).
        mode: "threshold" (deterministic) or "sample", how masks are chosen in evaluation.
        input_block_size: the block size of h's mask ``amask``, when h is the output of a
            masked layer (then the product skips h's inactive blocks).
        init: initializer of Z, scaled by ``init_scale``.
        rng: seed or Generator for Z's initialization and the sampling; it is saved in
            checkpoints (``<path>/rng``), so a resumed run draws the same masks.
        dtype: float32 or float64.
        input_grad: see above.
        keep_a_block: in threshold mode, switch on the most probable block of an example
            that has none above 0.5.

    Example:
        >>> gate = PolicyGate(4, 3, tau=0.5, rng=0)
        >>> out, backprop = gate.forward(np.ones((2, 4), np.float32), train=True)
        >>> out.mask.shape, out.prob.shape
        ((2, 3), (2, 3))
    """

    runs_on_gpu = True

    def __init__(self, n_in: int, n_blocks: int, *, tau: float, eps: float = 0.01,
                 mode: str = "threshold", input_block_size: Optional[int] = None,
                 init: Initializer = glorot_uniform, init_scale: float = 0.1,
                 rng: RngLike = None, dtype=np.float32, input_grad: bool = False,
                 keep_a_block: bool = True) -> None:
        super().__init__()
        self.n_in = check_size("n_in", n_in)
        self.n_blocks = check_size("n_blocks", n_blocks)
        self.tau = _check_open_unit("tau", tau)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 0.5:
            raise ValueError(f"eps must be a number in [0, 0.5), got {eps!r}")
        self.eps = float(eps)
        self.mode = check_mode(mode)
        self.input_block_size = (None if input_block_size is None
                                 else check_size("input_block_size", input_block_size))
        if self.input_block_size is not None and self.n_in % self.input_block_size:
            raise ValueError(f"input_block_size {self.input_block_size} must divide "
                             f"n_in = {self.n_in}")
        self.dtype = float_dtype(dtype)
        self.input_grad = bool(input_grad)
        self.keep_a_block = bool(keep_a_block)
        self.rng = as_generator(rng)
        Z = np.asarray(init((self.n_in, self.n_blocks), self.rng, self.dtype), self.dtype)
        self.add_param("Z", Z * self.dtype.type(init_scale))
        self.add_param("d", np.full(self.n_blocks, np.log(self.tau / (1 - self.tau)),
                                    dtype=self.dtype))

    def own_rngs(self) -> Dict[str, np.random.Generator]:
        return {"rng": self.rng}

    def forward(self, h: np.ndarray, train: bool, amask: Optional[np.ndarray] = None,
                mask: Optional[np.ndarray] = None,
                mode: Optional[str] = None) -> Tuple[GateOutput, GateBackprop]:
        """Probabilities and mask for h; ``mask`` given is used as the decisions (its
        log-likelihood is what backprop differentiates), ``mode`` overrides ``self.mode``."""
        check_input("PolicyGate", h, self.n_in, self.dtype)
        Z = self.params["Z"]
        check_same_device("PolicyGate", h, Z)
        if on_gpu(h):
            return self._forward_gpu(h, train, amask, mask, mode)
        if amask is not None and self.input_block_size is None:
            raise ValueError("PolicyGate: amask needs the gate built with input_block_size")
        t = self.tanh_half(h, amask)
        if mask is None:
            prob, mask = self.decide(t, train, mode)
        else:       # the probabilities of the given decisions, from the same pass
            prob, _ = _policy.decide(t, 0.5 - self.eps, None, 0, False)
            if mask.shape != prob.shape:
                raise ValueError(f"PolicyGate: mask must have shape {prob.shape}, "
                                 f"got {mask.shape}")

        def backprop(advantages: Optional[np.ndarray] = None,
                     penalty: Optional[PolicyPenalty] = None,
                     dprob: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
            n = h.shape[0]
            total = np.zeros_like(prob) if dprob is None else np.array(dprob, self.dtype)
            if total.shape != prob.shape:
                raise ValueError(f"PolicyGate: dprob must have shape {prob.shape}, "
                                 f"got {total.shape}")
            if advantages is not None:
                advantages = np.asarray(advantages, dtype=self.dtype)
                if advantages.shape != (n,):
                    raise ValueError(f"PolicyGate: advantages must have shape ({n},), "
                                     f"got {advantages.shape}")
                total += advantages[:, None] * log_likelihood(prob, mask)[1]
            if penalty is not None and (penalty.lambda_s or penalty.lambda_v):
                total += penalty.value_and_grad(prob, self.tau)[1]
            # dp/dz = (1 - 2 eps) sigmoid'(z) = (1/2 - eps) (1 - t^2) / 2.
            dz = total * (1 - t * t) * self.dtype.type((0.5 - self.eps) / 2)
            self.grads["Z"] += h.T @ dz
            self.grads["d"] += dz.sum(axis=0)
            if penalty is not None and penalty.lambda_l2:
                self.grads["Z"] += self.dtype.type(2 * penalty.lambda_l2) * Z
            if not self.input_grad:
                return None
            dh = dz @ Z.T
            if amask is not None:
                dh.reshape(n, -1, self.input_block_size)[...] *= amask[:, :, None]
            return dh

        return GateOutput(mask, prob), backprop

    def tanh_half(self, h: np.ndarray, amask: Optional[np.ndarray]) -> np.ndarray:
        """``tanh(z / 2)`` for h on the CPU, unchecked (:meth:`forward` checks h).  Since
        sigmoid(z) = (1 + tanh(z / 2)) / 2, ``p = 1/2 + (1/2 - eps) tanh(z / 2)``."""
        Z, d = self.params["Z"], self.params["d"]
        if amask is not None:
            z = sparse_dot(h, amask, Z, None, d, self.input_block_size)
        else:
            z = h @ Z
            z += d
        return np.tanh(np.multiply(z, 0.5, out=z), out=z)

    def decide(self, t: np.ndarray, train: bool, mode: Optional[str] = None,
               leading: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """``(p, mask)`` from :meth:`tanh_half`'s t on the CPU: the probabilities, and the
        blocks on, sampled while training and in mode "sample", else thresholded (as
        :func:`threshold_mask`).  ``mode`` overrides ``self.mode``; the mask has
        ``leading`` columns of 1 before the gate's B (a model's shared blocks)."""
        chosen = self.mode if mode is None else check_mode(mode)
        uniform = self.rng.random(t.shape, dtype=self.dtype) \
            if train or chosen == "sample" else None
        return _policy.decide(t, 0.5 - self.eps, uniform, leading, self.keep_a_block)

    def _forward_gpu(self, h, train: bool, amask, mask, mode: Optional[str]):
        """:meth:`forward` on GPU arrays: the same probabilities and decisions (the uniforms
        of sampled masks come from the same generator, uploaded), and a backprop of the
        same gradients."""
        from condnn import gpu
        from condnn.gpu import training
        Z, d = self.params["Z"], self.params["d"]
        block_size = self.input_block_size or 1
        if amask is not None and self.input_block_size is None:
            raise ValueError("PolicyGate: amask needs the gate built with input_block_size")
        # The model's own amask is 0/1 by construction: no check that would wait for the
        # device.
        prob = training.policy_prob_(gpu.sparse_dot(h, amask, Z, None, d, block_size,
                                                    check_masks=False), self.eps)
        if mask is None:
            chosen = self.mode if mode is None else check_mode(mode)
            if train or chosen == "sample":
                uniform = to_device(self.rng.random(prob.shape, dtype=self.dtype), "gpu")
                mask = training.bernoulli_mask(prob, uniform)
            else:
                mask = training.threshold_mask(prob, keep_a_block=self.keep_a_block)
        elif tuple(mask.shape) != tuple(prob.shape):
            raise ValueError(f"PolicyGate: mask must have shape {prob.shape}, got {mask.shape}")
        else:       # a caller's mask: checked once here, so no product checks it again
            training.check_mask("PolicyGate: mask", mask)

        def backprop(advantages=None, penalty: Optional[PolicyPenalty] = None, dprob=None):
            lambda_s = penalty.lambda_s if penalty is not None else 0.0
            lambda_v = penalty.lambda_v if penalty is not None else 0.0
            dz = training.policy_grad(prob, mask, advantages, tau=self.tau, eps=self.eps,
                                      lambda_s=lambda_s, lambda_v=lambda_v, dprob=dprob)
            # h.T @ dz, the column sums of dz and dz @ Z.T (masked by amask) are the
            # gradients of the product z = (h * Am) @ Z + d.
            dh, dZ, dd = gpu.sparse_dot_backward(dz, h, amask, Z, None, block_size,
                                                 check_masks=False)
            self.grads["Z"] += dZ
            self.grads["d"] += dd
            if penalty is not None and penalty.lambda_l2:
                add_scaled(self.grads["Z"], 2 * penalty.lambda_l2, Z)
            return dh if self.input_grad else None

        return GateOutput(mask, prob), backprop

    def __repr__(self) -> str:
        return (f"PolicyGate({self.n_in}, {self.n_blocks}, tau={self.tau}, eps={self.eps}, "
                f"mode={self.mode!r})")



def threshold_mask(prob: np.ndarray, keep_a_block: bool = True) -> np.ndarray:
    """``[p > 0.5]`` as uint8, with each row's most probable block on if none is (unless not
    ``keep_a_block``): the thresholded mask in NumPy, which :meth:`PolicyGate.decide`
    computes in its compiled pass and the tests compare it with."""
    mask = (prob > 0.5).view(np.uint8)
    if not keep_a_block:
        return mask
    some_on = mask.any(axis=1)
    if not some_on.all():
        empty = np.flatnonzero(~some_on)
        mask[empty, prob[empty].argmax(axis=1)] = 1
    return mask


def check_mode(mode: str) -> str:
    """``mode`` checked to be one of :data:`MODES`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def _check_open_unit(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)
