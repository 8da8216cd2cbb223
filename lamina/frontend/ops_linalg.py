"""Tensor operations: products, ``einsum`` and norms.

Every product reaches the contraction kernel (``tensor.matmul``). The
``add*`` family (``addmm``, ``addmv``, ``baddbmm``, ``addbmm``) is one op whose
build is ``beta * input + alpha * (a @ b)``; eagerly it runs as one kernel, the
matmul with its epilogue fused. ``einsum`` and ``tensordot`` rewrite
themselves into permutes, reshapes, sums, products and matmuls of the public
API, so traces and autograd see those ops. A norm is one op: eagerly one
kernel (an elementwise prologue, the reduction and its root fused); its traced
form selects around the root so that the gradient at a zero vector is 0.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np

from lamina.frontend import dispatch, views
from lamina.frontend import dtypes as dt
from lamina.frontend.ops import (
    _alloc,
    _cast,
    _check_tensor,
    _norm_dims,
    _scalar_array,
    _unit_inner,
    add,
    amax,
    amin,
    broadcast_shapes,
    matmul,
    mul,
    sum,
    zeros,
)
from lamina.frontend.ops_math import _composite, _tname
from lamina.frontend.tensor import Size, Tensor, _dim
from lamina.ir import Builder, Value

__all__ = [
    "addbmm", "addmm", "addmv", "addr", "baddbmm", "dot", "einsum", "ger", "inner", "mv",
    "norm", "outer", "tensordot", "vdot",
]


def _same_dtype(msg: str, *tensors: Tensor) -> None:
    if len({t._dtype for t in tensors}) > 1:
        raise RuntimeError(msg + ", ".join(_tname(t._dtype) for t in tensors[:-1])
                           + (", and " if len(tensors) > 2 else " and ")
                           + _tname(tensors[-1]._dtype))


def _shape_str(t: Tensor) -> str:
    return "x".join(str(d) for d in t.shape)


# -- vector products ----------------------------------------------------------------------------
def dot(input: Tensor, other: Tensor) -> Tensor:
    """The inner product of two 1-d tensors (a 0-d result)."""
    a, b = _check_tensor(input, "dot"), _check_tensor(other, "dot", "tensor")
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors")
    if a.shape[0] != b.shape[0]:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src "
                           f"[{b.shape[0]}] to have the same number of elements, but got "
                           f"{a.shape[0]} and {b.shape[0]} elements respectively")
    if a._dtype is not b._dtype:
        raise RuntimeError(f"dot : expected both vectors to have same dtype, but found "
                           f"{_tname(a._dtype)} and {_tname(b._dtype)}")
    if a._dtype is dt.bool_:
        raise NotImplementedError("\"dot\" not implemented for 'Bool'")
    return matmul(a, b)


vdot = dot  # real tensors only: no conjugation to do


def vecdot(x: Tensor, y: Tensor, *, dim: int = -1) -> Tensor:
    """``torch.linalg.vecdot``: sum(x * y) over ``dim`` with broadcasting (one kernel)."""
    _check_tensor(x, "linalg.vecdot", "x")
    _check_tensor(y, "linalg.vecdot", "y")
    if x._dtype is not y._dtype:
        raise RuntimeError(f"linalg.vecdot: Expected x and y to have the same dtype, but x has "
                           f"dtype {_tname(x._dtype)} and y has dtype {_tname(y._dtype)}")
    shape = broadcast_shapes(tuple(x.shape), tuple(y.shape), op="linalg.vecdot")
    d = _dim(dim, len(shape), "linalg.vecdot")
    out = dt.int64 if x._dtype.category < 2 else x._dtype
    kept = shape[:d] + shape[d + 1:]

    def build(b: Builder, u: Value, v: Value) -> Value:
        p = b("tensor.mul", _cast(b, u, out), _cast(b, v, out))
        return b("tensor.sum", p, dims=(d,), keepdim=False)

    def eager() -> Tensor:
        if 0 in shape:
            return zeros(kept, dtype=out)
        arrays = [np.broadcast_to(t._concrete("linalg.vecdot"), shape) for t in (x, y)]
        (res,) = dispatch.run_eager(("vecdot", d, x._dtype.name), build, arrays,
                                    [x._dtype.ir] * 2)
        return Tensor._wrap(res.reshape(kept), out)

    return dispatch.apply("vecdot", build, (x, y), eager)


def mv(input: Tensor, vec: Tensor) -> Tensor:
    """Matrix @ vector."""
    a, v = _check_tensor(input, "mv"), _check_tensor(vec, "mv", "vec")
    if a.ndim != 2 or v.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got 1, {a.ndim}, {v.ndim}")
    if a.shape[1] != v.shape[0]:
        raise RuntimeError(f"size mismatch, got input ({a.shape[0]}), mat ({_shape_str(a)}), "
                           f"vec ({v.shape[0]})")
    _same_dtype("addmv input tensors must have the same dtype, but got ", a, a, v)
    return matmul(a, v)


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    """The outer product of two 1-d tensors (dtypes promote)."""
    a, b = _check_tensor(input, "outer"), _check_tensor(vec2, "outer", "vec2")
    for name, t in (("self", a), ("vec2", b)):
        if t.ndim != 1:
            raise RuntimeError(f"outer: Expected 1-D argument {name}, but got {t.ndim}-D")
    return mul(views.reshape(a, (a.shape[0], 1)), b)


ger = outer


def inner(input: Tensor, other: Tensor) -> Tensor:
    """Sum over the last axes: shape ``input.shape[:-1] + other.shape[:-1]``."""
    a, b = _check_tensor(input, "inner"), _check_tensor(other, "inner", "other")
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    if a.shape[-1] != b.shape[-1]:
        raise RuntimeError(f"inner() the last dimension must match on both input tensors but "
                           f"got shapes {list(a.shape)} and {list(b.shape)}")
    return tensordot(a, b, ([a.ndim - 1], [b.ndim - 1]))


def tensordot(a: Tensor, b: Tensor, dims: Any = 2) -> Tensor:
    """Contract ``dims`` axes of ``a`` with ``dims`` axes of ``b`` (one matmul)."""
    _check_tensor(a, "tensordot", "a")
    _check_tensor(b, "tensordot", "b")
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        if dims > builtins.min(a.ndim, b.ndim):
            raise RuntimeError(f"tensordot expects dims < ndim_a or ndim_b, but got dims={dims}")
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = ([d] if isinstance(d, int) else list(d) for d in dims)
    if len(da) != len(db):
        raise RuntimeError("both dimension lists should have same length")
    if a._dtype is not b._dtype:
        raise RuntimeError("both inputs should have same dtype")
    da = [_dim(d, a.ndim, "tensordot") for d in da]
    db = [_dim(d, b.ndim, "tensordot") for d in db]
    for x, y in zip(da, db):
        if a.shape[x] != b.shape[y]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size "
                               f"{a.shape[x]} in dim {x - a.ndim if dims == len(da) else x} "
                               f"and second has size {b.shape[y]} in dim {y}")
    fa = [d for d in range(a.ndim) if d not in da]
    fb = [d for d in range(b.ndim) if d not in db]
    k = math.prod(a.shape[d] for d in da)
    m = math.prod(a.shape[d] for d in fa)
    n = math.prod(b.shape[d] for d in fb)
    a2 = views.reshape(views.permute(a, fa + da), (m, k))
    b2 = views.reshape(views.permute(b, db + fb), (k, n))
    shape = tuple(a.shape[d] for d in fa) + tuple(b.shape[d] for d in fb)
    return views.reshape(matmul(a2, b2), shape)


# -- beta * input + alpha * (a @ b) -------------------------------------------------------------
def _expandable(src: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """PyTorch's ``expand`` error when ``src`` cannot broadcast to ``shape``."""
    if len(src) > len(shape):
        raise RuntimeError(f"expand: the number of sizes provided ({len(shape)}) must be greater "
                           f"or equal to the number of dimensions in the tensor ({len(src)})")
    lead = len(shape) - len(src)
    for i, d in enumerate(src):
        if d != 1 and d != shape[lead + i]:
            raise RuntimeError(
                f"The expanded size of the tensor ({shape[lead + i]}) must match the existing "
                f"size ({d}) at non-singleton dimension {lead + i}.  Target sizes: "
                f"{list(shape)}.  Tensor sizes: {list(src)}")


