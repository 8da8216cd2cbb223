"""Tensor dialect extension: convolution and pooling as the frontend records them.

``tensor.conv`` takes PyTorch's convolution with explicit zero padding (``low``
and ``high`` per spatial axis, so ``padding='same'`` with an even kernel fits);
``tensor.conv_transpose`` PyTorch's transposed convolution (``padding``,
``output_padding``). The pools carry the attributes of their primitives
(``lamina.ir.dialects.prim_conv``) and share their shape rules. Decompositions
live in ``lamina/passes/decompose_conv.py``.
"""

from __future__ import annotations

from lamina.ir.core import IRError, register
from lamina.ir.dialects import prim_conv as PC
from lamina.ir.dialects.prim import _tensor
from lamina.ir.dialects.tensor import TensorOp
from lamina.ir.types import TensorType


def _check_conv(cls: type, x: TensorType, w: TensorType, attrs: dict, keys: tuple[str, ...]
                ) -> tuple[int, tuple, tuple, int]:
    what = cls.name
    nd = PC._spatial_rank(attrs, "stride", what)
    stride = PC._ints(attrs["stride"], nd, what, "stride", 1)
    dilation = PC._ints(attrs["dilation"], nd, what, "dilation", 1)
    for k in keys:
        PC._ints(attrs[k], nd, what, k, 0)
    groups = attrs["groups"]
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise IRError(f"{what}: groups must be an int >= 1, got {groups!r}")
    for t, role in ((x, "input"), (w, "weight")):
        if not t.dtype.is_float:
            raise IRError(f"{what}: {role} must be a floating tensor, got {t}")
        if t.rank != nd + 2:
            raise IRError(f"{what}: {role} must have rank {nd + 2}, got {t}")
    if x.dtype != w.dtype:
        raise IRError(f"{what}: input {x} and weight {w} have different dtypes")
    return nd, stride, dilation, groups


@register
class TConv(TensorOp):
    """N-d convolution (PyTorch's ``convNd`` without bias), zero padding ``low``/``high``."""

    name = "tensor.conv"
    num_operands = 2
    attributes = ("stride", "dilation", "groups", "low", "high")

    @classmethod
    def infer(cls, operand_types, attrs):
        x, w = (_tensor(t, cls.name) for t in operand_types)
        nd, stride, dilation, groups = _check_conv(cls, x, w, attrs, ("low", "high"))
        channels = PC.conv_channels(x, w, groups, False, cls.name)
        spatial = []
        for a in range(nd):
            n, k = x.shape[2 + a], w.shape[2 + a]
            padded = None if n is None else n + attrs["low"][a] + attrs["high"][a]
            if padded is not None and k is not None and padded < (k - 1) * dilation[a] + 1:
                raise IRError(f"{cls.name}: padded input size {padded} along spatial axis {a} "
                              f"is smaller than the dilated kernel "
                              f"({(k - 1) * dilation[a] + 1}) of weight {w} (input {x})")
            spatial.append(PC.valid_size(padded, k, stride[a], dilation[a]))
        return [TensorType((x.shape[0], channels, *spatial), x.dtype)]


def transpose_size(n: int | None, k: int | None, s: int, d: int, p: int, op: int) -> int | None:
    """PyTorch's transposed convolution output size."""
    if n is None or k is None:
        return None
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


@register
class TConvTranspose(TensorOp):
    """N-d transposed convolution (PyTorch's ``conv_transposeNd`` without bias)."""

    name = "tensor.conv_transpose"
    num_operands = 2
    attributes = ("stride", "dilation", "groups", "padding", "output_padding")

    @classmethod
    def infer(cls, operand_types, attrs):
        x, w = (_tensor(t, cls.name) for t in operand_types)
        nd, stride, dilation, groups = _check_conv(cls, x, w, attrs,
                                                   ("padding", "output_padding"))
        for a in range(nd):
            if attrs["output_padding"][a] >= max(stride[a], dilation[a]):
                raise IRError(f"{cls.name}: output padding must be smaller than either stride "
                              f"or dilation, got output_padding={list(attrs['output_padding'])}"
                              f", stride={list(stride)}, dilation={list(dilation)}")
        channels = PC.conv_channels(x, w, groups, True, cls.name)
        spatial = []
        for a in range(nd):
            size = transpose_size(x.shape[2 + a], w.shape[2 + a], stride[a], dilation[a],
                                  attrs["padding"][a], attrs["output_padding"][a])
            if size is not None and size <= 0:
                raise IRError(f"{cls.name}: output size {size} along spatial axis {a} is not "
                              f"positive (input {x}, weight {w})")
            spatial.append(size)
        return [TensorType((x.shape[0], channels, *spatial), x.dtype)]


def _pool(name: str, prim: type, doc: str) -> type:
    def infer(cls, operand_types, attrs):
        try:
            return prim.infer(operand_types, attrs)
        except IRError as e:
            raise IRError(str(e).replace(prim.name, cls.name, 1)) from None

    body = {"name": name, "num_operands": prim.num_operands, "attributes": prim.attributes,
            "infer": classmethod(infer), "__doc__": doc}
    return register(type("T" + name.split(".")[1].title().replace("_", ""), (TensorOp,), body))


TMaxPool = _pool("tensor.max_pool", PC.MaxPool, "Max pooling (see ``prim.max_pool``).")
TMaxPoolIndex = _pool("tensor.max_pool_index", PC.MaxPoolIndex,
                      "Flat argmax indices of max pooling (``return_indices``).")
TAvgPool = _pool("tensor.avg_pool", PC.AvgPool, "Average pooling (see ``prim.avg_pool``).")
TAdaptiveAvgPool = _pool("tensor.adaptive_avg_pool", PC.AdaptiveAvgPool,
                         "Adaptive average pooling to ``output`` sizes.")
