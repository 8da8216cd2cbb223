"""Training parity: the same model, initialised in PyTorch and copied into Lamina through
its state_dict, trained 20 steps on the same digits batches with the same optimizer,
gives the same loss at every step (1e-4 relative; dropout off)."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from tests.frontend.oracle import needs_torch, torch

pytestmark = needs_torch

STEPS, BATCH = 20, 32


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()
    x = (data.data / 16.0).astype(np.float32)
    return x, data.target.astype(np.int64)


def _batches(x: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    order = np.random.default_rng(0).permutation(len(x))[:STEPS * BATCH]
    return [(x[order[i * BATCH:(i + 1) * BATCH]], y[order[i * BATCH:(i + 1) * BATCH]])
            for i in range(STEPS)]


# Each model is written once against a ``torch``-like namespace (torch or lamina).


def mlp(t):
    return t.nn.Sequential(t.nn.Linear(64, 32), t.nn.ReLU(), t.nn.Linear(32, 10))


def cnn(t):
    return t.nn.Sequential(
        t.nn.Unflatten(1, (1, 8, 8)),
        t.nn.Conv2d(1, 6, 3, padding=1), t.nn.ReLU(), t.nn.MaxPool2d(2),
        t.nn.Conv2d(6, 8, 3), t.nn.ReLU(), t.nn.Flatten(), t.nn.Linear(32, 10))


def _sequence_model(t, core: str):
    """Digits as sequences of 8 rows of 8 pixels, classified from a recurrent or
    attention encoder."""

    class Model(t.nn.Module):
        def __init__(self):
            super().__init__()
            if core == "lstm":
                self.core = t.nn.LSTM(8, 16, num_layers=2, batch_first=True,
                                      bidirectional=True)
                width = 32
            else:
                self.embed = t.nn.Linear(8, 16)
                self.core = t.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0,
                                                         batch_first=True)
                width = 16
            self.head = t.nn.Linear(width, 10)

        def forward(self, x):
            x = x.reshape(x.shape[0], 8, 8)
            if core == "lstm":
                out, _ = self.core(x)
                return self.head(out[:, -1])
            return self.head(self.core(self.embed(x)).mean(1))

    return Model()


MODELS = {
    "mlp": mlp,
    "cnn": cnn,
    "lstm": lambda t: _sequence_model(t, "lstm"),
    "transformer": lambda t: _sequence_model(t, "transformer"),
}
OPTIMIZERS = {
    "sgd": lambda t, params: t.optim.SGD(params, lr=0.1, momentum=0.9),
    "adam": lambda t, params: t.optim.Adam(params, lr=3e-3),
}


def _train(t, model, opt, batches) -> list[float]:
    loss_fn = t.nn.CrossEntropyLoss()
    losses = []
    for xb, yb in batches:
        opt.zero_grad()
        loss = loss_fn(model(t.tensor(xb)), t.tensor(yb))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_same_losses_as_torch(digits, model_name, opt_name):
    torch.manual_seed(0)
    tmodel = MODELS[model_name](torch)
    lmodel = MODELS[model_name](lamina)
    state = tmodel.state_dict()
    state0 = {k: v.detach().numpy().copy() for k, v in state.items()}
    assert list(lmodel.state_dict()) == list(state)
    lmodel.load_state_dict({k: lamina.tensor(v.detach().numpy()) for k, v in state.items()})
    batches = _batches(*digits)
    tl = _train(torch, tmodel, OPTIMIZERS[opt_name](torch, tmodel.parameters()), batches)
    ll = _train(lamina, lmodel, OPTIMIZERS[opt_name](lamina, lmodel.parameters()), batches)
    np.testing.assert_allclose(ll, tl, rtol=1e-4)
    # the weights really moved, so equal losses are not just equal initialisations
    moved = max(float(np.abs(v.detach().numpy() - state0[k]).max())
                for k, v in tmodel.state_dict().items())
    assert moved > 1e-2
    tparams = dict(tmodel.named_parameters())
    for name, p in lmodel.named_parameters():
        if opt_name == "adam" and name.endswith("in_proj_bias"):
            # the key bias has a zero gradient in exact arithmetic (softmax cancels it):
            # Adam scales the rounding noise of either side up to steps of size lr
            continue
        np.testing.assert_allclose(p.detach().numpy(), tparams[name].detach().numpy(),
                                   rtol=1e-3, atol=1e-4, err_msg=name)
