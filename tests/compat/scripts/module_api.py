"""The Module API a training script touches: repr, state_dict, hooks, modes, dtype."""

from collections import OrderedDict

import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.register_buffer("count", torch.zeros(1))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)

    def forward(self, x):
        self.count += 1
        return torch.tanh(self.proj(x)) + x


model = nn.Sequential(OrderedDict([
    ("embed", nn.Linear(3, 4)),
    ("blocks", nn.ModuleList([Block(), Block()])),
    ("head", nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 2))),
]))
print(model)
for name, tensor in model.state_dict().items():
    print(name, tuple(tensor.shape), tensor.dtype)
print("parameters", sum(p.numel() for p in model.parameters()))
print("modules", [name for name, _ in model.named_modules()])
print("buffers", [name for name, _ in model.named_buffers()])
seen = []
handle = model.embed.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))
model.embed(torch.ones(5, 3))
handle.remove()
model.embed(torch.ones(1, 3))
print("hook saw", seen)
model.eval()
print("training", model.training, model.head[0].training)
result = model.load_state_dict(model.state_dict())
print(result)
missing = model.load_state_dict(OrderedDict(list(model.state_dict().items())[2:]), strict=False)
print("missing", missing.missing_keys, "unexpected", missing.unexpected_keys)
model.double()
print("dtype after double()", model.embed.weight.dtype, model.blocks[0].count.dtype)
