"""``repr(tensor)`` in PyTorch's format."""

from __future__ import annotations

import numpy as np

from lamina.frontend import dtypes as dt

_DEFAULT = (dt.float32, dt.int64, dt.bool_)


def _float_formatter(a: np.ndarray):
    finite = a[np.isfinite(a)]
    if finite.size == 0 or np.all(finite == np.round(finite)) and np.abs(finite).max() < 1e8:
        return lambda v: f"{v:.0f}." if np.isfinite(v) else str(v)
    amax, amin = np.abs(finite).max(), np.abs(finite[finite != 0]).min() if np.any(finite) else 0
    if amax > 1e8 or (amin and (amin < 1e-4 or amax / amin > 1000)):
        return lambda v: f"{v:.4e}" if np.isfinite(v) else str(v)
    return lambda v: f"{v:.4f}" if np.isfinite(v) else str(v)


def tensor_repr(t) -> str:
    if t._a is None:
        return f"tensor(<symbolic>, size={list(t.shape)}, dtype={t.dtype})"
    a = t._a
    if t.dtype in (dt.bfloat16, dt.float16):
        from lamina.frontend import ops

        a = ops.cast(t, dt.float32)._a
    prefix = "tensor("
    if a.dtype.kind == "f":
        f = _float_formatter(a)
        width = max((len(f(v)) for v in a.reshape(-1)), default=0) if a.size <= 1000 else 0
        fmt = {"float_kind": lambda v: f(v).rjust(width)}
    elif a.dtype.kind == "b":
        width = 5 if a.size > 1 and not a.all() else 4
        fmt = {"bool": lambda v: ("True" if v else "False").rjust(width)}
    else:
        fmt = None
    if a.size == 0:
        body = "[]" if a.ndim == 1 else "[]"
    else:
        body = np.array2string(a, separator=", ", prefix=prefix, formatter=fmt, threshold=1000,
                               edgeitems=3, max_line_width=80)
    suffix = ""
    if t.dtype not in _DEFAULT or a.size == 0 and t.dtype is not dt.float32:
        suffix = f", dtype={t.dtype}"
    if a.size == 0 and a.ndim != 1:
        suffix = f", size={tuple(t.shape)}" + suffix
    return f"{prefix}{body}{suffix})"
