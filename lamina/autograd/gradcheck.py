"""``gradcheck``/``gradgradcheck``: the tape's gradients against central finite differences."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from lamina.autograd import grad_mode
from lamina.autograd.engine import grad
from lamina.frontend import ops
from lamina.frontend.tensor import Tensor


class GradcheckError(RuntimeError):
    """The analytical and numerical Jacobians differ (``torch.autograd.GradcheckError``)."""


def _as_tuple(x: Any) -> tuple:
    return x if isinstance(x, tuple) else tuple(x) if isinstance(x, list) else (x,)


def _float_outputs(out: Any) -> list[Tensor]:
    return [o for o in _as_tuple(out) if isinstance(o, Tensor) and o.dtype.is_floating_point]


def _numerical(fn: Callable, inputs: tuple, i: int, eps: float) -> list[np.ndarray]:
    """d(outputs)/d(inputs[i]) by central differences: one (n_out, n_in) array per output."""
    x = inputs[i]
    base = np.array(x.detach().numpy(), dtype=np.float64 if x.dtype.itemsize == 8 else None,
                    copy=True)
    flat = base.reshape(-1)
    cols: list[list[np.ndarray]] = []
    for j in range(flat.size):
        outs = []
        for delta in (eps, -eps):
            pert = flat.copy()
            pert[j] += delta
            xs = list(inputs)
            # still requiring grad: ``fn`` may differentiate inside (gradgradcheck)
            xs[i] = ops.tensor(pert.reshape(base.shape), dtype=x.dtype).requires_grad_()
            outs.append(_float_outputs(fn(*xs)))
        with grad_mode.no_grad():
            cols.append([ops.div(ops.sub(p, m), 2 * eps).numpy().reshape(-1)
                         for p, m in zip(*outs)])
    n_outs = len(cols[0]) if cols else len(_float_outputs(fn(*inputs)))
    return [np.stack([c[k] for c in cols], axis=1) if cols else np.zeros((0, 0))
            for k in range(n_outs)]


def _analytical(outputs: list[Tensor], inputs: tuple, i: int) -> list[np.ndarray]:
    """d(outputs)/d(inputs[i]) from the tape, one row (output element) at a time."""
    x = inputs[i]
    jacs = []
    for out in outputs:
        rows = []
        for j in range(out.numel()):
            seed = np.zeros(out.numel())
            seed[j] = 1.0
            g = ops.tensor(seed.reshape(tuple(out.shape)), dtype=out.dtype)
            if not out.requires_grad:
                rows.append(np.zeros(x.numel()))
                continue
            (gx,) = grad(out, x, g, retain_graph=True, allow_unused=True)
            rows.append(np.zeros(x.numel()) if gx is None else
                        np.asarray(gx.numpy(), dtype=np.float64).reshape(-1))
        jacs.append(np.stack(rows) if rows else np.zeros((0, x.numel())))
    return jacs


def gradcheck(func: Callable, inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True, nondet_tol: float = 0.0,
              check_undefined_grad: bool = True, fast_mode: bool = False,
              **unused: Any) -> bool:
    """True when the gradients of ``func`` at ``inputs`` match finite differences
    (each input requiring grad; float64 inputs recommended); otherwise raises
    ``GradcheckError`` (or returns False with ``raise_exception=False``)."""
    ins = _as_tuple(inputs)
    diff = [k for k, x in enumerate(ins) if isinstance(x, Tensor) and x.requires_grad]
    if not diff:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, "
                         "but none of the them have requires_grad=True.")
    outputs = _float_outputs(func(*ins))
    for k in diff:
        numerical = _numerical(func, ins, k, eps)
        analytical = _analytical(outputs, ins, k)
        for o, (a, n) in enumerate(zip(analytical, numerical)):
            if a.shape != n.shape or not np.allclose(a, n, rtol=rtol, atol=atol):
                if not raise_exception:
                    return False
                raise GradcheckError(
                    f"Jacobian mismatch for output {o} with respect to input {k},\n"
                    f"numerical:{_fmt(n)}\nanalytical:{_fmt(a)}\n")
    return True


def _fmt(a: np.ndarray) -> str:
    return "\n" + np.array2string(a, precision=6)


def gradgradcheck(func: Callable, inputs: Any, grad_outputs: Any = None, *,
                  eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  raise_exception: bool = True, **unused: Any) -> bool:
    """``gradcheck`` of the first derivative (computed with ``create_graph=True``)."""
    ins = _as_tuple(inputs)
    outs = _float_outputs(func(*ins))
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = tuple(
            ops.tensor(rng.standard_normal(tuple(o.shape)), dtype=o.dtype).requires_grad_()
            for o in outs)
    gouts = _as_tuple(grad_outputs)
    diff = [k for k, x in enumerate(ins) if isinstance(x, Tensor) and x.requires_grad]
    n = len(ins)

    def first(*xs: Any) -> tuple:
        args, gs = xs[:n], xs[n:]
        ys = _float_outputs(func(*args))
        wrt = [args[k] for k in diff]
        return grad(ys, wrt, list(gs), create_graph=True, allow_unused=True,
                    materialize_grads=True)

    return gradcheck(first, ins + tuple(gouts), eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)


__all__: Sequence[str] = ["GradcheckError", "gradcheck", "gradgradcheck"]
