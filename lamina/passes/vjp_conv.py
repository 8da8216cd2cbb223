"""VJP rules of the convolution and pooling primitives (``lamina.ir.dialects.prim_conv``),
added to the one table of ``vjp_rules``.

A convolution is linear in each operand, so both cotangents are convolutions:

- the input's is the transposed convolution of the output cotangent: the
  cotangent dilated by the forward's stride, padded by the dilated kernel extent
  less the forward's padding (so exactly the input's positions come out: the
  forward's padding is never differentiated), convolved with the same weight used
  the other way round (``transposed`` flipped), strided by the forward's input
  dilation (the adjoint of a dilation is a stride, and back);
- the weight's is ``conv_weight_grad`` of the input and the output cotangent.

``conv_weight_grad`` is bilinear too, so it has rules of the same kind (second
derivatives of a convolution). Pools route the cotangent through their own
adjoint prims; ``max_pool_grad`` sends its cotangent's cotangent back through the
recorded argmax (a gather), and nothing to ``x``, on which it depends only
through which element is largest.
"""

from __future__ import annotations

from collections.abc import Sequence

from lamina.passes.vjp_rules import Emitter, X, _register, _zeros, vjp

_CONV = ("stride", "dilation", "groups", "transposed", "low", "high", "input_dilation")


def _conv_attrs(attrs: dict) -> dict:
    return {k: attrs[k] for k in _CONV}


def conv_input_grad(e: Emitter, g: X, w: X, spatial: Sequence[int], attrs: dict) -> X:
    """The cotangent of ``conv(x, w)``'s input ``x`` (spatial sizes ``spatial``) from the
    output cotangent ``g``: one convolution of ``g`` dilated by the stride, padded by the
    dilated kernel extent less the forward's padding, strided by the forward's input
    dilation, with the weight used the other way round (``transposed`` flipped)."""
    stride, dilation, spread = attrs["stride"], attrs["dilation"], attrs["input_dilation"]
    kernel = tuple(e.shape(w))[2:]
    pooled = tuple(e.shape(g))[2:]
    low = tuple((k - 1) * d - lo for k, d, lo in zip(kernel, dilation, attrs["low"]))
    high = tuple((n - 1) * a + (k - 1) * d - (m - 1) * s - lo for n, a, k, d, m, s, lo in
                 zip(spatial, spread, kernel, dilation, pooled, stride, low))
    return e.prim("prim.conv", g, w, stride=tuple(spread), dilation=tuple(dilation),
                  groups=attrs["groups"], transposed=not attrs["transposed"], low=low,
                  high=high, input_dilation=tuple(stride))


@vjp("prim.conv")
def _conv_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x, w), (g,) = inputs, cts
    gx = gw = None
    if need[0]:
        gx = conv_input_grad(e, g, w, tuple(e.shape(x))[2:], attrs)
    if need[1]:
        gw = e.prim("prim.conv_weight_grad", x, g, kernel=tuple(e.shape(w))[2:],
                    **_conv_attrs(attrs))
    return [gx, gw]


@vjp("prim.conv_weight_grad")
def _conv_weight_grad_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    # out = <conv(x, .), g>'s gradient: bilinear in (x, g), with the weight slot now the
    # cotangent c; each operand's cotangent is the matching conv with c as the weight
    (x, g), (c,) = inputs, cts
    gx = gg = None
    if need[0]:
        gx = conv_input_grad(e, g, c, tuple(e.shape(x))[2:], attrs)
    if need[1]:
        y = e.prim("prim.conv", x, c, **_conv_attrs(attrs))
        gs, ys = tuple(e.shape(g)), tuple(e.shape(y))
        gg = y if ys == gs else e.prim("prim.slice", y, start=(0,) * len(gs), stop=gs,
                                       step=(1,) * len(gs))
    return [gx, gg]


# -- pooling -------------------------------------------------------------------------------
def _pool_attrs(attrs: dict, names: Sequence[str]) -> dict:
    return {k: attrs[k] for k in names}


_MAX = ("window", "stride", "dilation", "padding", "ceil_mode")
_AVG = ("window", "stride", "padding", "ceil_mode", "count_include_pad", "divisor")


@vjp("prim.max_pool")
def _max_pool_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [e.prim("prim.max_pool_grad", inputs[0], cts[0], **_pool_attrs(attrs, _MAX))]


def _nondiff(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [None] * len(inputs)


_register("prim.max_pool_index", _nondiff)


@vjp("prim.max_pool_grad")
def _max_pool_grad_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x, g), (c,) = inputs, cts
    gg = None
    if need[1]:
        nd = len(attrs["window"])
        xs, gs = tuple(e.shape(x)), tuple(e.shape(g))
        rows = 1
        for n in xs[:len(xs) - nd]:
            rows *= n
        plane = 1
        for n in xs[len(xs) - nd:]:
            plane *= n
        pooled = 1
        for n in gs[len(gs) - nd:]:
            pooled *= n
        index = e.prim("prim.max_pool_index", x, **_pool_attrs(attrs, _MAX))
        index = e.prim("prim.reshape", index, shape=(rows, pooled))
        flat = e.prim("prim.reshape", c, shape=(rows, plane))
        gg = e.prim("prim.reshape", e.prim("prim.gather", flat, index, axis=1), shape=gs)
    return [_zeros(e, x) if need[0] else None, gg]


@vjp("prim.avg_pool")
def _avg_pool_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [e.prim("prim.avg_pool_grad", inputs[0], cts[0], **_pool_attrs(attrs, _AVG))]


@vjp("prim.avg_pool_grad")
def _avg_pool_grad_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x, _), (c,) = inputs, cts
    gg = e.prim("prim.avg_pool", c, **_pool_attrs(attrs, _AVG)) if need[1] else None
    return [_zeros(e, x) if need[0] else None, gg]


@vjp("prim.adaptive_avg_pool")
def _adaptive_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [e.prim("prim.adaptive_avg_pool_grad", inputs[0], cts[0], output=attrs["output"])]


@vjp("prim.adaptive_avg_pool_grad")
def _adaptive_grad_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x, _), (c,) = inputs, cts
    gg = e.prim("prim.adaptive_avg_pool", c, output=attrs["output"]) if need[1] else None
    return [_zeros(e, x) if need[0] else None, gg]
