"""``lamina.Tensor``: an n-d view over aligned CPU storage, or a symbolic value in a trace.

Storage is a 64-byte-aligned numpy byte array; a tensor is a numpy view of it
(shape, strides, offset), so views share storage exactly like PyTorch's and
``.numpy()`` never copies. All arithmetic goes through ``lamina.frontend.ops``,
which runs generated kernels.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Callable

import numpy as np

from lamina.frontend import dtypes as dt
from lamina.frontend.device import cpu, device


class Size(tuple):
    """``torch.Size``: a tuple of ints with PyTorch's repr."""

    def __repr__(self) -> str:
        return f"lamina.Size([{', '.join(str(d) for d in self)}])"

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n


class Tensor:
    """A tensor with PyTorch's API. Concrete (``_a`` is a numpy view) or symbolic."""

    __slots__ = ("_a", "_dtype", "_shape", "_value", "_trace", "_ag", "__weakref__")
    # numpy defers binary operators with a tensor to the tensor (np.float64(2) * t is a Tensor)
    __array_priority__ = 1000

    def __init__(self, *args: Any, **kwargs: Any):
        raise TypeError("use lamina.tensor(...), lamina.empty(...) or another factory")

    @classmethod
    def _wrap(cls, a: np.ndarray, dtype: dt.dtype | None = None) -> Tensor:
        t = object.__new__(cls)
        t._a = a
        t._dtype = dtype if dtype is not None else dt.from_numpy(a.dtype)
        t._shape = a.shape
        t._value = None
        t._trace = None
        t._ag = None
        return t

    @classmethod
    def _symbolic(cls, value: Any, trace: Any) -> Tensor:
        t = object.__new__(cls)
        t._a = None
        t._dtype = dt.from_ir(value.type.dtype)
        t._shape = tuple(value.type.shape)
        t._value = value
        t._trace = trace
        t._ag = None
        return t

    # -- metadata -------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._shape)

    def size(self, dim: int | None = None) -> Size | int:
        if dim is None:
            return Size(self._shape)
        return self._shape[_dim(dim, len(self._shape), "size")]

    @property
    def dtype(self) -> dt.dtype:
        return self._dtype

    @property
    def device(self) -> device:
        a = self._a
        if a is None:  # symbolic: the device of the traced program's inputs
            return getattr(self._trace, "device", None) or cpu
        if type(a) is np.ndarray:
            return cpu
        return device("cuda", a.device.index)

    @property
    def is_cuda(self) -> bool:
        a = self._a
        return a is not None and type(a) is not np.ndarray

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    def numel(self) -> int:
        n = 1
        for d in self._shape:
            n *= d
        return n

    def element_size(self) -> int:
        return self._dtype.itemsize

    def stride(self, dim: int | None = None) -> tuple[int, ...] | int:
        if self._a is None:
            strides, acc = [], 1
            for d in reversed(self._shape):
                strides.append(acc)
                acc *= max(d, 1)
            s = tuple(reversed(strides))
        else:
            item = self._a.itemsize
            s = tuple(x // item for x in self._a.strides)
        return s if dim is None else s[_dim(dim, len(self._shape), "stride")]

    def is_contiguous(self) -> bool:
        return self._a is None or self._a.flags.c_contiguous

    def data_ptr(self) -> int:
        a = self._concrete("data_ptr")
        return int(a.ctypes.data) if type(a) is np.ndarray else a.ptr

    def _concrete(self, what: str) -> np.ndarray:
        if self._a is None:
            raise RuntimeError(
                f"{what}() needs a concrete value, but this tensor is symbolic inside "
                "lamina.compile (data-dependent Python control flow cannot be traced)"
            )
        from lamina.frontend import trace

        tr = trace.current()
        if tr is not None:  # a value the traced step already overwrote is not known yet
            tr.check_read(self, what)
        return self._a

    # -- interop ------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A numpy view sharing memory (no copy); a CUDA tensor raises (use ``.cpu()``)."""
        a = self._concrete("numpy")
        if type(a) is not np.ndarray:
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use "
                            "Tensor.cpu() to copy the tensor to host memory first.")
        if self._dtype is dt.bfloat16:
            raise TypeError("Got unsupported ScalarType BFloat16")
        return a

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def item(self) -> bool | int | float:
        a = self._host("item")
        if a.size != 1:
            raise RuntimeError(
                f"a Tensor with {a.size} elements cannot be converted to Scalar"
            )
        return _to_python(a.reshape(()), self._dtype)

    def tolist(self) -> Any:
        if self._dtype is dt.bfloat16:
            from lamina.frontend import ops

            return ops.cast(self, dt.float32).tolist()
        return self._host("tolist").tolist()

    def _host(self, what: str) -> np.ndarray:
        """The values in host memory (a copy for a CUDA tensor)."""
        a = self._concrete(what)
        return a if type(a) is np.ndarray else a.numpy()

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._shape[0]))

    def __bool__(self) -> bool:
        n = self.numel()
        if n != 1:
            what = "no values" if n == 0 else "more than one value"
            raise RuntimeError(f"Boolean value of Tensor with {what} is ambiguous")
        return bool(self.item())

    def _one_element(self) -> bool | int | float:
        if self.numel() != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return self.item()

    def __float__(self) -> float:
        return float(self._one_element())

    def __int__(self) -> int:
        return int(self._one_element())

    def __contains__(self, element: Any) -> bool:
        """``element in t``: whether any element equals it (a tensor broadcasts)."""
        if not isinstance(element, (Tensor, bool, int, float)):
            raise RuntimeError(f"Tensor.__contains__ only supports Tensor or scalar, but you "
                               f"passed in a {type(element)}.")
        from lamina.frontend import ops

        return bool(ops.sum(ops.eq(self, element)).item() > 0)

    def __format__(self, format_spec: str) -> str:
        if self.ndim == 0 and self._a is not None:
            return self.item().__format__(format_spec)
        return object.__format__(self, format_spec)

    def nelement(self) -> int:
        return self.numel()

    def __index__(self) -> int:
        if self._dtype.category != 1 or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __hash__(self) -> int:
        return id(self)

    # -- autograd (the tape itself lives in lamina.autograd) ----------------------------
    @property
    def requires_grad(self) -> bool:
        ag = self._ag
        return ag is not None and ag.requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        ag = self._ag
        if ag is not None and ag.grad_fn is not None:
            if flag:
                return  # it already requires grad
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach().")
        flag = bool(flag)
        if flag and not self._dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point and complex dtype can require "
                               "gradients")
        if flag and ag is not None and ag.inference:
            from lamina.autograd.grad_mode import is_inference_mode_enabled

            if not is_inference_mode_enabled():
                raise RuntimeError("Setting requires_grad=True on inference tensor outside "
                                   "InferenceMode is not allowed.")
        if ag is None:
            if not flag:
                return
            ag = self._ag = AutogradMeta()
        ag.requires_grad = flag

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self) -> Tensor | None:
        ag = self._ag
        if ag is None:
            return None
        if ag.grad_fn is not None and not ag.retains_grad and ag.grad is None:
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
                "Its .grad attribute won't be populated during autograd.backward(). If you "
                "indeed want the .grad field to be populated for a non-leaf Tensor, use "
                ".retain_grad() on the non-leaf Tensor.", UserWarning, stacklevel=2)
        return ag.grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad "
                                f"of type {type(value).__name__}")
            if value._dtype is not self._dtype:
                raise RuntimeError("assigned grad has data of a different type")
            if value._shape != self._shape:
                raise RuntimeError("assigned grad has data of a different size")
        if self._ag is None:
            if value is None:
                return
            self._ag = AutogradMeta()
        self._ag.grad = value

    @property
    def grad_fn(self) -> Any:
        ag = self._ag
        return None if ag is None else ag.grad_fn

    @property
    def is_leaf(self) -> bool:
        ag = self._ag
        return ag is None or ag.grad_fn is None

    @property
    def retains_grad(self) -> bool:
        ag = self._ag
        return ag is not None and ag.grad_fn is not None and ag.retains_grad

    @property
    def output_nr(self) -> int:
        ag = self._ag
        return 0 if ag is None else ag.output_nr

    @property
    def _version(self) -> int:
        return 0 if self._a is None else storage_version(self._a)

    def is_inference(self) -> bool:
        ag = self._ag
        return ag is not None and ag.inference

    def detach(self) -> Tensor:
        """A new tensor sharing storage (and version counter) that is not in any graph."""
        if self._a is None:
            t = Tensor._symbolic(self._value, self._trace)
        else:
            t = Tensor._wrap(self._a, self._dtype)
        t._ag = AutogradMeta(inference=self.is_inference())
        t._ag.epoch = None  # a constant: later in-place histories of the storage do not apply
        return t

    @property
    def data(self) -> Tensor:
        """The values without autograd history (shares storage, like ``detach()``)."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(value).__name__}")
        self._a, self._dtype, self._shape = value._a, value._dtype, value._shape
        self._value, self._trace = value._value, value._trace

    def detach_(self) -> Tensor:
        """Make this tensor a leaf that does not require grad."""
        ag = self._ag
        if ag is not None:
            ag.grad_fn = None
            ag.output_nr = 0
            ag.requires_grad = False
        return self

    def backward(self, gradient: Tensor | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Any = None) -> None:
        """Accumulate the gradient of this tensor into the ``.grad`` of graph leaves."""
        from lamina.autograd import backward

        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Any:
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a
        replacement. Returns a handle whose ``remove()`` unregisters it."""
        from lamina.autograd.graph import register_tensor_hook

        return register_tensor_hook(self, hook)

    def retain_grad(self) -> None:
        """Populate ``.grad`` of this non-leaf tensor during backward."""
        from lamina.autograd.graph import retain_grad

        retain_grad(self)

    def __repr__(self) -> str:
        from lamina.frontend.printing import tensor_repr

        return tensor_repr(self)