def _scaled(v: Any, dtype: dt.dtype) -> Any:
    return v if dtype.is_floating_point else int(v)


def _add_product(name: str, input: Tensor, a: Tensor, b: Tensor, beta: Any, alpha: Any,
                 shape: tuple[int, ...]) -> Tensor:
    """``beta * input + alpha * matmul(a, b)`` as one op (one fused kernel eagerly);
    ``beta == 0`` ignores ``input`` (NaNs included), like PyTorch."""
    d = a._dtype
    _expandable(tuple(input.shape), shape)
    beta, alpha = _scaled(beta, d), _scaled(alpha, d)

    def build(bb: Builder, c: Value, x: Value, y: Value) -> Value:
        p = bb("tensor.matmul", x, y)
        if alpha != 1:
            p = bb("tensor.mul", p, bb("tensor.full", value=alpha, shape=(), dtype=d.ir))
        if beta == 0:
            return p if tuple(p.type.shape) == shape else bb("tensor.expand", p, shape=shape)
        if beta != 1:
            c = bb("tensor.mul", c, bb("tensor.full", value=beta, shape=(), dtype=d.ir))
        return bb("tensor.add", p, c)

    return dispatch.apply(name, build, (input, a, b),
                          lambda: _eager_add_product(input, a, b, beta, alpha, shape))


