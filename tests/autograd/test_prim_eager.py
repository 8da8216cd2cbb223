"""TensorEmitter: each prim on concrete tensors against the prim interpreter (numpy oracle),
and the VJP rules applied to tensors directly against the tape's backward programs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina.backends.interp import prim_interp
from lamina.frontend.prim_eager import TensorEmitter
from lamina.ir import Builder, Graph, TensorType
from lamina.ir.core import Return
from lamina.ir.types import f32, f64, i1, i64
from lamina.passes.vjp_rules import VJP

RNG = np.random.default_rng(7)
E = TensorEmitter()


def interp(name: str, arrays: list[np.ndarray], **attrs) -> np.ndarray:
    """The prim interpreter's result for one prim on these arrays."""
    from lamina.ir.types import scalar_from_numpy

    g = Graph("f", [TensorType(a.shape, scalar_from_numpy(a.dtype)) for a in arrays])
    out = Builder(g.body)(name, *g.args, **attrs)
    g.body.append(Return([out], []))
    return prim_interp.run(g, *arrays)[0]


def run(name: str, arrays: list[np.ndarray], **attrs) -> np.ndarray:
    return E.prim(name, *[lamina.from_numpy(a) for a in arrays], **attrs).numpy()


def same(name: str, arrays: list[np.ndarray], **attrs) -> None:
    got = run(name, arrays, **attrs)
    want = interp(name, arrays, **attrs)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.dtype, want.dtype)
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=2e-6 if got.dtype == np.float32 else 1e-13,
                                   atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


def arr(*shape: int, dtype=np.float64, low=-2.0, high=2.0) -> np.ndarray:
    return RNG.uniform(low, high, size=shape).astype(dtype)


@pytest.mark.parametrize("fn", ["neg", "abs", "exp", "log", "sqrt", "tanh", "logistic", "sin",
                                "floor", "sign"])
def test_unary(fn: str) -> None:
    x = arr(3, 4, low=0.1) if fn in ("log", "sqrt") else arr(3, 4)
    same(f"prim.{fn}", [x])


@pytest.mark.parametrize("fn", ["add", "sub", "mul", "div", "max", "min", "pow", "lt", "eq"])
def test_binary_on_strided_operands(fn: str) -> None:
    a = arr(4, 3, low=0.5).T  # non-contiguous
    b = arr(3, 4, low=0.5)
    same(f"prim.{fn}", [a, b])


def test_where_and_cast() -> None:
    c = arr(5) > 0
    same("prim.where", [c, arr(5), arr(5)])
    same("prim.cast", [arr(2, 3)], dtype=f32)
    same("prim.cast", [arr(2, 3, low=-5, high=5)], dtype=i64)
    same("prim.cast", [arr(4)], dtype=i1)


@pytest.mark.parametrize("fn", ["sum", "prod", "max", "min"])
@pytest.mark.parametrize("axes", [(0,), (1,), (0, 2)])
def test_reductions(fn: str, axes: tuple[int, ...]) -> None:
    same(f"prim.reduce_{fn}", [arr(2, 3, 4)], axes=axes)


def test_reductions_over_empty_axes_give_the_identity() -> None:
    z = np.zeros((0, 3))
    np.testing.assert_array_equal(run("prim.reduce_sum", [z], axes=(0,)), np.zeros(3))
    np.testing.assert_array_equal(run("prim.reduce_prod", [z], axes=(0,)), np.ones(3))
    assert run("prim.reduce_sum", [np.zeros((3, 0))], axes=(0,)).shape == (0,)
    with pytest.raises(RuntimeError, match="no identity"):
        run("prim.reduce_max", [z], axes=(0,))


def test_argmax_pad_concat() -> None:
    same("prim.argmax", [arr(3, 5)], axis=1)
    same("prim.pad", [arr(2, 3)], low=(1, 0), high=(0, 2), value=0.0)
    same("prim.concat", [arr(2, 3), arr(1, 3), arr(4, 3)], axis=0)
    same("prim.concat", [arr(2, 3), np.zeros((2, 0))], axis=1)
    same("prim.pad", [np.zeros((0, 2))], low=(1, 0), high=(1, 1), value=2.0)


