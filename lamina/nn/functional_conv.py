"""``nn.functional``: convolution, pooling, normalisation and resampling.

Written only against the public tensor API (``import lamina``). Convolutions,
pools and normalisations are the generated kernels of ``lamina.conv2d``,
``lamina.max_pool2d``, ``lamina.batch_norm``, ...; this module gives them
``torch.nn.functional``'s signatures. ``interpolate`` is separable: along each
resized axis the input is contracted with a small (output, input) matrix of
interpolation weights built from index arithmetic (one-hot rows for
``nearest``, two weights per row for ``linear``), so its gradient is the
matrix product's.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import lamina
from lamina import Tensor

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "batch_norm", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "group_norm", "interpolate", "layer_norm",
    "max_pool1d", "max_pool1d_with_indices", "max_pool2d", "max_pool2d_with_indices",
    "max_pool3d", "max_pool3d_with_indices", "pixel_shuffle", "pixel_unshuffle", "upsample",
    "upsample_bilinear", "upsample_nearest",
]

conv1d = lamina.conv1d
conv2d = lamina.conv2d
conv3d = lamina.conv3d
conv_transpose1d = lamina.conv_transpose1d
conv_transpose2d = lamina.conv_transpose2d
conv_transpose3d = lamina.conv_transpose3d
max_pool1d = lamina.max_pool1d
max_pool2d = lamina.max_pool2d
max_pool3d = lamina.max_pool3d
max_pool1d_with_indices = lamina.max_pool1d_with_indices
max_pool2d_with_indices = lamina.max_pool2d_with_indices
max_pool3d_with_indices = lamina.max_pool3d_with_indices
avg_pool1d = lamina.avg_pool1d
avg_pool2d = lamina.avg_pool2d
avg_pool3d = lamina.avg_pool3d
adaptive_avg_pool1d = lamina.adaptive_avg_pool1d
adaptive_avg_pool2d = lamina.adaptive_avg_pool2d
adaptive_avg_pool3d = lamina.adaptive_avg_pool3d
pixel_shuffle = lamina.pixel_shuffle
pixel_unshuffle = lamina.pixel_unshuffle


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation; in training, updates the running statistics in place."""
    return lamina.batch_norm(input, weight, bias, running_mean, running_var, training, momentum,
                             eps)