def _eager_add_product(input: Tensor, a: Tensor, b: Tensor, beta: Any, alpha: Any,
                       shape: tuple[int, ...]) -> Tensor:
    d = a._dtype
    k = a.shape[-1]
    if 0 in shape:
        return Tensor._wrap(_alloc(shape, d), d)
    if k == 0:  # an empty sum: only the input term remains
        return add(zeros(shape, dtype=d), input, alpha=beta) if beta != 0 else zeros(shape,
                                                                                     dtype=d)
    arrays = [_unit_inner(a._concrete("addmm"), d), _unit_inner(b._concrete("addmm"), d)]
    if beta != 0:
        arrays.append(np.broadcast_to(input._concrete("addmm"), shape))
    scalars = ([alpha] if alpha != 1 else []) + ([beta] if beta not in (0, 1) else [])
    arrays += [_scalar_array(s, d) for s in scalars]
    flags = (alpha == 1, beta == 0, beta == 1)

    def build(bb: Builder, x: Value, y: Value, *rest: Value) -> Value:
        it = iter(rest)
        c = None if beta == 0 else next(it)
        p = bb("tensor.matmul", x, y)
        if alpha != 1:
            p = bb("tensor.mul", p, _cast(bb, next(it), d))
        if c is None:
            return p
        if beta != 1:
            c = bb("tensor.mul", c, _cast(bb, next(it), d))
        return bb("tensor.add", p, c)

    types = [d.ir, d.ir] + ([d.ir] if beta != 0 else []) + \
        [dt.from_numpy(s.dtype).ir for s in arrays[len(arrays) - len(scalars):]]
    (res,) = dispatch.run_eager(("addmm", a.ndim, b.ndim, d.name, flags), build, arrays, types)
    return Tensor._wrap(res.reshape(shape), d)


def _need_rank(t: Tensor, n: int, what: str) -> None:
    if t.ndim != n:
        kind = {1: "vector", 2: "matrix"}.get(n)
        if kind:
            raise RuntimeError(f"{what} must be a {kind}, got {t.ndim}-D tensor")
        raise RuntimeError(f"{what} must be a {n}D tensor")


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta: Any = 1, alpha: Any = 1
          ) -> Tensor:
    """``beta * input + alpha * (mat1 @ mat2)`` (``nn.Linear``'s op)."""
    _check_tensor(input, "addmm")
    _check_tensor(mat1, "addmm", "mat1")
    _check_tensor(mat2, "addmm", "mat2")
    _need_rank(mat1, 2, "mat1")
    _need_rank(mat2, 2, "mat2")
    if mat1.shape[1] != mat2.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_shape_str(mat1)} and "
                           f"{_shape_str(mat2)})")
    _same_dtype("self and mat2 must have the same dtype, but got ", input, mat2)
    _same_dtype("self and mat2 must have the same dtype, but got ", mat1, mat2)
    return _add_product("addmm", input, mat1, mat2, beta, alpha,
                        (mat1.shape[0], mat2.shape[1]))


