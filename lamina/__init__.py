"""Lamina: a PyTorch-compatible deep-learning framework built as a compiler stack.

``import lamina as torch`` gives tensors whose every operation runs a kernel that
Lamina generated (LLVM IR through llvmlite), cached in memory and on disk.
"""

from lamina import autograd
from lamina.autograd import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from lamina.export import ExportedProgram, export, load_exported
from lamina.frontend import methods as _methods  # noqa: F401 - binds Tensor methods
from lamina.frontend.compile import compile
from lamina.frontend.device import device
from lamina.frontend.dtypes import (
    bfloat16,
    dtype,
    float16,
    float32,
    float64,
    int8,
    int32,
    int64,
    promote_types,
)
from lamina.frontend.dtypes import bool_ as bool  # noqa: A001 - PyTorch's name
from lamina.frontend.ops import (
    abs,
    add,
    amax,
    amin,
    arange,
    argmax,
    argmin,
    bmm,
    ceil,
    clone,
    cos,
    div,
    empty,
    empty_like,
    eq,
    erf,
    exp,
    exp2,
    expm1,
    floor,
    from_numpy,
    full,
    full_like,
    ge,
    gt,
    isnan,
    le,
    log,
    log1p,
    log2,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    lt,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mm,
    mul,
    ne,
    neg,
    ones,
    ones_like,
    pow,
    prod,
    relu,
    result_type,
    round,
    rsqrt,
    sigmoid,
    sign,
    sin,
    sqrt,
    sub,
    sum,
    tan,
    tanh,
    tensor,
    trunc,
    where,
    zeros,
    zeros_like,
)
from lamina.frontend.ops_conv import *  # noqa: F403
from lamina.frontend.ops_creation import *  # noqa: F403
from lamina.frontend.ops_index import *  # noqa: F403
from lamina.frontend.ops_linalg import *  # noqa: F403
from lamina.frontend.ops_math import *  # noqa: F403
from lamina.frontend.ops_reduce import *  # noqa: F403
from lamina.frontend.ops_shape import *  # noqa: F403
from lamina.frontend.ops_softmax import *  # noqa: F403
from lamina.frontend.tensor import Size, Tensor
from lamina.frontend.transforms import grad, value_and_grad
from lamina.frontend.views import (
    broadcast_to,
    flatten,
    permute,
    reshape,
    squeeze,
    transpose,
    unsqueeze,
)

float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001
true_divide = div
multiply = mul
subtract = sub
negative = neg
greater = gt
less = lt
greater_equal = ge
less_equal = le
not_equal = ne

from lamina import cuda, linalg, nn, optim, utils  # noqa: E402 - libraries over the API above
from lamina.serialization import load, save  # noqa: E402

__version__ = "0.1.0"
