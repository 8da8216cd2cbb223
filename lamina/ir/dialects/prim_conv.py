"""Prim dialect extension: convolution and pooling primitives (shape/dtype rules).

Each of these is ``opaque``: it needs loop nests of its own (windows, tiles of
output channels), so the fuser gives it a group of its own and ``lower-loops``
calls the kernel that ``passes/lower_conv.py`` registers for it. VJP rules live
in ``passes/vjp_conv.py``, numpy references in ``backends/interp/prim_conv_impl.py``.

Layouts are PyTorch's: ``x`` is ``(N, C, *S)`` (batch, channels, ``nd`` spatial
axes); weights are ``(O, C / groups, *K)``. Per spatial axis, ``s`` is the stride,
``d`` the dilation, ``K`` the kernel size.

- ``conv`` correlates the *prepared* input ``x'``: ``x`` with ``input_dilation - 1``
  zeros between neighbours (a transposed convolution's stride), then padded by
  ``low``/``high`` zeros per spatial axis (negative amounts crop), of size
  ``S' = (S-1)*a + 1 + low + high``. ``So = (S' - (K-1)*d - 1) // s + 1`` and
  ``out[n, o, j] = sum_{c, k} x'[n, g*Cg + c, j*s + k*d] * W(o, c, k)`` where
  ``g`` is ``o``'s group and ``Cg = C / groups`` (the kernel prepares ``x'`` in a
  buffer of its own, so the correlation itself never tests bounds). With
  ``transposed`` the weight is given as ``(C, O / groups, *K)`` and used
  transposed within each group and flipped in space,
  ``W(o, c, k) = w[g*Cg + c, o - g*Og, K-1-k]``: the adjoint of a convolution with
  respect to its input, i.e. a transposed convolution.
- ``conv_weight_grad(x, g)`` is the adjoint of ``conv`` with respect to its
  weight: ``out[o, c, k] = sum_{n, j} g[n, o, j] * x'[n, g*Cg + c, j*s + k*d]``
  with ``kernel`` giving ``K`` (the sizes alone cannot); with ``transposed`` the
  result has the transposed weight layout.
- Pools work on the last ``len(window)`` axes of any tensor and take PyTorch's
  ``padding`` (symmetric, implicit) and ``ceil_mode``; windows are clipped to
  the input, so padding never needs memory. ``max_pool`` gives the window's
  maximum (NaN wins), ``max_pool_index`` its flat index in the unpadded plane
  (PyTorch's ``return_indices``), ``max_pool_grad(x, g)`` routes ``g`` to those
  positions. ``avg_pool`` divides the window sum by ``divisor`` when it is
  nonzero, else by the window size clipped to the padded input
  (``count_include_pad``) or to the input. ``adaptive_avg_pool`` averages over
  PyTorch's windows ``[floor(i*S/So), ceil((i+1)*S/So))``. The ``*_grad`` prims
  take the forward input ``x`` for its sizes only.

Float dtypes only; f16/bf16 accumulate in f32.
"""

from __future__ import annotations

from typing import Any

from lamina.ir.core import IRError, register
from lamina.ir.dialects.prim import Prim, _tensor, merge_dims
from lamina.ir.types import TensorType, i64

OPAQUE = frozenset({"pure", "opaque"})


# -- attribute checks -------------------------------------------------------------------
def _ints(v: Any, n: int, what: str, name: str, low: int) -> tuple[int, ...]:
    if (not isinstance(v, tuple) or len(v) != n
            or not all(isinstance(a, int) and not isinstance(a, bool) and a >= low for a in v)):
        raise IRError(f"{what}: {name} must be a list of {n} ints >= {low}, got {v!r}")
    return v


def _bool(v: Any, what: str, name: str) -> bool:
    if not isinstance(v, bool):
        raise IRError(f"{what}: {name} must be a bool, got {v!r}")
    return v


def _float_tensor(t: Any, what: str, role: str) -> TensorType:
    t = _tensor(t, what)
    if not t.dtype.is_float:
        raise IRError(f"{what}: {role} must be a floating tensor, got {t}")
    return t


def _spatial_rank(attrs: dict, key: str, what: str) -> int:
    v = attrs[key]
    if not isinstance(v, tuple) or not v:
        raise IRError(f"{what}: {key} must be a non-empty list, got {v!r}")
    return len(v)