def addmv(input: Tensor, mat: Tensor, vec: Tensor, *, beta: Any = 1, alpha: Any = 1
          ) -> Tensor:
    """``beta * input + alpha * (mat @ vec)``."""
    _check_tensor(input, "addmv")
    _check_tensor(mat, "addmv", "mat")
    _check_tensor(vec, "addmv", "vec")
    if mat.ndim != 2 or vec.ndim != 1 or input.ndim > 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got {input.ndim}, {mat.ndim}, "
                           f"{vec.ndim}")
    if mat.shape[1] != vec.shape[0] or input.shape not in ((), (1,), (mat.shape[0],)):
        n = input.shape[0] if input.ndim else 1
        raise RuntimeError(f"size mismatch, got input ({n}), mat ({_shape_str(mat)}), vec "
                           f"({vec.shape[0]})")
    _same_dtype("addmv input tensors must have the same dtype, but got ", input, mat, vec)
    return _add_product("addmv", input, mat, vec, beta, alpha, (mat.shape[0],))


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta: Any = 1, alpha: Any = 1
            ) -> Tensor:
    """``beta * input + alpha * bmm(batch1, batch2)``."""
    _check_tensor(input, "baddbmm")
    _need_rank(_check_tensor(batch1, "baddbmm", "batch1"), 3, "batch1")
    _need_rank(_check_tensor(batch2, "baddbmm", "batch2"), 3, "batch2")
    nb, m, k = batch1.shape
    if tuple(batch2.shape[:2]) != (nb, k):
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{nb}, {k}] but got: [{batch2.shape[0]}, {batch2.shape[1]}].")
    _same_dtype("self and mat2 must have the same dtype, but got ", input, batch2)
    _same_dtype("self and mat2 must have the same dtype, but got ", batch1, batch2)
    return _add_product("baddbmm", input, batch1, batch2, beta, alpha,
                        (nb, m, batch2.shape[2]))


def addbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta: Any = 1, alpha: Any = 1
           ) -> Tensor:
    """``beta * input + alpha * sum_b batch1[b] @ batch2[b]``: one matmul over (b, k)."""
    _check_tensor(input, "addbmm")
    _need_rank(_check_tensor(batch1, "addbmm", "batch1"), 3, "batch1")
    _need_rank(_check_tensor(batch2, "addbmm", "batch2"), 3, "batch2")
    nb, m, k = batch1.shape
    if tuple(batch2.shape[:2]) != (nb, k):
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{nb}, {k}] but got: [{batch2.shape[0]}, {batch2.shape[1]}].")
    _same_dtype("self and mat2 must have the same dtype, but got ", input, batch2)
    _same_dtype("self and mat2 must have the same dtype, but got ", batch1, batch2)
    a = views.reshape(views.permute(batch1, (1, 0, 2)), (m, nb * k))
    b = views.reshape(batch2, (nb * k, batch2.shape[2]))
    return _add_product("addbmm", input, a, b, beta, alpha, (m, batch2.shape[2]))


def addr(input: Tensor, vec1: Tensor, vec2: Tensor, *, beta: Any = 1, alpha: Any = 1
         ) -> Tensor:
    """``beta * input + alpha * outer(vec1, vec2)`` (one elementwise kernel)."""
    _check_tensor(input, "addr")
    for name, t in (("vec1", vec1), ("vec2", vec2)):
        if _check_tensor(t, "addr", name).ndim != 1:
            raise RuntimeError(f"addr: Expected 1-D argument {name}, but got {t.ndim}-D")
    shape = (vec1.shape[0], vec2.shape[0])
    _expandable(tuple(input.shape), shape)
    d = dt.result_type([(t._dtype, t.ndim) for t in (input, vec1, vec2)], [])
    col = views.reshape(vec1, (shape[0], 1))

    def body(e: Any, c: Value, u: Value, v: Value, al: Value, be: Value) -> Value:
        p = e("mul", e("mul", u, v), al)
        return p if beta == 0 else e("add", p, e("mul", c, be))  # beta = 0 ignores NaNs

    return _composite("addr", body, (input, col, vec2, _scaled(alpha, d), _scaled(beta, d)),
                      d, d, (beta == 0,))


# -- einsum -------------------------------------------------------------------------------------
def einsum(equation: str, *operands: Any) -> Tensor:
    """``torch.einsum``: implicit and explicit outputs, ``...``, repeated subscripts
    (diagonals), broadcasting of size-1 axes; contractions run as matmuls, left to right."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ops = [_check_tensor(t, "einsum", f"operands[{i}]") for i, t in enumerate(operands)]
    if not ops:
        raise RuntimeError("einsum(): must provide at least one operand")
    for t in ops[1:]:
        if t._dtype is not ops[0]._dtype:
            raise RuntimeError(f"expected scalar type {_tname(ops[0]._dtype)} but found "
                               f"{_tname(t._dtype)}")
    labels, out = _einsum_parse(equation, ops)
    _einsum_sizes(ops, labels)
    ops, labels = zip(*(_diagonal(t, ls) for t, ls in zip(ops, labels)))
    ops, labels = list(ops), [list(ls) for ls in labels]
    cur, cl = ops[0], labels[0]
    for j in range(1, len(ops)):
        keep = set(out).union(*labels[j + 1:])
        cur, cl = _contract(cur, cl, ops[j], labels[j], keep)
    cur, cl = _sum_labels(cur, cl, [lb for lb in cl if lb not in out])
    perm = [cl.index(lb) for lb in out]
    return cur if perm == list(range(len(perm))) else views.permute(cur, perm)


def _einsum_tokens(eq: str, lo: int, hi: int, i: int) -> list[str]:
    """Subscripts of one term: letters and '...'; PyTorch's errors with string positions."""
    toks, k = [], lo
    while k < hi:
        ch = eq[k]
        if ch == ".":
            if eq[k:k + 3] != "..." or k + 3 > hi:
                raise RuntimeError(f"einsum(): found '.' for operand {i} that is not part of any "
                                   "ellipsis")
            if "..." in toks:
                raise RuntimeError(f"einsum(): found '.' for operand {i} for which an ellipsis "
                                   "was already found")
            toks.append("...")
            k += 3
            continue
        if not (ch.isascii() and ch.isalpha()):
            if not ch.isspace():
                raise RuntimeError(f"einsum(): invalid subscript given at index {k} in the "
                                   "equation string, subscripts must be in [a-zA-Z]")
        else:
            toks.append(ch)
        k += 1
    return toks


