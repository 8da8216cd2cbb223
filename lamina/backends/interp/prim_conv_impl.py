"""numpy reference implementations of the convolution and pooling primitives
(``lamina.ir.dialects.prim_conv``), registered into the prim interpreter's ``TABLE``.

Written for clarity, not speed: a convolution is a sum over kernel taps of
strided slices contracted with ``einsum``; a pool visits its windows one output
position at a time. Accumulation follows the dialect: f16/bf16 and f32 in f32,
f64 in f64. Max pooling scans a window in row-major order and keeps the first
maximum, or the last NaN (PyTorch's CPU kernel).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from lamina.backends.interp import numerics as nx
from lamina.backends.interp.prim_interp import TABLE, Call, _accumulator
from lamina.ir.dialects.prim_conv import pool_size


def _values(c: Call, x: np.ndarray, k: int = 0) -> np.ndarray:
    t = c.in_types[k].dtype
    return nx.decode(x, t).astype(_accumulator(t))


def _result(c: Call, v: np.ndarray) -> np.ndarray:
    return nx.convert(v, c.out_type.dtype)


# -- convolution --------------------------------------------------------------------------
def transpose_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """A transposed conv's weight ``(C, O/g, *K)`` as the plain weight ``(O, C/g, *K)`` it
    stands for: transposed within each group and flipped in space."""
    c, og = w.shape[:2]
    k = w.shape[2:]
    nd = len(k)
    v = w.reshape(groups, c // groups, og, *k).swapaxes(1, 2).reshape(groups * og,
                                                                       c // groups, *k)
    return np.flip(v, tuple(range(2, 2 + nd)))


def prepare_input(x: np.ndarray, attrs: dict) -> np.ndarray:
    """``x`` with ``input_dilation - 1`` zeros between neighbours along each spatial axis,
    then padded by ``low``/``high`` (negative amounts crop): what ``conv`` correlates."""
    dil, low, high = attrs["input_dilation"], attrs["low"], attrs["high"]
    nd = len(dil)
    if 0 in x.shape[2:]:
        raise ValueError(f"conv: an input of shape {list(x.shape)} has an empty spatial axis")
    if any(a > 1 for a in dil):
        spread = np.zeros(x.shape[:2] + tuple((n - 1) * a + 1 for n, a in
                                              zip(x.shape[2:], dil)), x.dtype)
        spread[(slice(None), slice(None), *(slice(None, None, a) for a in dil))] = x
        x = spread
    x = np.pad(x, [(0, 0), (0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in zip(low, high)])
    crop = tuple(slice(max(-lo, 0), n - max(-hi, 0))
                 for lo, hi, n in zip(low, high, x.shape[2:]))
    return x[(slice(None), slice(None), *crop)] if nd else x


def _taps(kernel: tuple[int, ...], out: tuple[int, ...], stride, dilation):
    """Per kernel tap: its index and the slices of the input it multiplies."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        yield tap, tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                         for t, o, s, d in zip(tap, out, stride, dilation))


