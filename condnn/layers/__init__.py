"""Layers: ``y, backprop = layer.forward(x, train)``; ``backprop(dy)`` adds into
``layer.grads`` and returns dx (see :mod:`condnn.layers.base`)."""
from condnn.layers.base import Backprop, Layer
from condnn.layers.block_dropout import BlockDropout
from condnn.layers.block_sparse_dense import BlockSparseDense
from condnn.layers.dense import Dense
from condnn.layers.dropout import Dropout
from condnn.layers.policy_gate import GateOutput, PolicyGate
from condnn.layers.policy_regularizers import PolicyPenalty
from condnn.layers.relu import ReLU
from condnn.layers.sequential import Sequential
from condnn.layers.sigmoid import Sigmoid
from condnn.layers.softmax_cross_entropy import LossResult, softmax_cross_entropy
from condnn.layers.tanh import Tanh

__all__ = ["Backprop", "Layer", "Dense", "BlockSparseDense", "ReLU", "Tanh", "Sigmoid",
           "Dropout", "BlockDropout", "Sequential", "softmax_cross_entropy", "LossResult",
           "PolicyGate", "GateOutput", "PolicyPenalty"]