def _einsum_parse(eq: str, ops: list[Tensor]) -> tuple[list[list], list]:
    arrow = eq.find("->")
    lhs_end = len(eq) if arrow < 0 else arrow
    bounds, lo = [], 0
    for k in range(lhs_end + 1):
        if k == lhs_end or eq[k] == ",":
            bounds.append((lo, k))
            lo = k + 1
    if len(bounds) > len(ops):
        raise RuntimeError("einsum(): fewer operands were provided than specified in the "
                           "equation")
    if len(bounds) < len(ops):
        raise RuntimeError("einsum(): more operands were provided than specified in the "
                           "equation")
    terms = [_einsum_tokens(eq, a, b, i) for i, (a, b) in enumerate(bounds)]
    n_ell = []
    for i, (toks, t) in enumerate(zip(terms, ops)):
        letters = builtins.sum(1 for x in toks if x != "...")
        if "..." in toks:
            if letters > t.ndim:
                raise RuntimeError(f"einsum(): the number of subscripts in the equation "
                                   f"({letters}) is more than the number of dimensions "
                                   f"({t.ndim}) for operand {i}")
        elif letters != t.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({letters}) "
                               f"does not match the number of dimensions ({t.ndim}) for operand "
                               f"{i} and no ellipsis was given")
        n_ell.append(t.ndim - letters)
    ell = builtins.max(n_ell)
    labels = []
    for toks, e in zip(terms, n_ell):
        ls: list = []
        for x in toks:
            ls.extend(range(ell - e, ell) if x == "..." else [x])
        labels.append(ls)
    if arrow < 0:
        counts: dict = {}
        for ls in labels:
            for x in ls:
                counts[x] = counts.get(x, 0) + 1
        out = list(range(ell)) + sorted(x for x, c in counts.items() if isinstance(x, str)
                                        and c == 1)
        return labels, out
    if eq.find("->", arrow + 2) >= 0:
        raise RuntimeError(f"einsum(): invalid subscript given at index {eq.find('-', arrow + 2)}"
                           " in the equation string, subscripts must be in [a-zA-Z]")
    out = []
    seen = {x for ls in labels for x in ls}
    for x in _einsum_tokens(eq, arrow + 2, len(eq), len(ops)):
        if x == "...":
            out.extend(range(ell))
            continue
        if x not in seen:
            raise RuntimeError(f"einsum(): output subscript {x} does not appear in the equation "
                               "for any input operand")
        if x in out:
            raise RuntimeError(f"einsum(): output subscript {x} appears more than once in the "
                               "output")
        out.append(x)
    return labels, out


def _einsum_sizes(ops: list[Tensor], labels: list[list]) -> None:
    """Equal sizes for repeated subscripts; broadcastable (or 1) sizes across operands."""
    sizes: dict = {}
    for i, (t, ls) in enumerate(zip(ops, labels)):
        own: dict = {}
        for lb, s in zip(ls, t.shape):
            if lb in own and own[lb] != s:
                raise RuntimeError(f"einsum(): subscript {lb} is repeated for operand {i} but "
                                   f"the sizes don't match, {s} != {own[lb]}")
            own[lb] = s
        for lb, s in own.items():
            seen = sizes.get(lb, 1)
            if s != 1 and seen != 1 and s != seen:
                name = lb if isinstance(lb, str) else "in the ellipsis"
                raise RuntimeError(f"einsum(): subscript {name} has size {s} for operand {i} "
                                   f"which does not broadcast with previously seen size {seen}")
            sizes[lb] = builtins.max(seen, s) if seen != 1 else s