def _conv(c: Call, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    a = c.attrs
    stride, dilation, groups = a["stride"], a["dilation"], a["groups"]
    xv, wv = prepare_input(_values(c, x, 0), a), _values(c, w, 1)
    if a["transposed"]:
        if w.shape[0] != x.shape[1] or w.shape[0] % groups:
            raise c.error(f"weight does not fit the input with groups={groups}", x, w)
        wv = transpose_weight(wv, groups)
    n, ch = x.shape[:2]
    o, cg = wv.shape[:2]
    kernel = wv.shape[2:]
    if ch != cg * groups or o % groups:
        raise c.error(f"input channels {ch} and weight {list(w.shape)} do not fit groups="
                      f"{groups}", x, w)
    out_sp = []
    for size, k, s, d in zip(xv.shape[2:], kernel, stride, dilation):
        if size < (k - 1) * d + 1:
            raise c.error("the dilated kernel is larger than the input", x, w)
        out_sp.append((size - (k - 1) * d - 1) // s + 1)
    og = o // groups
    acc = np.zeros((n, groups, og, *out_sp), xv.dtype)
    for tap, sl in _taps(kernel, tuple(out_sp), stride, dilation):
        xs = xv[(slice(None), slice(None), *sl)].reshape(n, groups, cg, *out_sp)
        ws = wv[(slice(None), slice(None), *tap)].reshape(groups, og, cg)
        acc += np.einsum("ngc...,goc->ngo...", xs, ws)
    return _result(c, acc.reshape(n, o, *out_sp))


def _conv_weight_grad(c: Call, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    a = c.attrs
    stride, dilation, groups, kernel = a["stride"], a["dilation"], a["groups"], a["kernel"]
    xv, gv = prepare_input(_values(c, x, 0), a), _values(c, g, 1)
    n, ch = x.shape[:2]
    o = g.shape[1]
    out_sp = g.shape[2:]
    if g.shape[0] != n or ch % groups or o % groups:
        raise c.error(f"batch or channels do not fit groups={groups}", x, g)
    for size, k, so, s, d in zip(xv.shape[2:], kernel, out_sp, stride, dilation):
        if so and (k - 1) * d + (so - 1) * s + 1 > size:
            raise c.error(f"the output cotangent does not fit the input with kernel "
                          f"{list(kernel)}", x, g)
    cg, og = ch // groups, o // groups
    res = np.zeros((groups, og, cg, *kernel), xv.dtype)
    gs = gv.reshape(n, groups, og, math.prod(out_sp))
    for tap, sl in _taps(tuple(kernel), tuple(out_sp), stride, dilation):
        xs = xv[(slice(None), slice(None), *sl)].reshape(n, groups, cg, math.prod(out_sp))
        res[(slice(None), slice(None), slice(None), *tap)] = np.einsum("ngcj,ngoj->goc", xs,
                                                                        gs)
    res = res.reshape(o, cg, *kernel)
    if a["transposed"]:
        res = transpose_weight(res, groups)  # its own inverse, with the layouts swapped
    return _result(c, res)


# -- pooling ------------------------------------------------------------------------------
def _window_attrs(c: Call) -> tuple[tuple, tuple, tuple, tuple, bool]:
    a = c.attrs
    nd = len(a["window"])
    return (a["window"], a["stride"], a.get("dilation", (1,) * nd), a["padding"],
            a["ceil_mode"])


def _out_sizes(c: Call, spatial: tuple[int, ...], x: np.ndarray) -> tuple[int, ...]:
    window, stride, dilation, padding, ceil = _window_attrs(c)
    out = tuple(pool_size(n, k, s, d, p, ceil)
                for n, k, s, d, p in zip(spatial, window, stride, dilation, padding))
    if any(o <= 0 for o in out):
        raise c.error(f"the input is too small for window {list(window)}", x)
    return out


def _window_taps(c: Call, pos: tuple[int, ...], spatial: tuple[int, ...]
                 ) -> list[tuple[int, ...]]:
    """The input positions of the window at output position ``pos``, in row-major order."""
    window, stride, dilation, padding, _ = _window_attrs(c)
    axes = []
    for j, n, k, s, d, p in zip(pos, spatial, window, stride, dilation, padding):
        axes.append([j * s - p + t * d for t in range(k) if 0 <= j * s - p + t * d < n])
    return list(itertools.product(*axes))


def _split(x: np.ndarray, nd: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return x.shape[:x.ndim - nd], x.shape[x.ndim - nd:]


def _max_scan(c: Call, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window: the maximum (NaN wins) and its flat index in the unpadded plane."""
    nd = len(c.attrs["window"])
    lead, spatial = _split(x, nd)
    xv = _values(c, x)
    out = _out_sizes(c, spatial, x)
    values = np.full(lead + out, -np.inf, xv.dtype)
    index = np.full(lead + out, -1, np.int64)
    for pos in itertools.product(*(range(o) for o in out)):
        taps = _window_taps(c, pos, spatial)
        if not taps:
            continue
        v = np.stack([xv[(..., *t)] for t in taps], axis=-1)
        flat = np.array([np.ravel_multi_index(t, spatial) for t in taps], np.int64)
        nan = np.isnan(v)
        last_nan = v.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
        best = np.where(nan.any(-1), last_nan, np.argmax(np.where(nan, -np.inf, v), axis=-1))
        values[(..., *pos)] = np.take_along_axis(v, best[..., None], -1)[..., 0]
        index[(..., *pos)] = flat[best]
    return values, index


def _max_pool(c: Call, x: np.ndarray) -> np.ndarray:
    return _result(c, _max_scan(c, x)[0])


def _max_pool_index(c: Call, x: np.ndarray) -> np.ndarray:
    return _max_scan(c, x)[1]


def _max_pool_grad(c: Call, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    nd = len(c.attrs["window"])
    lead, spatial = _split(x, nd)
    _, index = _max_scan(c, x)
    if index.shape != g.shape:
        raise c.error("the cotangent does not have the pooled shape", x, g)
    gv = _values(c, g, 1).reshape(-1, math.prod(g.shape[g.ndim - nd:]))
    flat_index = index.reshape(gv.shape)
    out = np.zeros((gv.shape[0], math.prod(spatial)), gv.dtype)
    for row in range(gv.shape[0]):
        for j in range(gv.shape[1]):  # in order: each addition rounds like the kernel's
            if flat_index[row, j] >= 0:
                out[row, flat_index[row, j]] += gv[row, j]
    return _result(c, out.reshape(x.shape))


def _avg_divisor(c: Call, pos: tuple[int, ...], spatial: tuple[int, ...]) -> int:
    window, stride, _, padding, _ = _window_attrs(c)
    if c.attrs["divisor"]:
        return c.attrs["divisor"]
    count = 1
    for j, n, k, s, p in zip(pos, spatial, window, stride, padding):
        lo, hi = j * s - p, min(j * s - p + k, n + p)
        if not c.attrs["count_include_pad"]:
            lo, hi = max(lo, 0), min(hi, n)
        count *= hi - lo
    return count


def _avg_pool(c: Call, x: np.ndarray) -> np.ndarray:
    nd = len(c.attrs["window"])
    lead, spatial = _split(x, nd)
    xv = _values(c, x)
    out = _out_sizes(c, spatial, x)
    res = np.zeros(lead + out, xv.dtype)
    for pos in itertools.product(*(range(o) for o in out)):
        taps = _window_taps(c, pos, spatial)
        if taps:
            total = sum(xv[(..., *t)] for t in taps)
            res[(..., *pos)] = total / xv.dtype.type(_avg_divisor(c, pos, spatial))
    return _result(c, res)


def _avg_pool_grad(c: Call, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    nd = len(c.attrs["window"])
    lead, spatial = _split(x, nd)
    out = _out_sizes(c, spatial, x)
    if g.shape != lead + out:
        raise c.error("the cotangent does not have the pooled shape", x, g)
    gv = _values(c, g, 1)
    res = np.zeros(x.shape, gv.dtype)
    for pos in itertools.product(*(range(o) for o in out)):
        share = gv[(..., *pos)] / gv.dtype.type(_avg_divisor(c, pos, spatial))
        for t in _window_taps(c, pos, spatial):
            res[(..., *t)] += share
    return _result(c, res)


def adaptive_range(i: int, n_out: int, n_in: int) -> tuple[int, int]:
    """PyTorch's adaptive window ``[floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))``."""
    return i * n_in // n_out, -(-(i + 1) * n_in // n_out)


def _adaptive(c: Call, x: np.ndarray) -> tuple[tuple, tuple, tuple]:
    output = tuple(c.attrs["output"])
    lead, spatial = _split(x, len(output))
    if 0 in spatial:
        raise c.error("adaptive pooling of an empty spatial axis", x)
    return lead, spatial, output


def _adaptive_avg_pool(c: Call, x: np.ndarray) -> np.ndarray:
    lead, spatial, output = _adaptive(c, x)
    xv = _values(c, x)
    res = np.zeros(lead + output, xv.dtype)
    for pos in itertools.product(*(range(o) for o in output)):
        ranges = [adaptive_range(i, o, n) for i, o, n in zip(pos, output, spatial)]
        window = xv[(..., *(slice(a, b) for a, b in ranges))]
        count = math.prod(b - a for a, b in ranges)
        res[(..., *pos)] = window.sum(axis=tuple(range(-len(output), 0)), dtype=xv.dtype) \
            / xv.dtype.type(count)
    return _result(c, res)


def _adaptive_avg_pool_grad(c: Call, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    lead, spatial, output = _adaptive(c, x)
    if g.shape != lead + output:
        raise c.error("the cotangent does not have the pooled shape", x, g)
    gv = _values(c, g, 1)
    res = np.zeros(x.shape, gv.dtype)
    for pos in itertools.product(*(range(o) for o in output)):
        ranges = [adaptive_range(i, o, n) for i, o, n in zip(pos, output, spatial)]
        count = math.prod(b - a for a, b in ranges)
        share = gv[(..., *pos)] / gv.dtype.type(count)
        sl = (..., *(slice(a, b) for a, b in ranges))
        res[sl] += share.reshape(share.shape + (1,) * len(output))
    return _result(c, res)


TABLE.update({
    "prim.conv": _conv, "prim.conv_weight_grad": _conv_weight_grad,
    "prim.max_pool": _max_pool, "prim.max_pool_index": _max_pool_index,
    "prim.max_pool_grad": _max_pool_grad, "prim.avg_pool": _avg_pool,
    "prim.avg_pool_grad": _avg_pool_grad, "prim.adaptive_avg_pool": _adaptive_avg_pool,
    "prim.adaptive_avg_pool_grad": _adaptive_avg_pool_grad,
})
