"""``repr(tensor)`` in PyTorch's format (its default print options).

The rules users see every day, restated: one formatter for the whole tensor
(only the elements shown when it is summarized count), chosen from its
non-zero finite values: integers print as ``3.``, scientific notation when the
largest is over ``1e8`` or over 1000 times the smallest (or the smallest is
under ``1e-4``), else 4 decimals; every element is right-aligned to the widest.
Tensors of more than 1000 elements show 3 items at each edge of every axis.
Lines wrap at 80 columns. Suffixes name a non-default dtype, the size of an
empty tensor that is not 1-d, and ``grad_fn``/``requires_grad``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lamina.frontend import dtypes as dt

PRECISION = 4
THRESHOLD = 1000
EDGEITEMS = 3
LINEWIDTH = 80


class _Formatter:
    """How every element of one tensor prints (PyTorch's ``_Formatter``)."""

    def __init__(self, values: np.ndarray, floating: bool):
        self.floating = floating
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        flat = values.reshape(-1)
        if not floating:
            self.max_width = max((len(self._plain(v)) for v in flat.tolist()), default=1)
            return
        finite = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
        if finite.size == 0:
            return
        mags = np.abs(finite)
        lo, hi = float(mags.min()), float(mags.max())
        self.int_mode = bool(np.all(finite == np.ceil(finite)))
        if self.int_mode:
            self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8
            extra = 0 if self.sci_mode else 1  # the trailing "."
        else:
            self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4
            extra = 0
        self.max_width = max(len(self._number(v)) + extra for v in finite.tolist())

    @staticmethod
    def _plain(v: Any) -> str:
        return str(v)

    def _number(self, v: float) -> str:
        if self.sci_mode:
            return f"{v:.{PRECISION}e}"
        if self.int_mode:
            return f"{v:.0f}"
        return f"{v:.{PRECISION}f}"

    def format(self, v: Any) -> str:
        if not self.floating:
            s = self._plain(v)
        elif self.sci_mode:
            s = f"{v:{self.max_width}.{PRECISION}e}"
        elif self.int_mode:
            s = f"{v:.0f}" + ("" if math.isinf(v) or math.isnan(v) else ".")
        else:
            s = f"{v:.{PRECISION}f}"
        return s.rjust(self.max_width)


def _summarized(a: np.ndarray) -> np.ndarray:
    """The elements a summarized print shows (the edges of every axis)."""
    if a.ndim == 0:
        return a
    if a.shape[0] > 2 * EDGEITEMS:
        rows = [a[i] for i in range(EDGEITEMS)] + [a[i] for i in range(-EDGEITEMS, 0)]
    else:
        rows = list(a)
    if a.ndim == 1:
        return np.array(rows, dtype=a.dtype)
    return np.stack([_summarized(r) for r in rows]) if rows else a


def _vector(a: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    per_line = max(1, (LINEWIDTH - indent) // (fmt.max_width + 2))
    if summarize and a.shape[0] > 2 * EDGEITEMS:
        items = [fmt.format(v) for v in a[:EDGEITEMS].tolist()] + [" ..."] + \
            [fmt.format(v) for v in a[-EDGEITEMS:].tolist()]
    else:
        items = [fmt.format(v) for v in a.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _body(a: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        return _vector(a, indent, summarize, fmt)
    n = a.shape[0]
    if summarize and n > 2 * EDGEITEMS:
        parts = [_body(a[i], indent + 1, summarize, fmt) for i in range(EDGEITEMS)] + ["..."] + \
            [_body(a[i], indent + 1, summarize, fmt) for i in range(n - EDGEITEMS, n)]
    else:
        parts = [_body(a[i], indent + 1, summarize, fmt) for i in range(n)]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def _values(t: Any) -> np.ndarray:
    """The elements to print: float16/bfloat16 widened to float32 (by a kernel)."""
    if t.dtype in (dt.bfloat16, dt.float16):
        from lamina.frontend import ops

        a = ops.cast(t.detach() if hasattr(t, "detach") else t, dt.float32)._a
    else:
        a = t._a
    return a if isinstance(a, np.ndarray) else a.numpy()  # a CUDA tensor: a host copy


def _grad_suffix(t: Any) -> str | None:
    grad_fn = getattr(t, "grad_fn", None)
    if grad_fn is not None:
        name = grad_fn.name() if hasattr(grad_fn, "name") else type(grad_fn).__name__
        return f"grad_fn=<{name}>"
    if getattr(t, "requires_grad", False):
        return "requires_grad=True"
    return None


def _with_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    out = [text]
    last = len(text) - text.rfind("\n") + 1
    for s in suffixes:
        if last + len(s) + 2 > LINEWIDTH:
            out.append(",\n" + " " * indent + s)
            last = indent + len(s)
        else:
            out.append(", " + s)
            last += len(s) + 2
    return "".join(out) + ")"


def tensor_repr(t: Any) -> str:
    prefix = "tensor("
    indent = len(prefix)
    if t._a is None:
        return f"tensor(<symbolic>, size={list(t.shape)}, dtype={t.dtype})"
    suffixes: list[str] = []
    if not isinstance(t._a, np.ndarray):
        suffixes.append(f"device='{t.device}'")
    if t.numel() == 0:
        if t.ndim != 1:
            suffixes.append(f"size={tuple(t.shape)}")
        if t.dtype is not dt.default_float:
            suffixes.append(f"dtype={t.dtype}")
        body = "[]"
    else:
        if t.dtype not in (dt.default_float, dt.int64, dt.bool_):
            suffixes.append(f"dtype={t.dtype}")
        a = _values(t)
        summarize = a.size > THRESHOLD
        fmt = _Formatter(_summarized(a) if summarize else a, t.dtype.is_floating_point)
        body = _body(a, indent, summarize, fmt)
    grad = _grad_suffix(t)
    if grad is not None:
        suffixes.append(grad)
    return _with_suffixes(prefix + body, suffixes, indent)
