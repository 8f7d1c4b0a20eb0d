"""Optimizers and learning-rate schedules."""
from condnn.optim.adam import Adam
from condnn.optim.clipping import clip_grad_norm, global_norm
from condnn.optim.optimizer import Optimizer, ParamGroup
from condnn.optim.schedules import (Constant, CosineDecay, InverseTimeDecay, Schedule,
                                    StepDecay)
from condnn.optim.sgd import SGD

__all__ = ["Optimizer", "ParamGroup", "SGD", "Adam", "clip_grad_norm", "global_norm",
           "Schedule", "Constant", "StepDecay", "InverseTimeDecay", "CosineDecay"]
