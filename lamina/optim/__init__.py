"""``lamina.optim``: optimizers and learning-rate schedules with PyTorch's API.

Parameter updates run as fused generated kernels (see ``optimizer.FusedRule``).
"""

from lamina.optim import lr_scheduler
from lamina.optim.adagrad import Adagrad
from lamina.optim.adam import Adam
from lamina.optim.adamw import AdamW
from lamina.optim.optimizer import Optimizer
from lamina.optim.rmsprop import RMSprop
from lamina.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
