"""Decomposition rules of the convolution and pooling tensor ops, added to ``decompose.RULES``.

- ``tensor.conv``: ``prim.pad`` (zeros, when there is padding) then the valid
  ``prim.conv``.
- ``tensor.conv_transpose``: the input gradient of a convolution, the way
  ``vjp_conv`` computes one: the input dilated by the stride (zeros between
  elements), padded by ``(K-1)*d - padding`` (cropped where that is negative),
  plus ``output_padding`` on the high side, then a stride-1 ``prim.conv`` with
  the weight used ``transposed``. The amounts depend on the kernel size, and the
  dilation on the input's sizes, so those must be static (``lamina.compile``
  and the autograd tape have static shapes; the eager path runs the same prims
  on concrete tensors).
- pools: their primitive, attributes unchanged.
"""

from __future__ import annotations

from lamina.ir import Builder, IRError, Op, Value
from lamina.passes.decompose import rule
from lamina.passes.vjp_conv import dilate
from lamina.passes.vjp_rules import IREmitter


@rule("tensor.conv")
def _conv(b: Builder, op: Op, args: list[Value]) -> Value:
    x, w = args
    a = op.attrs
    if any(a["low"]) or any(a["high"]):
        x = b("prim.pad", x, low=(0, 0, *a["low"]), high=(0, 0, *a["high"]), value=0.0)
    return b("prim.conv", x, w, stride=a["stride"], dilation=a["dilation"], groups=a["groups"],
             transposed=False)


def transposed_conv(e, x: Value, w: Value, attrs: dict):
    """``conv_transpose`` as prims through emitter ``e`` (IR or tensors); static sizes."""
    stride, dilation = attrs["stride"], attrs["dilation"]
    kernel = tuple(e.shape(w))[2:]
    xd = dilate(e, x, stride)
    low, high = [], []
    for k, d, p, extra in zip(kernel, dilation, attrs["padding"], attrs["output_padding"]):
        low.append((k - 1) * d - p)
        high.append((k - 1) * d - p + extra)
    if any(v > 0 for v in low + high):
        xd = e.prim("prim.pad", xd, low=(0, 0, *(max(v, 0) for v in low)),
                    high=(0, 0, *(max(v, 0) for v in high)), value=0.0)
    if any(v < 0 for v in low + high):
        shape = tuple(e.shape(xd))
        start = (0, 0, *(max(-v, 0) for v in low))
        stop = tuple(shape[:2]) + tuple(n - max(-v, 0) for n, v in zip(shape[2:], high))
        xd = e.prim("prim.slice", xd, start=start, stop=stop, step=(1,) * len(shape))
    return e.prim("prim.conv", xd, w, stride=(1,) * len(kernel), dilation=tuple(dilation),
                  groups=attrs["groups"], transposed=True)


@rule("tensor.conv_transpose")
def _conv_transpose(b: Builder, op: Op, args: list[Value]) -> Value:
    x, w = args
    a = op.attrs
    crop = w.type.is_static and any(
        p > (k - 1) * d for k, d, p in zip(w.type.shape[2:], a["dilation"], a["padding"]))
    needs_sizes = crop or any(s > 1 for s in a["stride"])
    if not w.type.is_static or (needs_sizes and not x.type.is_static):
        raise IRError(f"{op.where()}: decomposing a transposed convolution needs static "
                      f"sizes: input {x.type}, weight {w.type}")
    return transposed_conv(IREmitter(b), x, w, a)


def _same(prim: str):
    def decompose(b: Builder, op: Op, args: list[Value]) -> Value:
        return b(prim, *args, **op.attrs)

    return decompose


for _name in ("max_pool", "max_pool_index", "avg_pool", "adaptive_avg_pool"):
    rule(f"tensor.{_name}")(_same(f"prim.{_name}"))