def layer_norm(input: Tensor, normalized_shape: Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    return lamina.layer_norm(input, normalized_shape, weight, bias, eps)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    return lamina.group_norm(input, num_groups, weight, bias, eps)


# -- interpolation ------------------------------------------------------------------------------
_MODES = {"nearest": (1, 2, 3), "nearest-exact": (1, 2, 3), "linear": (1,), "bilinear": (2,),
          "trilinear": (3,), "area": (1, 2, 3)}


def _out_sizes(nd: int, spatial: Sequence[int], size: Any, scale_factor: Any
               ) -> tuple[list[int], list[float | None]]:
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        sizes = [size] * nd if isinstance(size, int) else list(size)
        if len(sizes) != nd:
            raise ValueError(f"Input and output must have the same number of spatial "
                             f"dimensions, but got input with spatial dimensions of "
                             f"{list(spatial)} and output size of {list(sizes)}. Please "
                             f"provide input tensor in (N, C, d1, d2, ...,dK) format and output "
                             f"size in (o1, o2, ...,oK) format.")
        return [int(s) for s in sizes], [None] * nd
    scales = [scale_factor] * nd if isinstance(scale_factor, (int, float)) else \
        list(scale_factor)
    if len(scales) != nd:
        raise ValueError(f"Input and scale_factor must have the same number of spatial "
                         f"dimensions, but got input with spatial dimensions of {list(spatial)} "
                         f"and scale_factor of shape {list(scales)}.")
    return [math.floor(float(n) * float(s)) for n, s in zip(spatial, scales)], \
        [float(s) for s in scales]


def _scale(n_in: int, n_out: int, factor: float | None, align_corners: bool) -> float:
    """PyTorch's source-index scale (``area_pixel_compute_scale``)."""
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / factor if factor is not None and factor > 0 else n_in / n_out


def _matrix(mode: str, n_in: int, n_out: int, factor: float | None,
            align_corners: bool, dtype: Any) -> Tensor:
    """The (n_out, n_in) interpolation matrix of one axis."""
    cols = lamina.arange(n_in).reshape(1, n_in)
    dst = lamina.arange(n_out, dtype=lamina.float32).reshape(n_out, 1)
    if mode in ("nearest", "nearest-exact"):
        scale = _scale(n_in, n_out, factor, False)
        src = (dst + 0.5) * scale if mode == "nearest-exact" else dst * scale
        idx = lamina.minimum(lamina.floor(src).long(), lamina.full((1,), n_in - 1))
        return (idx == cols).to(dtype)
    scale = _scale(n_in, n_out, factor, align_corners)
    src = dst * scale if align_corners else lamina.relu((dst + 0.5) * scale - 0.5)
    lo = lamina.floor(src).long()
    frac = src - lo.to(lamina.float32)
    hi = lamina.minimum(lo + 1, lamina.full((1,), n_in - 1))
    m = lamina.where(lo == cols, 1.0 - frac, 0.0) + lamina.where(hi == cols, frac, 0.0)
    return m.to(dtype)


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None,
                mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False) -> Tensor:
    """Resample the spatial axes of ``(N, C, *S)``: nearest, nearest-exact, (bi/tri)linear
    (``align_corners``) and area (adaptive average pooling)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate(): argument 'input' must be Tensor, not "
                        f"{type(input).__name__}")
    nd = input.ndim - 2
    if mode not in _MODES:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported (supported: "
                                  f"{', '.join(sorted(_MODES))})")
    if nd not in _MODES[mode]:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs "
                                  f"{_MODES[mode][0] + 2}D input")
    linear = mode in ("linear", "bilinear", "trilinear")
    if align_corners is not None and not linear:
        raise ValueError("align_corners option can only be set with the interpolating modes: "
                         "linear | bilinear | bicubic | trilinear")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    spatial = list(input.shape[2:])
    sizes, factors = _out_sizes(nd, spatial, size, scale_factor)
    if recompute_scale_factor:
        factors = [None] * nd
    if mode == "area":
        return lamina.adaptive_avg_pool1d(input, sizes) if nd == 1 else (
            lamina.adaptive_avg_pool2d(input, sizes) if nd == 2 else
            lamina.adaptive_avg_pool3d(input, sizes))
    if not input.dtype.is_floating_point:
        raise RuntimeError(f'"upsample_{mode}" not implemented for '
                           f"'{input.dtype.name.capitalize()}'")
    out = input
    for axis in reversed(range(nd)):  # last axis first: one plain matmul on the inner axis
        n_in, n_out = spatial[axis], sizes[axis]
        if n_in == n_out and factors[axis] in (None, 1.0):
            continue
        m = _matrix(mode, n_in, n_out, factors[axis], bool(align_corners), input.dtype)
        moved = out.movedim(2 + axis, -1)
        out = (moved @ m.T).movedim(-1, 2 + axis)
    return out.contiguous() if out is not input else out.clone()


def upsample(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
             align_corners: bool | None = None) -> Tensor:
    warnings.warn("nn.functional.upsample is deprecated. Use nn.functional.interpolate "
                  "instead.", UserWarning, stacklevel=2)
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: Tensor, size: Any = None, scale_factor: Any = None) -> Tensor:
    warnings.warn("nn.functional.upsample_nearest is deprecated. Use "
                  "nn.functional.interpolate instead.", UserWarning, stacklevel=2)
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: Tensor, size: Any = None, scale_factor: Any = None) -> Tensor:
    warnings.warn("nn.functional.upsample_bilinear is deprecated. Use "
                  "nn.functional.interpolate instead.", UserWarning, stacklevel=2)
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)