def _diagonal(t: Tensor, ls: list) -> tuple[Tensor, list]:
    """Repeated subscripts of one operand become one axis (their diagonal, a view)."""
    for lb in dict.fromkeys(ls):
        pos = [i for i, x in enumerate(ls) if x == lb]
        if len(pos) == 1:
            continue
        rest = [i for i in range(t.ndim) if i not in pos]
        n = t.shape[pos[0]]
        moved = views.permute(t, rest + pos)
        flat = views.reshape(moved, tuple(t.shape[i] for i in rest) + (n ** len(pos),))
        # element (i, i, ..., i) sits at i * (1 + n + ... + n^(r-1)) of the flattened axes
        step = builtins.sum(n ** k for k in range(len(pos)))
        t = views.getitem(flat, (..., slice(None, None, step)))
        ls = [ls[i] for i in rest] + [lb]
    return t, ls


def _sum_labels(t: Tensor, ls: list, gone: list) -> tuple[Tensor, list]:
    if not gone:
        return t, ls
    dims = tuple(ls.index(lb) for lb in gone)
    return sum(t, dims), [lb for lb in ls if lb not in gone]


def _contract(a: Tensor, la: list, b: Tensor, lb: list, keep: set) -> tuple[Tensor, list]:
    """Contract two operands over their shared subscripts that are not kept: one matmul
    (shared kept subscripts are its batch axes), or a broadcast product if none."""
    a, la = _sum_labels(a, la, [x for x in la if x not in lb and x not in keep])
    b, lb = _sum_labels(b, lb, [x for x in lb if x not in la and x not in keep])
    for x in [x for x in la if x in lb and x not in keep]:
        sa, sb = a.shape[la.index(x)], b.shape[lb.index(x)]
        if sa != sb:  # one side has size 1: sum the other side over x on its own
            small, ls = (a, la) if sa == 1 else (b, lb)
            small = views.squeeze(small, ls.index(x))
            ls = [y for y in ls if y != x]
            if sa == 1:
                a, la = small, ls
                b, lb = _sum_labels(b, lb, [x])
            else:
                b, lb = small, ls
                a, la = _sum_labels(a, la, [x])
    batch = [x for x in la if x in lb]
    contr = [x for x in batch if x not in keep]
    batch = [x for x in batch if x in keep]
    left = [x for x in la if x not in lb]
    right = [x for x in lb if x not in la]
    sa = dict(zip(la, a.shape))
    sb = dict(zip(lb, b.shape))
    if not contr:
        a2 = _arrange(a, la, batch + left, batch + left + right)
        b2 = _arrange(b, lb, batch + right, batch + left + right)
        return mul(a2, b2), batch + left + right
    m = math.prod(sa[x] for x in left)
    n = math.prod(sb[x] for x in right)
    k = math.prod(sa[x] for x in contr)
    a2 = _grouped(a, la, batch + left + contr, [sa[x] for x in batch] + [m, k])
    b2 = _grouped(b, lb, batch + contr + right, [sb[x] for x in batch] + [k, n])
    c = matmul(a2, b2)
    shape = tuple(c.shape[:len(batch)]) + tuple(sa[x] for x in left) + \
        tuple(sb[x] for x in right)
    return (c if tuple(c.shape) == shape else views.reshape(c, shape)), batch + left + right


def _grouped(t: Tensor, ls: list, order: list, shape: list) -> Tensor:
    perm = [ls.index(x) for x in order]
    if perm != list(range(len(perm))):
        t = views.permute(t, perm)
    return t if list(t.shape) == shape else views.reshape(t, tuple(shape))


def _arrange(t: Tensor, ls: list, order: list, target: list) -> Tensor:
    """``t`` permuted to ``order`` with size-1 axes for the ``target`` labels it lacks."""
    perm = [ls.index(x) for x in order]
    if perm != list(range(len(perm))):
        t = views.permute(t, perm)
    shape = tuple(t.shape[order.index(x)] if x in order else 1 for x in target)
    return t if tuple(t.shape) == shape else views.reshape(t, shape)


# -- norms --------------------------------------------------------------------------------------
def _float_input(x: Tensor, dtype: dt.dtype | None, op: str) -> Tensor:
    if dtype is not None:
        if not dtype.is_floating_point:
            raise RuntimeError(f"{op}: dtype should be floating point or complex, but got "
                               f"{_tname(dtype)}")
        if dtype is not x._dtype:
            from lamina.frontend.ops import cast

            x = cast(x, dtype)
    if not x._dtype.is_floating_point:
        raise RuntimeError(f"{op}: Expected a floating point or complex tensor as input. Got "
                           f"{_tname(x._dtype)}")
    return x


