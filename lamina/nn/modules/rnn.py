"""Recurrent layers: ``RNN`` (tanh/relu), ``LSTM``, ``GRU`` and their single-step cells.

Parameter names, shapes, ``state_dict`` keys and default init are PyTorch's, so weights
load across. Each layer and direction projects the whole input sequence with one matmul
(``x @ W_ih^T + b_ih`` for every time step at once); only the hidden-to-hidden product
and the gate arithmetic run per step. Gradients come from the autograd tape.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import lamina
from lamina import Tensor
from lamina.nn import functional as F
from lamina.nn import init
from lamina.nn.modules.module import Module
from lamina.nn.parameter import Parameter

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNBase", "RNNCell", "RNNCellBase"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}

State = Any  # a Tensor (RNN, GRU) or a (h, c) pair (LSTM)


# -- one time step of each kind of cell ------------------------------------------------------
# ``xg`` is the input's projection (with b_ih), ``hg`` the hidden state's (with b_hh).


def _tanh_step(xg: Tensor, hg: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    h = lamina.tanh(xg + hg)
    return h, h


def _relu_step(xg: Tensor, hg: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    h = lamina.relu(xg + hg)
    return h, h


def _lstm_step(xg: Tensor, hg: Tensor, state: tuple[Tensor, Tensor]
               ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    c = state[1]
    i, f, g, o = (xg + hg).chunk(4, -1)
    c = lamina.sigmoid(f) * c + lamina.sigmoid(i) * lamina.tanh(g)
    h = lamina.sigmoid(o) * lamina.tanh(c)
    return h, (h, c)


def _gru_step(xg: Tensor, hg: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    xr, xz, xn = xg.chunk(3, -1)
    hr, hz, hn = hg.chunk(3, -1)
    r = lamina.sigmoid(xr + hr)
    z = lamina.sigmoid(xz + hz)
    n = lamina.tanh(xn + r * hn)
    h = n + z * (state - n)  # (1 - z) * n + z * h
    return h, h


_STEPS: dict[str, Callable[..., Any]] = {
    "LSTM": _lstm_step, "GRU": _gru_step, "RNN_TANH": _tanh_step, "RNN_RELU": _relu_step,
}


def _hidden_of(mode: str, state: State) -> Tensor:
    return state[0] if mode == "LSTM" else state


class RNNBase(Module):
    """The common part of ``RNN``, ``LSTM`` and ``GRU``: parameters, checks, the layer loop."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None):
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1 or \
                isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if proj_size:
            raise NotImplementedError(f"{type(self).__name__}: proj_size is not supported")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        gate_size = _GATES[mode] * hidden_size
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            for direction in range(self._directions):
                in_size = input_size if layer == 0 else hidden_size * self._directions
                suffix = "_reverse" if direction == 1 else ""
                shapes = [("weight_ih", (gate_size, in_size)),
                          ("weight_hh", (gate_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                for name, shape in shapes:
                    full = f"{name}_l{layer}{suffix}"
                    setattr(self, full, Parameter(lamina.empty(shape, dtype=dtype,
                                                               device=device)))
                    self._flat_weights_names.append(full)
        self.reset_parameters()

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def all_weights(self) -> list[list[Parameter]]:
        per = 4 if self.bias else 2
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i:i + per]] for i in range(0, len(names), per)]

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op: the weights are never packed into one buffer here."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # -- checks ------------------------------------------------------------------------------

    def _check_input(self, input: Tensor) -> bool:
        """Validate ``input``; returns whether it is batched (3-d)."""
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a Tensor, got "
                            f"{type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                             f"{input.ndim}D tensor instead (shape {tuple(input.shape)})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {input.shape[-1]}")
        if not input.dtype.is_floating_point:
            raise RuntimeError(f"{type(self).__name__}: expected a floating point input, got "
                               f"{input.dtype}")
        return input.ndim == 3

    def _check_hidden(self, hx: Tensor, expected: tuple[int, ...], what: str,
                      input: Tensor) -> None:
        if not isinstance(hx, Tensor):
            raise TypeError(f"{type(self).__name__}: {what} must be a Tensor, got "
                            f"{type(hx).__name__}")
        if tuple(hx.shape) != expected:
            raise RuntimeError(f"Expected {what} size {expected}, got {tuple(hx.shape)}")
        if hx.dtype != input.dtype:
            raise RuntimeError(f"{type(self).__name__}: input and {what} must have the same "
                               f"dtype, got {input.dtype} and {hx.dtype}")

    # -- the computation ---------------------------------------------------------------------

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:
        batched = self._check_input(input)
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        if steps == 0:
            raise RuntimeError(f"{type(self).__name__}: Expected sequence length to be larger "
                               "than 0 in RNN")
        layers = self.num_layers * self._directions
        expected = (layers, batch, self.hidden_size) if batched else (layers, self.hidden_size)
        lstm = self.mode == "LSTM"
        if hx is None:
            zeros = lamina.zeros(layers, batch, self.hidden_size, dtype=x.dtype,
                                 device=x.device)
            h0, c0 = zeros, zeros
        elif lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise RuntimeError("LSTM: hx must be a tuple (h_0, c_0)")
            self._check_hidden(hx[0], expected, "hidden", input)
            self._check_hidden(hx[1], expected, "cell", input)
            h0, c0 = hx
        else:
            self._check_hidden(hx, expected, "hidden", input)
            h0, c0 = hx, None
        if not batched and hx is not None:
            h0 = h0.unsqueeze(1)
            c0 = c0.unsqueeze(1) if c0 is not None else None

        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self._directions):
                k = layer * self._directions + direction
                state = (h0[k], c0[k]) if lstm else h0[k]
                out, state = self._run_direction(x, layer, direction, state)
                outs.append(out)
                h_n.append(_hidden_of(self.mode, state))
                if lstm:
                    c_n.append(state[1])
            x = outs[0] if len(outs) == 1 else lamina.cat(outs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)

        output = x
        h = lamina.stack(h_n, 0)
        c = lamina.stack(c_n, 0) if lstm else None
        if not batched:
            output = output.squeeze(1)
            h = h.squeeze(1)
            c = c.squeeze(1) if lstm else None
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, ((h, c) if lstm else h)

    def _run_direction(self, x: Tensor, layer: int, direction: int, state: State
                       ) -> tuple[Tensor, State]:
        """Run one layer in one direction over the (L, N, H_in) sequence ``x``."""
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        w_ih = getattr(self, "weight_ih" + suffix)
        w_hh_t = getattr(self, "weight_hh" + suffix).t()
        b_ih = getattr(self, "bias_ih" + suffix) if self.bias else None
        b_hh = getattr(self, "bias_hh" + suffix) if self.bias else None
        xg_all = F.linear(x, w_ih, b_ih)  # every time step's input projection at once
        if b_hh is not None and self.mode != "GRU":
            # only the sum of the projections matters: add b_hh once, not once per step
            # (the GRU's reset gate multiplies the hidden projection with its bias)
            xg_all, b_hh = xg_all + b_hh, None
        step = _STEPS[self.mode]
        order = range(x.shape[0] - 1, -1, -1) if direction == 1 else range(x.shape[0])
        outs: list[Tensor] = [None] * x.shape[0]  # type: ignore[list-item]
        for t in order:
            h = _hidden_of(self.mode, state)
            hg = h.matmul(w_hh_t)
            if b_hh is not None:
                hg = hg + b_hh
            outs[t], state = step(xg_all[t], hg, state)
        return lamina.stack(outs, 0), state


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, act tanh or relu."""

    def __init__(self, *args: Any, **kwargs: Any):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            kwargs["nonlinearity"] = args[3]
            args = args[:3] + args[4:]
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__(mode, *args, **kwargs)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RNNBase):
    """Long short-term memory with gates ordered (input, forget, cell, output) like PyTorch."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit with gates ordered (reset, update, new) like PyTorch."""

    def __init__(self, *args: Any, **kwargs: Any):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