@pytest.mark.parametrize("spec", [
    ((3, 4), (4, 5), (), (), (1,), (0,)),          # matmul
    ((4, 3), (4, 5), (), (), (0,), (0,)),          # x.T @ y
    ((2, 3, 4), (2, 4, 5), (0,), (0,), (2,), (1,)),  # batched
    ((3, 4), (5, 4), (), (), (1,), (1,)),          # x @ y.T
    ((4,), (4,), (), (), (0,), (0,)),              # dot
])
def test_dot_general(spec) -> None:
    ls, rs, lb, rb, lc, rc = spec
    same("prim.dot_general", [arr(*ls), arr(*rs)], lhs_batch=lb, rhs_batch=rb,
         lhs_contract=lc, rhs_contract=rc)


def test_dot_general_with_empty_contraction() -> None:
    got = run("prim.dot_general", [np.zeros((2, 0)), np.zeros((0, 3))], lhs_batch=(),
              rhs_batch=(), lhs_contract=(1,), rhs_contract=(0,))
    np.testing.assert_array_equal(got, np.zeros((2, 3)))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_movement_prims_are_views(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    x = arr(*shape)
    t = lamina.from_numpy(x)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    same("prim.permute", [x], perm=perm)
    assert E.prim("prim.permute", t, perm=perm).data_ptr() == t.data_ptr()
    start = tuple(data.draw(st.integers(0, d - 1)) for d in shape)
    stop = tuple(data.draw(st.integers(s, d)) for s, d in zip(start, shape))
    step = tuple(data.draw(st.integers(1, 2)) for _ in shape)
    same("prim.slice", [x], start=start, stop=stop, step=step)
    new = (2,) + shape
    same("prim.broadcast", [x], shape=new, dims=tuple(range(1, len(new))))
    same("prim.reshape", [x], shape=(int(np.prod(shape)),))


def test_sources() -> None:
    c = E.prim("prim.const", value=1.5, shape=(2, 3), dtype=f64)
    np.testing.assert_array_equal(c.numpy(), np.full((2, 3), 1.5))
    i = E.prim("prim.iota", shape=(2, 3), dim=1, dtype=i64)
    np.testing.assert_array_equal(i.numpy(), interp("prim.iota", [], shape=(2, 3), dim=1,
                                                    dtype=i64))
    assert E.shape(c) == (2, 3) and E.dtype(c) == f64


def test_bad_operands_are_refused_before_any_kernel() -> None:
    with pytest.raises(Exception, match="prim.add"):
        E.prim("prim.add", lamina.ones(2), lamina.ones(3))
    with pytest.raises(ValueError, match="not a primitive"):
        E.prim("tensor.add", lamina.ones(2), lamina.ones(2))


def test_prims_are_recorded_when_grad_is_on() -> None:
    x = lamina.tensor([1.0, 2.0], dtype=lamina.float64).requires_grad_()
    y = E.prim("prim.mul", x, E.prim("prim.exp", x))
    assert y.requires_grad
    y.sum().backward()
    v = np.array([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), np.exp(v) * (1 + v), rtol=1e-12)
    with lamina.no_grad():
        assert not E.prim("prim.exp", x).requires_grad


@pytest.mark.parametrize("name, make", [
    ("prim.logistic", lambda: [arr(3, 2)]),
    ("prim.div", lambda: [arr(4), arr(4, low=0.5)]),
    ("prim.reduce_max", lambda: [arr(3, 4)]),
    ("prim.dot_general", lambda: [arr(3, 4), arr(4, 2)]),
])
def test_rules_applied_directly_match_the_tape(name: str, make) -> None:
    """One source of truth: the rule run on tensors gives what the tape's program gives."""
    attrs = {"prim.reduce_max": {"axes": (1,)},
             "prim.dot_general": {"lhs_batch": (), "rhs_batch": (), "lhs_contract": (1,),
                                  "rhs_contract": (0,)}}.get(name, {})
    arrays = make()
    xs = [lamina.tensor(a).requires_grad_() for a in arrays]
    y = E.prim(name, *xs, **attrs)
    g = lamina.tensor(RNG.uniform(0.5, 1.5, size=tuple(y.shape)))
    y.backward(g)
    with lamina.no_grad():
        ins = [lamina.tensor(a) for a in arrays]
        direct = VJP[name](E, attrs, ins, [E.prim(name, *ins, **attrs)], [g])
    for x, d in zip(xs, direct):
        np.testing.assert_allclose(x.grad.numpy(), d.numpy(), rtol=1e-12)
