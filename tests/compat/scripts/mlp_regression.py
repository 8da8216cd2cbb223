"""A small MLP fitted to a smooth function with SGD + momentum (plain PyTorch code)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def deterministic_(model):
    # the same weights in every framework: no random init
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            n = p.numel()
            p.copy_(torch.sin(torch.arange(n, dtype=torch.float32) * 0.7 + i).reshape(p.shape)
                    * 0.5)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 1)
        )

    def forward(self, x):
        return self.net(x).squeeze(-1)


x = torch.linspace(-1, 1, 64 * 3).reshape(64, 3)
y = torch.sin(x.sum(1) * 2.0)
model = MLP()
deterministic_(model)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for step in range(30):
    opt.zero_grad()
    loss = F.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    if step % 5 == 0:
        print(f"step {step} loss {loss.item():.6f}")
with torch.no_grad():
    print(f"final loss {F.mse_loss(model(x), y).item():.6f}")
    print("prediction", model(x[:4]))