def _norm_reduce(b: Builder, v: Value, ord: float, dims: tuple[int, ...], keepdim: bool,
                 compute: dt.dtype, out: dt.dtype, grad_safe: bool) -> Value:
    """The vector ``ord``-norm of ``v`` over ``dims``: one reduction with its prologue and
    epilogue. ``grad_safe`` adds the selects that make the gradient at a zero vector 0
    (the same values; the fuser then gives the epilogue a kernel of its own)."""
    v = _cast(b, v, compute)

    def c(x: float) -> Value:
        return b("tensor.full", value=x, shape=(), dtype=compute.ir)

    def red(fn: str, w: Value) -> Value:
        return b(f"tensor.{fn}", w, dims=dims, keepdim=keepdim)

    if ord == math.inf:
        r = red("amax", b("tensor.abs", v))
    elif ord == -math.inf:
        r = red("amin", b("tensor.abs", v))
    elif ord == 0:
        r = red("sum", b("tensor.cast", b("tensor.ne", v, c(0.0)), dtype=compute.ir))
    elif ord == 1:
        r = red("sum", b("tensor.abs", v))
    else:
        s = red("sum", b("tensor.mul", v, v) if ord == 2 else
                b("tensor.pow", b("tensor.abs", v), c(ord)))
        # sqrt/pow are not differentiable at 0: select 0 there, and give the root a safe
        # operand, so the gradient at a zero vector is 0 (PyTorch's), not NaN
        zero = b("tensor.eq", s, c(0.0)) if ord > 0 and grad_safe else None
        if zero is not None:
            s = b("tensor.where", zero, c(1.0), s)
        r = b("tensor.sqrt", s) if ord == 2 else b("tensor.pow", s, c(1.0 / ord))
        if zero is not None:
            r = b("tensor.where", zero, c(0.0), r)
    return _cast(b, r, out)


def vector_norm(x: Tensor, ord: Any = 2, dim: Any = None, keepdim: bool = False, *,
                dtype: dt.dtype | None = None) -> Tensor:
    """``torch.linalg.vector_norm``: ord 2, 1, inf, -inf, 0 or any real p, over ``dim``
    (all axes when None)."""
    x = _float_input(_check_tensor(x, "linalg.vector_norm"), dtype, "linalg.vector_norm")
    if isinstance(ord, bool) or not isinstance(ord, (int, float)):
        raise TypeError(f"linalg_vector_norm(): argument 'ord' (position 2) must be Number, not "
                        f"{type(ord).__name__}")
    ord = float(ord)
    dims = _norm_dims(None if dim == () else dim, x.ndim, "linalg.vector_norm")
    kept = tuple(s for i, s in enumerate(x.shape) if i not in dims)
    keep_shape = tuple(1 if i in dims else s for i, s in enumerate(x.shape))
    if ord < 0 and math.prod(x.shape[i] for i in dims) == 0:
        label = "inf" if ord == -math.inf else f"{ord:g}"
        raise RuntimeError(f"linalg.vector_norm cannot compute the {label} norm on an empty "
                           "tensor because the operation does not have an identity")
    if ord == math.inf and math.prod(x.shape[i] for i in dims) == 0:
        raise RuntimeError("linalg.vector_norm cannot compute the inf norm on an empty tensor "
                           "because the operation does not have an identity")
    out = x._dtype
    compute = dt.float32 if out in (dt.float16, dt.bfloat16) else out

    def semantic(b: Builder, v: Value) -> Value:
        return _norm_reduce(b, v, ord, dims, keepdim, compute, out, True)

    def eager() -> Tensor:
        if x.numel() == 0:
            return zeros(keep_shape if keepdim else kept, dtype=out)

        def build(b: Builder, v: Value) -> Value:  # no gradient here: one kernel
            return _norm_reduce(b, v, ord, dims, False, compute, out, False)

        (res,) = dispatch.run_eager(("vector_norm", ord, dims, out.name), build,
                                    [x._concrete("linalg.vector_norm")], [x._dtype.ir])
        return Tensor._wrap(res.reshape(keep_shape if keepdim else kept), out)

    return dispatch.apply("vector_norm", semantic, (x,), eager)