class AutogradMeta:
    """A tensor's place in the autograd graph (``None`` on tensors that never had one)."""

    __slots__ = ("requires_grad", "grad", "grad_fn", "output_nr", "retains_grad", "hooks",
                 "accumulator", "inference", "is_view", "epoch")

    def __init__(self, requires_grad: bool = False, grad_fn: Any = None, output_nr: int = 0,
                 inference: bool = False):
        self.requires_grad = requires_grad
        self.grad: Tensor | None = None
        self.grad_fn = grad_fn
        self.output_nr = output_nr
        self.retains_grad = False
        self.hooks: list[Callable] | None = None  # a leaf's hooks (non-leaf: on its grad_fn)
        self.accumulator: weakref.ref | None = None  # the leaf's AccumulateGrad node
        self.inference = inference
        self.is_view = False  # shares storage with an input of its grad_fn
        # the storage's history epoch this tensor's history belongs to (None: detached,
        # never stale; see lamina.autograd.graph)
        self.epoch: int | None = 0


# -- version counters: one per storage, shared by every view of it -----------------------
# Keyed by the id of the object owning the memory (the end of the ``.base`` chain),
# created on the first in-place write; an absent entry is version 0.
_versions: dict[int, list] = {}


def storage_owner(a: np.ndarray) -> Any:
    """The object that owns ``a``'s memory: views of one storage share it."""
    o: Any = a
    b = a.base
    while b is not None:
        o = b
        b = getattr(o, "base", None)
    return o


def storage_version(a: np.ndarray) -> int:
    """How many in-place writes the storage under ``a`` has seen."""
    if not _versions:
        return 0  # nothing was ever written in place
    e = _versions.get(id(storage_owner(a)))
    return 0 if e is None else e[0]


def bump_version(a: np.ndarray) -> None:
    """Record an in-place write to the storage under ``a``."""
    o = storage_owner(a)
    e = _versions.get(id(o))
    if e is None:
        e = _versions[id(o)] = [0, None]
        try:
            weakref.finalize(o, _versions.pop, id(o), None)
        except TypeError:
            e[1] = o  # an owner without weak references stays alive: its id stays unique
    e[0] += 1


def _dim(d: int, ndim: int, what: str) -> int:
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not isinstance(d, int) or not lo <= d <= hi:
        raise IndexError(
            f"{what}: Dimension out of range (expected to be in range of [{lo}, {hi}], "
            f"but got {d})"
        )
    return d + ndim if d < 0 else d


def _to_python(a: np.ndarray, dtype: dt.dtype) -> bool | int | float:
    v = a.item()
    if dtype is dt.bfloat16:
        return float(np.array(int(v) << 16, dtype=np.uint32).view(np.float32))
    return v
