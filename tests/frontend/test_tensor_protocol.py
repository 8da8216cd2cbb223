"""The Python-protocol surface of Tensor: repr in PyTorch's format, item/tolist, len and
iteration, numpy interop, comparisons with Python scalars, bool/float/int/index, ``in``,
hashing and metadata, against PyTorch when installed and fixed expectations always."""

from __future__ import annotations

import operator
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lamina
from tests.frontend.oracle import needs_torch, torch

REPRS = [
    (lambda m: m.tensor(3.0), "tensor(3.)"),
    (lambda m: m.tensor(3), "tensor(3)"),
    (lambda m: m.tensor(True), "tensor(True)"),
    (lambda m: m.tensor(-0.0), "tensor(-0.)"),
    (lambda m: m.tensor(3.25, dtype=m.float64), "tensor(3.2500, dtype=lamina.float64)"),
    (lambda m: m.zeros(0, 3), "tensor([], size=(0, 3))"),
    (lambda m: m.zeros(0), "tensor([])"),
    (lambda m: m.zeros(0, dtype=m.int64), "tensor([], dtype=lamina.int64)"),
    (lambda m: m.zeros(2, 0, dtype=m.bool), "tensor([], size=(2, 0), dtype=lamina.bool)"),
    (lambda m: m.tensor([-0.0, 0.0, 1.0]), "tensor([-0., 0., 1.])"),
    (lambda m: m.tensor([float("nan"), float("inf"), -float("inf"), 1.5]),
     "tensor([   nan,    inf,   -inf, 1.5000])"),
    (lambda m: m.tensor([float("nan"), 1.0, 2.0]), "tensor([nan, 1., 2.])"),
    (lambda m: m.tensor([2**62, -(2**63), 5]),
     "tensor([ 4611686018427387904, -9223372036854775808,                    5])"),
    (lambda m: m.tensor([1e-5, 1.0]), "tensor([1.0000e-05, 1.0000e+00])"),
    (lambda m: m.tensor([1e10, 1.0]), "tensor([1.0000e+10, 1.0000e+00])"),
    (lambda m: m.tensor([0.001, 123.456, -7.0]), "tensor([ 1.0000e-03,  1.2346e+02, -7.0000e+00])"),
    (lambda m: m.tensor([0.1, 0.2, 0.3]), "tensor([0.1000, 0.2000, 0.3000])"),
    (lambda m: m.tensor([1.0, 2.0, 300.0]), "tensor([  1.,   2., 300.])"),
    (lambda m: m.tensor([True, False]), "tensor([ True, False])"),
    (lambda m: m.tensor([1, -2], dtype=m.int8), "tensor([ 1, -2], dtype=lamina.int8)"),
    (lambda m: m.tensor([1.5, 2.25], dtype=m.float16),
     "tensor([1.5000, 2.2500], dtype=lamina.float16)"),
    (lambda m: m.arange(2000.0),
     "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
     "        1.9990e+03])"),
    (lambda m: m.arange(24.0).reshape(2, 3, 4),
     "tensor([[[ 0.,  1.,  2.,  3.],\n         [ 4.,  5.,  6.,  7.],\n"
     "         [ 8.,  9., 10., 11.]],\n\n        [[12., 13., 14., 15.],\n"
     "         [16., 17., 18., 19.],\n         [20., 21., 22., 23.]]])"),
    (lambda m: m.ones(2, requires_grad=True), "tensor([1., 1.], requires_grad=True)"),
    (lambda m: m.ones(2, requires_grad=True) * 2, "tensor([2., 2.], grad_fn=<MulBackward0>)"),
]


@pytest.mark.parametrize("make,expected", REPRS)
def test_repr_cases(make, expected):
    assert repr(make(lamina)) == expected
    if torch is not None:
        assert repr(make(torch)) == expected.replace("lamina.", "torch.")


def test_repr_summarized_int_and_rows():
    text = repr(lamina.arange(5000).reshape(50, 100))
    lines = text.split("\n")
    assert lines[0] == "tensor([[   0,    1,    2,  ...,   97,   98,   99],"
    assert lines[3] == "        ...,"
    assert lines[-1] == "        [4900, 4901, 4902,  ..., 4997, 4998, 4999]])"
    assert len(lines) == 7


def _normalized(text: str) -> str:
    # 'lamina.' is one character longer than 'torch.': a suffix may wrap in one and not the other
    text = text.replace("lamina.", "torch.")
    return re.sub(r",\s+(dtype|size|requires_grad|grad_fn)=", r", \1=", text)


DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "bool"]


