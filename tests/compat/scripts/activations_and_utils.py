"""Activations (modules and functional), softmax, init on fixed data, gradient clipping."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import clip_grad_norm_, parameters_to_vector

x = torch.linspace(-4, 4, 9)
for act in [nn.ReLU(), nn.LeakyReLU(0.1), nn.ELU(), nn.GELU(), nn.GELU(approximate="tanh"),
            nn.SiLU(), nn.Mish(), nn.Softplus(beta=2), nn.Hardtanh(-2, 2), nn.ReLU6(),
            nn.Sigmoid(), nn.Tanh(), nn.SELU(), nn.Hardswish()]:
    print(act, act(x))
print("softmax", F.softmax(x.reshape(3, 3), dim=1))
print("log_softmax", F.log_softmax(x.reshape(3, 3), dim=0))
print("gain", nn.init.calculate_gain("leaky_relu", math.sqrt(5)), nn.init.calculate_gain("tanh"))
w = torch.empty(3, 5)
nn.init.constant_(w, 0.5)
nn.init.zeros_(w[0])
print("init", w)
layer = nn.Linear(5, 3)
with torch.no_grad():
    layer.weight.copy_(torch.arange(15, dtype=torch.float32).reshape(3, 5) / 10)
    layer.bias.fill_(-1.0)
out = layer(torch.ones(2, 5) * 3)
(out ** 2).sum().backward()
print("grad norm", clip_grad_norm_(layer.parameters(), max_norm=1.0))
print("clipped", layer.weight.grad, layer.bias.grad)
with torch.no_grad():
    print("vector", parameters_to_vector(layer.parameters()))