# -- cells ---------------------------------------------------------------------------------------


class RNNCellBase(Module):
    """Parameters and checks shared by the single-step cells."""

    _mode = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device: Any = None, dtype: Any = None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gate = num_chunks * hidden_size
        self.weight_ih = Parameter(lamina.empty((gate, input_size), dtype=dtype, device=device))
        self.weight_hh = Parameter(lamina.empty((gate, hidden_size), dtype=dtype,
                                                device=device))
        if bias:
            self.bias_ih = Parameter(lamina.empty(gate, dtype=dtype, device=device))
            self.bias_hh = Parameter(lamina.empty(gate, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, input: Tensor, hx: Any, count: int) -> tuple[Tensor, list[Tensor], bool]:
        """Checked, batched input and ``count`` hidden tensors (zeros when ``hx`` is None)."""
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D "
                             "instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[-1]} "
                               f"expected {self.input_size}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            states = [lamina.zeros(x.shape[0], self.hidden_size, dtype=input.dtype,
                                   device=input.device) for _ in range(count)]
            return x, states, batched
        states = list(hx) if count == 2 else [hx]
        if count == 2 and len(states) != 2:
            raise RuntimeError(f"{name}: hx must be a tuple (h_0, c_0)")
        for s in states:
            if s.ndim != input.ndim:
                raise ValueError(f"{name}: Expected hidden to be {input.ndim}D for a "
                                 f"{input.ndim}D input, got {s.ndim}D")
            expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
            if tuple(s.shape) != expected:
                raise RuntimeError(f"{name}: Expected hidden size {expected}, got "
                                   f"{tuple(s.shape)} (input {tuple(input.shape)})")
        return x, [s if batched else s.unsqueeze(0) for s in states], batched

    def _gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return F.linear(x, self.weight_ih, self.bias_ih), F.linear(h, self.weight_hh,
                                                                    self.bias_hh)


class RNNCell(RNNCellBase):
    """One step of an Elman RNN."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None):
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        step = _tanh_step if self.nonlinearity == "tanh" else _relu_step
        h, _ = step(*self._gates(x, h), h)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One step of an LSTM; returns ``(h_1, c_1)``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        x, (h, c), batched = self._prepare(input, hx, 2)
        _, (h, c) = _lstm_step(*self._gates(x, h), (h, c))
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One step of a GRU."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        h, _ = _gru_step(*self._gates(x, h), h)
        return h if batched else h.squeeze(0)