@needs_torch
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12),
       dtype=st.sampled_from(DTYPES), scale=st.integers(-6, 9), kind=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_repr_matches_torch(shape, dtype, scale, kind, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * 10.0**scale
    if kind == 1:
        a = np.round(a)
    if kind == 2 and a.size:
        a.reshape(-1)[rng.integers(0, a.size)] = rng.choice([np.nan, np.inf, -np.inf, -0.0])
    if kind == 3:
        a = np.tile(a.reshape(-1)[:1] if a.size else np.zeros(1), 1100)
    if dtype in ("int64", "int32", "int8", "bool"):
        bound = {"int64": 2**62, "int32": 2**31 - 1, "int8": 127, "bool": 1}[dtype]
        a = np.clip(np.nan_to_num(np.round(a)), -bound, bound)
        a = a > 0 if dtype == "bool" else a.astype(np.int64)
    ours = lamina.tensor(a).to(getattr(lamina, dtype))
    theirs = torch.tensor(a).to(getattr(torch, dtype))
    assert _normalized(repr(ours)) == _normalized(repr(theirs))


# -- conversions to Python --------------------------------------------------------------------
def test_item_and_tolist():
    assert lamina.tensor([1.5]).item() == 1.5 and isinstance(lamina.tensor(2).item(), int)
    assert lamina.tensor(True).item() is True
    assert lamina.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert lamina.tensor(3.5).tolist() == 3.5
    assert lamina.tensor([2**62]).tolist() == [2**62]
    with pytest.raises(RuntimeError, match="2 elements cannot be converted to Scalar"):
        lamina.tensor([1, 2]).item()


def test_bool_float_int_index():
    assert bool(lamina.tensor([0])) is False and bool(lamina.tensor(1.5)) is True
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        bool(lamina.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="no values is ambiguous"):
        bool(lamina.zeros(0))
    assert float(lamina.tensor([2])) == 2.0 and int(lamina.tensor(-2.7)) == -2
    with pytest.raises(ValueError, match="only one element tensors"):
        float(lamina.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="only one element tensors"):
        int(lamina.zeros(0))
    assert operator.index(lamina.tensor(3)) == 3
    assert [10, 20, 30, 40][lamina.tensor(2)] == 30
    with pytest.raises(TypeError):
        operator.index(lamina.tensor(3.0))
    assert f"{lamina.tensor(5.5):.2f}" == "5.50" and f"{lamina.tensor(7):03d}" == "007"


def test_len_iter_contains_hash():
    x = lamina.tensor([[1, 2], [3, 4]])
    assert len(x) == 2 and [r.tolist() for r in x] == [[1, 2], [3, 4]]
    with pytest.raises(TypeError, match="0-d"):
        len(lamina.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        iter(lamina.tensor(1.0))
    assert 2 in x and 5 not in x and 4.0 in x and lamina.tensor([3, 9]) in x
    assert 1 not in lamina.zeros(0)
    with pytest.raises(RuntimeError, match="only supports Tensor or scalar"):
        "a" in x  # noqa: B015
    a, b = lamina.tensor(1), lamina.tensor(1)
    assert hash(a) != hash(b) and hash(a) == hash(a)
    assert len({a, b, a}) == 2


def test_comparisons_with_python_scalars():
    x = lamina.tensor([1.0, 2.0, 3.0])
    assert (x == 2).tolist() == [False, True, False]
    assert (x < 2.5).tolist() == [True, True, False]
    assert (2 > x).tolist() == [True, False, False]
    assert (x != 3).tolist() == [True, True, False]
    assert (x == None) is False  # noqa: E711
    assert (x != "a") is True
    assert (x == np.float32(2)).tolist() == [False, True, False]
    assert (np.int64(2) < x).tolist() == [False, False, True]
    y = np.float64(2.0) * x  # numpy defers to the tensor
    assert isinstance(y, lamina.Tensor) and y.tolist() == [2.0, 4.0, 6.0]
    assert (x * np.int64(3)).dtype is lamina.float32


def test_numpy_protocol():
    x = lamina.tensor([1, 2])
    assert np.asarray(x).dtype == np.int64
    assert np.asarray(x, dtype=np.float32).dtype == np.float32
    assert np.array(lamina.tensor([1.5])).tolist() == [1.5]
    assert np.add(lamina.tensor([1.0]), 1.0).tolist() == [2.0]
    with pytest.raises(TypeError, match="BFloat16"):
        lamina.ones(2, dtype=lamina.bfloat16).numpy()
    assert lamina.ones(2, dtype=lamina.float16).numpy().dtype == np.float16


# -- metadata --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,size", [(lamina.float32, 4), (lamina.float64, 8),
                                        (lamina.float16, 2), (lamina.bfloat16, 2),
                                        (lamina.int64, 8), (lamina.int32, 4), (lamina.int8, 1),
                                        (lamina.bool, 1)])
def test_element_size(dtype, size):
    assert lamina.ones(2, dtype=dtype).element_size() == size
    if torch is not None:
        assert torch.ones(2, dtype=getattr(torch, dtype.name)).element_size() == size


def test_sizes_and_transposes():
    x = lamina.ones(2, 3)
    assert x.nelement() == 6 and x.numel() == 6 and x.dim() == 2 and x.ndim == 2
    assert x.size(1) == 3 and x.size(-1) == 3 and x.size() == (2, 3)
    assert x.shape == (2, 3) and repr(x.shape) == "lamina.Size([2, 3])"
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.size(2)
    a = lamina.arange(6).reshape(2, 3)
    assert a.T.tolist() == [[0, 3], [1, 4], [2, 5]]
    assert lamina.arange(24).reshape(2, 3, 4).mT.shape == (2, 4, 3)
    assert lamina.arange(24).reshape(2, 3, 4).T.shape == (4, 3, 2)
    assert lamina.arange(3).T.tolist() == [0, 1, 2]
    assert x.type() == "lamina.FloatTensor"


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
       dtype=st.sampled_from([lamina.float32, lamina.int64, lamina.bool, lamina.float16]))
def test_round_trips(shape, dtype):
    a = np.random.default_rng(0).integers(-3, 4, size=shape)
    x = lamina.tensor(a).to(dtype)
    want = a.astype(np.float64).astype(dtype.numpy) if dtype is not lamina.bool else a != 0
    assert x.tolist() == want.tolist()
    assert np.array_equal(np.asarray(x), want)
    assert len(x) == shape[0] and [r.tolist() for r in x] == want.tolist()
