"""Decomposition rules of the convolution and pooling tensor ops, added to ``decompose.RULES``.

- ``tensor.conv``: one ``prim.conv`` whose ``low``/``high`` are the zero padding.
- ``tensor.conv_transpose``: the input gradient of a convolution, one ``prim.conv``
  with the weight used ``transposed``, the input dilated by the stride
  (``input_dilation``) and padded by ``(K-1)*d - padding`` on each side (cropped
  where that is negative), plus ``output_padding`` on the high side, stride 1. The
  amounts depend on the kernel size, which must therefore be static (the eager
  path states the primitive itself with the concrete size).
- pools: their primitive, attributes unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from lamina.ir import Builder, IRError, Op, Value
from lamina.passes.decompose import rule


@rule("tensor.conv")
def _conv(b: Builder, op: Op, args: list[Value]) -> Value:
    x, w = args
    a = op.attrs
    nd = len(a["stride"])
    return b("prim.conv", x, w, stride=a["stride"], dilation=a["dilation"], groups=a["groups"],
             transposed=False, low=a["low"], high=a["high"], input_dilation=(1,) * nd)


def transposed_conv_attrs(kernel: Sequence[int], attrs: dict) -> dict:
    """The ``prim.conv`` attributes of a transposed convolution with kernel sizes ``kernel``
    and PyTorch's ``stride``/``padding``/``output_padding``/``dilation``/``groups``."""
    dilation = tuple(attrs["dilation"])
    low = tuple((k - 1) * d - p for k, d, p in zip(kernel, dilation, attrs["padding"]))
    high = tuple(lo + extra for lo, extra in zip(low, attrs["output_padding"]))
    return dict(stride=(1,) * len(kernel), dilation=dilation, groups=attrs["groups"],
                transposed=True, low=low, high=high, input_dilation=tuple(attrs["stride"]))


@rule("tensor.conv_transpose")
def _conv_transpose(b: Builder, op: Op, args: list[Value]) -> Value:
    x, w = args
    kernel = w.type.shape[2:]
    if None in kernel:
        raise IRError(f"{op.where()}: decomposing a transposed convolution needs static kernel "
                      f"sizes: weight {w.type} (input {x.type})")
    return b("prim.conv", x, w, **transposed_conv_attrs(kernel, op.attrs))


def _same(prim: str):
    def decompose(b: Builder, op: Op, args: list[Value]) -> Value:
        return b(prim, *args, **op.attrs)

    return decompose


for _name in ("max_pool", "max_pool_index", "avg_pool", "adaptive_avg_pool"):
    rule(f"tensor.{_name}")(_same(f"prim.{_name}"))