def _two_dims(dim: Any, ndim: int, op: str) -> tuple[int, int]:
    dims = tuple(dim) if isinstance(dim, (list, tuple, Size)) else (dim,)
    if len(dims) != 2:
        raise RuntimeError(f"{op}: dim must be a 2-tuple. Got {' '.join(map(str, dims))}")
    d0, d1 = (_dim(d, ndim, op) for d in dims)
    if d0 == d1:
        raise RuntimeError(f"{op}: dims must be different. Got ({dims[0]}, {dims[1]})")
    return d0, d1


def matrix_norm(A: Tensor, ord: Any = "fro", dim: Any = (-2, -1), keepdim: bool = False, *,
                dtype: dt.dtype | None = None) -> Tensor:
    """``torch.linalg.matrix_norm`` for ord 'fro', 1, -1, inf, -inf (the singular-value
    orders 'nuc', 2, -2 need an SVD, which Lamina does not have yet)."""
    op = "linalg.matrix_norm"
    A = _float_input(_check_tensor(A, op), dtype, op)
    if A.ndim < 2:
        raise RuntimeError(f"{op}: The input tensor A must have at least 2 dimensions.")
    d0, d1 = _two_dims(dim, A.ndim, op)
    if ord == "fro":
        return vector_norm(A, 2, (d0, d1), keepdim)
    if ord in ("nuc", 2, -2):
        raise NotImplementedError(f"{op}: ord={ord!r} needs the singular values of A (an SVD), "
                                  "which Lamina does not provide yet")
    if ord not in (1, -1, math.inf, -math.inf):
        raise RuntimeError(f"{op}: Order {ord} not supported.")
    # 1/-1: max/min over columns of the column sums; inf/-inf: the same over rows
    inner_dim, outer_dim = (d0, d1) if abs(ord) == 1 else (d1, d0)
    sums = vector_norm(A, 1, inner_dim, True)
    r = (amax if ord > 0 else amin)(sums, outer_dim, True)
    if keepdim:
        return r
    return views.reshape(r, tuple(s for i, s in enumerate(r.shape) if i not in (d0, d1)))


def linalg_norm(A: Tensor, ord: Any = None, dim: Any = None, keepdim: bool = False, *,
                dtype: dt.dtype | None = None) -> Tensor:
    """``torch.linalg.norm``: a vector norm (1 dim, or all of them when ``ord`` is None) or
    a matrix norm (2 dims, or a 2-d input with ``ord`` given)."""
    A = _check_tensor(A, "linalg.norm")
    if dim is not None:
        dims = tuple(dim) if isinstance(dim, (list, tuple, Size)) else (dim,)
        if len(dims) == 1:
            if isinstance(ord, str):
                raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got {dims[0]}")
            return vector_norm(A, 2 if ord is None else ord, dims, keepdim, dtype=dtype)
        if len(dims) == 2:
            return matrix_norm(A, "fro" if ord is None else ord, dims, keepdim, dtype=dtype)
        raise RuntimeError(f"linalg.norm: If dim is specified, it must be of length 1 or 2. Got "
                           f"{list(dims)}")
    if ord is None:
        return vector_norm(A, 2, None, keepdim, dtype=dtype)
    if A.ndim == 2 or isinstance(ord, str):
        return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    if A.ndim != 1:
        raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be "
                           f"1D or 2D. Got {A.ndim}D.")
    return vector_norm(A, ord, None, keepdim, dtype=dtype)


def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False,
         dtype: dt.dtype | None = None) -> Tensor:
    """``torch.norm`` / ``Tensor.norm``: 'fro' (the 2-norm over ``dim``, all axes by default)
    or a vector p-norm."""
    x = _check_tensor(input, "norm")
    if p is None:
        p = 2
    if isinstance(p, str):
        if p == "nuc":
            raise NotImplementedError("norm: p='nuc' needs singular values (an SVD), which "
                                      "Lamina does not provide yet")
        if p != "fro":
            raise RuntimeError(f"norm: Order {p} not supported.")
        if dim is not None:
            dims = tuple(dim) if isinstance(dim, (list, tuple, Size)) else (dim,)
            if len(dims) > 2:
                raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got "
                                   f"{' '.join(map(str, dims))}")
        p = 2
    return vector_norm(x, p, dim, keepdim, dtype=dtype)


# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {
    "addbmm": addbmm, "addmm": addmm, "addmv": addmv, "addr": addr, "baddbmm": baddbmm,
    "dot": dot, "vdot": vdot, "ger": ger, "outer": outer, "inner": inner, "mv": mv,
    "norm": norm,
}
