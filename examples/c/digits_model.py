"""The digits classifier that examples/c deploys: an MLP on scikit-learn's 8x8 digits.

``lamina compile digits_model.py:Digits`` builds it with seeded weights, or with
the trained weights in ``$DIGITS_WEIGHTS`` (an ``.npz`` written by ``train``):
``python digits_model.py`` trains a few epochs and writes ``digits_weights.npz``
plus one test image ``image.txt`` (64 numbers) for the C program.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import lamina  # noqa: E402

nn = lamina.nn
F = lamina.nn.functional


class Digits(nn.Module):
    """64 pixels in [0, 1] -> 10 logits."""

    def __init__(self, weights: str | None = None):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)
        path = weights or os.environ.get("DIGITS_WEIGHTS")
        if path:
            with np.load(path, allow_pickle=False) as z:
                self.load_state_dict({k: lamina.from_numpy(z[k]) for k in z.files})

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def example_inputs():
    return [lamina.zeros(1, 64)]


def load_data(seed: int = 0):
    """Digits as float32 rows in [0, 1], split 80/20 with a fixed permutation."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n = int(0.8 * len(x))
    return x[order[:n]], y[order[:n]], x[order[n:]], y[order[n:]]


def train(epochs: int = 5, seed: int = 0) -> tuple[Digits, float]:
    """Train with SGD + momentum; returns the model and its test accuracy."""
    lamina.manual_seed(seed)
    xtr, ytr, xte, yte = load_data(seed)
    model = Digits()
    opt = lamina.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(xtr))
        for i in range(0, len(order) - 63, 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(model(lamina.from_numpy(xtr[idx])),
                                   lamina.from_numpy(ytr[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with lamina.no_grad():
        pred = model(lamina.from_numpy(xte)).argmax(1).numpy()
    return model, float((pred == yte).mean())


def save(model: Digits, path: str) -> None:
    np.savez(path, **{k: v.detach().numpy() for k, v in model.state_dict().items()})


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    model, acc = train()
    save(model, os.path.join(here, "digits_weights.npz"))
    _, _, xte, yte = load_data()
    np.savetxt(os.path.join(here, "image.txt"), xte[0], fmt="%.6f")
    print(f"test accuracy {acc:.3f}; wrote digits_weights.npz and image.txt (a {yte[0]})")
