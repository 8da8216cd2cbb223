"""The main job: train a small CNN (or MLP) on scikit-learn's bundled 8x8 digits through
Lamina's compiler on the CPU, save a checkpoint, reload it and evaluate.

Run: make demo   (or: python examples/train_digits.py [--model mlp] [--epochs N]
                 [--device cuda] [--compile])
The script is plain PyTorch code; only the import differs (``--torch`` runs it with
PyTorch itself, for comparison).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
parser.add_argument("--epochs", type=int, default=12)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--torch", action="store_true", help="run with PyTorch instead of Lamina")
parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
parser.add_argument("--compile", action="store_true",
                    help="compile the whole training step (forward, backward, Adam) into one "
                    "program with lamina.compile")
args = parser.parse_args()

if args.torch:
    import torch
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import lamina as torch

from sklearn.datasets import load_digits  # noqa: E402

nn = torch.nn
F = torch.nn.functional
DataLoader = torch.utils.data.DataLoader
TensorDataset = torch.utils.data.TensorDataset


def load_data(seed: int):
    """Digits as float32 images in [0, 1], split 80/20 with a fixed permutation."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # N x 1 x 8 x 8
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(0.8 * len(x))
    tr, te = order[:n_train], order[n_train:]
    return (torch.from_numpy(x[tr].copy()), torch.from_numpy(y[tr].copy()),
            torch.from_numpy(x[te].copy()), torch.from_numpy(y[te].copy()))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))  # 16 x 4 x 4
        x = self.pool(F.relu(self.conv2(x)))  # 32 x 2 x 2
        x = torch.flatten(x, 1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(),
                                 nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)


def evaluate(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    model.train()
    return (pred == y).float().mean().item()


def pick_device():
    """The device asked for, or exit with the reason it is not usable here."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: no usable CUDA GPU here (torch.cuda.is_available() "
                 "is False)")
    return torch.device(args.device)


def main() -> None:
    torch.manual_seed(args.seed)
    device = pick_device()
    x_train, y_train, x_test, y_test = load_data(args.seed)
    x_test, y_test = x_test.to(device), y_test.to(device)
    g = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=args.batch_size,
                        shuffle=True, generator=g)
    model = (CNN() if args.model == "cnn" else MLP()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(xb, yb):
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        return loss

    if args.compile:
        train_step = torch.compile(train_step)
    print(f"{'lamina' if not args.torch else 'torch'}: {args.model} on {len(x_train)} train / "
          f"{len(x_test)} test digits, {sum(p.numel() for p in model.parameters())} parameters, "
          f"device {device}{', compiled step' if args.compile else ''}")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        total, seen = 0.0, 0
        for xb, yb in loader:
            loss = train_step(xb.to(device), yb.to(device))
            total += loss.item() * len(xb)
            seen += len(xb)
        scheduler.step()
        print(f"epoch {epoch:2d}  loss {total / seen:.4f}  test accuracy "
              f"{evaluate(model, x_test, y_test):.1%}  lr {scheduler.get_last_lr()[0]:.2e}  "
              f"{time.perf_counter() - start:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "digits.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
        restored = (CNN() if args.model == "cnn" else MLP()).to(device)
        restored.load_state_dict(torch.load(path, map_location=device)["model"])
    print(f"reloaded checkpoint; test accuracy {evaluate(restored, x_test, y_test):.1%}")


if __name__ == "__main__":
    main()