def _mul(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a * b


def _div(a: int | None, b: int, what: str, message: str) -> int | None:
    if a is None:
        return None
    if a % b:
        raise IRError(f"{what}: {message}")
    return a // b


def valid_size(size: int | None, k: int | None, s: int, d: int) -> int | None:
    """Output size of a valid window of ``k`` taps, dilation ``d``, stride ``s``."""
    if size is None or k is None:
        return None
    span = (k - 1) * d + 1
    return (size - span) // s + 1 if size >= span else None


def pool_size(size: int | None, k: int, s: int, d: int, p: int, ceil: bool) -> int | None:
    """PyTorch's pooling output size (``pooling_output_shape``)."""
    if size is None:
        return None
    span = (k - 1) * d + 1
    num = size + 2 * p - span + (s - 1 if ceil else 0)
    out = num // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


# -- convolution ------------------------------------------------------------------------
_CONV_ATTRS = ("stride", "dilation", "groups", "transposed", "low", "high", "input_dilation")


def prepared_size(size: int | None, a: int, low: int, high: int) -> int | None:
    """The size of an axis after dilating it by ``a`` and padding it by ``low``/``high``."""
    return None if size is None else (size - 1) * a + 1 + low + high


class _ConvBase(Prim):
    traits = OPAQUE

    @classmethod
    def _common(cls, attrs: dict) -> tuple[int, tuple, tuple, int, bool]:
        what = cls.name
        nd = _spatial_rank(attrs, "stride", what)
        stride = _ints(attrs["stride"], nd, what, "stride", 1)
        dilation = _ints(attrs["dilation"], nd, what, "dilation", 1)
        _ints(attrs["input_dilation"], nd, what, "input_dilation", 1)
        for key in ("low", "high"):
            v = attrs[key]
            if not isinstance(v, tuple) or len(v) != nd or not all(
                    isinstance(p, int) and not isinstance(p, bool) for p in v):
                raise IRError(f"{what}: {key} must be a list of {nd} ints, got {v!r}")
        groups = attrs["groups"]
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise IRError(f"{what}: groups must be an int >= 1, got {groups!r}")
        return nd, stride, dilation, groups, _bool(attrs["transposed"], what, "transposed")

    @classmethod
    def _check_pair(cls, x: TensorType, other: TensorType, nd: int, roles: tuple[str, str]
                    ) -> None:
        what = cls.name
        for t, role in zip((x, other), roles):
            if t.rank != nd + 2:
                raise IRError(f"{what}: {role} must have rank {nd + 2} (N, C and {nd} spatial "
                              f"axes), got {t}")
        if x.dtype != other.dtype:
            raise IRError(f"{what}: dtypes differ: {roles[0]} {x} and {roles[1]} {other}")

    @classmethod
    def _prepared(cls, x: TensorType, attrs: dict) -> list[int | None]:
        """The spatial sizes of the dilated, padded input the correlation reads."""
        out = []
        for a, size in enumerate(x.shape[2:]):
            if size == 0:
                raise IRError(f"{cls.name}: input {x} has an empty spatial axis")
            out.append(prepared_size(size, attrs["input_dilation"][a], attrs["low"][a],
                                     attrs["high"][a]))
        return out


def conv_channels(x: TensorType, w: TensorType, groups: int, transposed: bool, what: str
                  ) -> int | None:
    """Output channels of ``conv``; checks the input channels against the weight."""
    cx, w0, w1 = x.shape[1], w.shape[0], w.shape[1]
    if transposed:
        merge_dims([(cx,), (w0,)], f"{what}: input channels {cx} vs weight {w}")
        _div(w0, groups, what, f"weight {w} has {w0} input channels, not divisible by "
             f"groups={groups}")
        return _mul(w1, groups)
    merge_dims([(cx,), (_mul(w1, groups),)],
               f"{what}: input {x} has {cx} channels but weight {w} with groups={groups} "
               f"expects")
    _div(w0, groups, what, f"weight {w} has {w0} output channels, not divisible by "
         f"groups={groups}")
    return w0


@register
class Conv(_ConvBase):
    """N-d correlation of the dilated, padded input (see the module docstring)."""

    name = "prim.conv"
    num_operands = 2
    attributes = _CONV_ATTRS

    @classmethod
    def infer(cls, operand_types, attrs):
        nd, stride, dilation, groups, transposed = cls._common(attrs)
        x = _float_tensor(operand_types[0], cls.name, "input")
        w = _float_tensor(operand_types[1], cls.name, "weight")
        cls._check_pair(x, w, nd, ("input", "weight"))
        channels = conv_channels(x, w, groups, transposed, cls.name)
        spatial = []
        for a, size in enumerate(cls._prepared(x, attrs)):
            k = w.shape[2 + a]
            if k == 0:
                raise IRError(f"{cls.name}: weight {w} has an empty kernel")
            if size is not None and k is not None and size < (k - 1) * dilation[a] + 1:
                raise IRError(f"{cls.name}: spatial axis {a} of input {x} (padded and dilated: "
                              f"{size}) is smaller than the dilated kernel "
                              f"({(k - 1) * dilation[a] + 1}) of weight {w}")
            spatial.append(valid_size(size, k, stride[a], dilation[a]))
        return [TensorType((x.shape[0], channels, *spatial), x.dtype)]


@register
class ConvWeightGrad(_ConvBase):
    """The weight cotangent of ``conv`` from its input and output cotangent."""

    name = "prim.conv_weight_grad"
    num_operands = 2
    attributes = (*_CONV_ATTRS, "kernel")

    @classmethod
    def infer(cls, operand_types, attrs):
        nd, stride, dilation, groups, transposed = cls._common(attrs)
        kernel = _ints(attrs["kernel"], nd, cls.name, "kernel", 1)
        x = _float_tensor(operand_types[0], cls.name, "input")
        g = _float_tensor(operand_types[1], cls.name, "output cotangent")
        cls._check_pair(x, g, nd, ("input", "output cotangent"))
        merge_dims([(x.shape[0],), (g.shape[0],)], f"{cls.name}: batch of {x} and {g}")
        cx, co = x.shape[1], g.shape[1]
        for c, role in ((cx, "input"), (co, "output")):
            _div(c, groups, cls.name, f"{role} channels {c} not divisible by groups={groups}")
        for a, size in enumerate(cls._prepared(x, attrs)):
            so = g.shape[2 + a]
            if size is not None and so is not None and so > 0 and \
                    (kernel[a] - 1) * dilation[a] + (so - 1) * stride[a] + 1 > size:
                raise IRError(f"{cls.name}: output cotangent {g} does not fit input {x} with "
                              f"kernel {list(kernel)}")
        if transposed:
            shape = (cx, _div(co, groups, cls.name, ""), *kernel)
        else:
            shape = (co, _div(cx, groups, cls.name, ""), *kernel)
        return [TensorType(shape, x.dtype)]


# -- pooling ------------------------------------------------------------------------------
class _PoolBase(Prim):
    traits = OPAQUE
    has_dilation = True

    @classmethod
    def window_attrs(cls, attrs: dict) -> tuple[tuple, tuple, tuple, tuple, bool]:
        what = cls.name
        nd = _spatial_rank(attrs, "window", what)
        window = _ints(attrs["window"], nd, what, "window", 1)
        stride = _ints(attrs["stride"], nd, what, "stride", 1)
        dilation = _ints(attrs["dilation"], nd, what, "dilation", 1) if cls.has_dilation \
            else (1,) * nd
        padding = _ints(attrs["padding"], nd, what, "padding", 0)
        for k, d, p in zip(window, dilation, padding):
            if 2 * p > (k - 1) * d + 1:
                raise IRError(f"{what}: padding {list(padding)} must be at most half of the "
                              f"(dilated) window {list(window)}")
        return window, stride, dilation, padding, _bool(attrs["ceil_mode"], what, "ceil_mode")

    @classmethod
    def out_shape(cls, x: TensorType, attrs: dict) -> tuple[int | None, ...]:
        window, stride, dilation, padding, ceil = cls.window_attrs(attrs)
        nd = len(window)
        if x.rank < nd:
            raise IRError(f"{cls.name}: input {x} has fewer than {nd} axes")
        lead = x.shape[:x.rank - nd]
        spatial = []
        for a in range(nd):
            size = x.shape[x.rank - nd + a]
            out = pool_size(size, window[a], stride[a], dilation[a], padding[a], ceil)
            if out is not None and out <= 0:
                raise IRError(f"{cls.name}: input {x} is too small for window {list(window)} "
                              f"(output size {out})")
            spatial.append(out)
        return (*lead, *spatial)


_MAX_ATTRS = ("window", "stride", "dilation", "padding", "ceil_mode")


@register
class MaxPool(_PoolBase):
    """The maximum of each window (NaN if the window holds one)."""

    name = "prim.max_pool"
    num_operands = 1
    attributes = _MAX_ATTRS

    @classmethod
    def infer(cls, operand_types, attrs):
        x = _float_tensor(operand_types[0], cls.name, "input")
        return [x.with_shape(cls.out_shape(x, attrs))]


@register
class MaxPoolIndex(_PoolBase):
    """The flat index (i64, in the unpadded window plane) of each window's maximum."""

    name = "prim.max_pool_index"
    num_operands = 1
    attributes = _MAX_ATTRS

    @classmethod
    def infer(cls, operand_types, attrs):
        x = _float_tensor(operand_types[0], cls.name, "input")
        return [TensorType(cls.out_shape(x, attrs), i64)]


def _grad_pair(cls: type[_PoolBase], operand_types: list, attrs: dict,
               shape_of) -> list[TensorType]:
    x = _float_tensor(operand_types[0], cls.name, "input")
    g = _float_tensor(operand_types[1], cls.name, "output cotangent")
    if x.dtype != g.dtype:
        raise IRError(f"{cls.name}: dtypes differ: input {x} and cotangent {g}")
    merge_dims([shape_of(x, attrs), g.shape], f"{cls.name}: cotangent {g} for input {x}")
    return [x]


@register
class MaxPoolGrad(_PoolBase):
    """``g`` added at the position of each window's maximum; zero elsewhere."""

    name = "prim.max_pool_grad"
    num_operands = 2
    attributes = _MAX_ATTRS

    @classmethod
    def infer(cls, operand_types, attrs):
        return _grad_pair(cls, operand_types, attrs, cls.out_shape)


_AVG_ATTRS = ("window", "stride", "padding", "ceil_mode", "count_include_pad", "divisor")


class _AvgBase(_PoolBase):
    has_dilation = False

    @classmethod
    def avg_attrs(cls, attrs: dict) -> tuple[bool, int]:
        _bool(attrs["count_include_pad"], cls.name, "count_include_pad")
        div = attrs["divisor"]
        if not isinstance(div, int) or isinstance(div, bool) or div < 0:
            raise IRError(f"{cls.name}: divisor must be an int >= 0 (0: the window size), "
                          f"got {div!r}")
        return attrs["count_include_pad"], div

    @classmethod
    def avg_shape(cls, x: TensorType, attrs: dict) -> tuple[int | None, ...]:
        cls.avg_attrs(attrs)
        return cls.out_shape(x, attrs)


@register
class AvgPool(_AvgBase):
    """The mean of each window (see the module docstring for the divisor)."""

    name = "prim.avg_pool"
    num_operands = 1
    attributes = _AVG_ATTRS

    @classmethod
    def infer(cls, operand_types, attrs):
        x = _float_tensor(operand_types[0], cls.name, "input")
        return [x.with_shape(cls.avg_shape(x, attrs))]


@register
class AvgPoolGrad(_AvgBase):
    """The adjoint of ``avg_pool``: each window's ``g / divisor`` added to its elements."""

    name = "prim.avg_pool_grad"
    num_operands = 2
    attributes = _AVG_ATTRS

    @classmethod
    def infer(cls, operand_types, attrs):
        return _grad_pair(cls, operand_types, attrs, cls.avg_shape)


class _AdaptiveBase(Prim):
    traits = OPAQUE

    @classmethod
    def adaptive_shape(cls, x: TensorType, attrs: dict) -> tuple[int | None, ...]:
        what = cls.name
        nd = _spatial_rank(attrs, "output", what)
        output = _ints(attrs["output"], nd, what, "output", 1)
        if x.rank < nd:
            raise IRError(f"{what}: input {x} has fewer than {nd} axes")
        for a in range(nd):
            if x.shape[x.rank - nd + a] == 0:
                raise IRError(f"{what}: input {x} has an empty spatial axis")
        return (*x.shape[:x.rank - nd], *output)


@register
class AdaptiveAvgPool(_AdaptiveBase):
    """Means over PyTorch's adaptive windows, to a fixed ``output`` size."""

    name = "prim.adaptive_avg_pool"
    num_operands = 1
    attributes = ("output",)

    @classmethod
    def infer(cls, operand_types, attrs):
        x = _float_tensor(operand_types[0], cls.name, "input")
        return [x.with_shape(cls.adaptive_shape(x, attrs))]


@register
class AdaptiveAvgPoolGrad(_AdaptiveBase):
    """The adjoint of ``adaptive_avg_pool``."""

    name = "prim.adaptive_avg_pool_grad"
    num_operands = 2
    attributes = ("output",)

    @classmethod
    def infer(cls, operand_types, attrs):
        x = _float_tensor(operand_types[0], cls.name, "input")
        g = _float_tensor(operand_types[1], cls.name, "output cotangent")
        if x.dtype != g.dtype:
            raise IRError(f"{cls.name}: dtypes differ: input {x} and cotangent {g}")
        merge_dims([cls.adaptive_shape(x, attrs), g.shape],
                   f"{cls.name}: cotangent {g} for input {x}")
        return [x]


CONV_OPS = (Conv, ConvWeightGrad, MaxPool, MaxPoolIndex, MaxPoolGrad, AvgPool, AvgPoolGrad,
            AdaptiveAvgPool, AdaptiveAvgPoolGrad)
