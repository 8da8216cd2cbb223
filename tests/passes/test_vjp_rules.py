"""VJP rules: every rule against central finite differences in float64, through the autodiff
pass and the prim interpreter (then again after simplify + fuse), on random shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp import run
from lamina.ir import OPS, Builder, Graph, IRError, Module, TensorType, Value, verify
from lamina.ir.core import Return
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import ScalarType, f32, f64, i1, i32
from lamina.passes import PassManager, parse_pipeline
from lamina.passes.autodiff import Autodiff
from lamina.passes.vjp_rules import NONDIFF, VJP, IREmitter, missing_rules
from tests.passes.filecheck import func

H = 1e-5  # central-difference step (float64)

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)
seeds = st.integers(0, 2**32 - 1)


def T(*shape, dtype=f64):
    return TensorType(tuple(shape), dtype)


def _float_args(g: Graph) -> tuple[int, ...]:
    return tuple(i for i, a in enumerate(g.args) if a.type.dtype.is_float)


def _grads(m: Module, arrays: list[np.ndarray], seed: np.ndarray, wrt: tuple[int, ...],
           fused: bool) -> list[np.ndarray]:
    d = Autodiff(wrt=wrt, seed_arg=True).run(m)
    verify(d)
    if fused:
        d = PassManager(parse_pipeline("simplify,fuse")).run(d)
    out = run(d, *arrays, seed)
    n = len(m.graphs[0].returned)
    np.testing.assert_array_equal(out[0], run(m, *arrays)[0])  # the outputs are kept
    return out[n:]


def fd_check(m: Module, arrays: list[np.ndarray], rng: np.random.Generator,
             fused: bool = False, rtol: float = 1e-6, atol: float = 1e-7) -> list[np.ndarray]:
    """The pass's VJP of ``m``'s first result against directional central differences, one
    random direction per floating argument; returns the gradients."""
    g = m.graphs[0]
    wrt = _float_args(g)
    out = run(m, *arrays)[0]
    seed = rng.standard_normal(out.shape)
    grads = _grads(m, arrays, seed, wrt, fused)
    for i, grad in zip(wrt, grads):
        assert grad.shape == arrays[i].shape and grad.dtype == arrays[i].dtype
        v = rng.standard_normal(arrays[i].shape)

        def f(x: np.ndarray, i: int = i) -> float:
            args = list(arrays)
            args[i] = x
            return float(np.sum(seed * run(m, *args)[0]))

        fd = (f(arrays[i] + H * v) - f(arrays[i] - H * v)) / (2 * H)
        an = float(np.sum(grad * v))
        assert abs(fd - an) <= atol + rtol * max(abs(fd), abs(an), 1.0), (
            f"argument {i}: finite differences {fd}, vjp {an}\n{g}")
    return grads


# -- the table -------------------------------------------------------------------------------
def test_every_prim_has_a_rule_and_the_op_classes_carry_it():
    assert missing_rules() == []
    for name, rule in VJP.items():
        assert OPS[name].vjp is rule
        assert OPS[name]([], []).vjp is rule  # a plain function on instances too (staticmethod)


def test_nondiff_rules_give_none():
    m = func(lambda b, x, y: b("prim.lt", x, y), T(3), T(3))
    g = m.graphs[0]
    op = g.ops[0]
    assert "prim.lt" in NONDIFF
    e = IREmitter(Builder(g.body))
    assert VJP["prim.lt"](e, op.attrs, op.operands, op.results, [op.result]) == [None, None]
    exp = func(lambda b, x: b("prim.exp", x), T(3)).graphs[0].ops[0]
    assert VJP["prim.exp"](e, exp.attrs, exp.operands, exp.results, [None]) == [None]


class _NumpyEmitter:
    """Runs each prim on numpy arrays through the interpreter: the rules need nothing else
    than ``prim``/``shape``/``dtype`` (the eager tape's TensorEmitter is of this kind)."""

    types = {np.dtype("float64"): f64, np.dtype("float32"): f32, np.dtype("bool"): i1,
             np.dtype("int32"): i32}

    def prim(self, name, *xs, **attrs):
        m = func(lambda b, *vs: b(name, *vs, **attrs),
                 *(TensorType(x.shape, self.types[x.dtype]) for x in xs))
        return run(m, *xs)[0]

    def shape(self, x):
        return tuple(x.shape)

    def dtype(self, x) -> ScalarType:
        return self.types[x.dtype]


def test_rules_run_on_concrete_arrays():
    e = _NumpyEmitter()
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    y = np.tanh(x)
    g = np.ones_like(x)
    (gx,) = VJP["prim.tanh"](e, {}, [x], [y], [g])
    np.testing.assert_allclose(gx, 1 - np.tanh(x) ** 2)
    (gx,) = VJP["prim.reduce_sum"](e, {"axes": (1,)}, [x], [x.sum(1)], [np.array([1.0, 2.0])])
    np.testing.assert_array_equal(gx, [[1, 1, 1], [2, 2, 2]])
    w = np.arange(6.0).reshape(3, 2)
    attrs = dict(lhs_batch=(), rhs_batch=(), lhs_contract=(1,), rhs_contract=(0,))
    ga, gb = VJP["prim.dot_general"](e, attrs, [x, w], [x @ w], [np.ones((2, 2))])
    np.testing.assert_array_equal(ga, np.ones((2, 2)) @ w.T)
    np.testing.assert_array_equal(gb, x.T @ np.ones((2, 2)))
    assert VJP["prim.cast"](e, {"dtype": f64}, [np.array([1], np.int32)], [None],
                            [np.ones(1)]) == [None]


# -- elementwise -----------------------------------------------------------------------------
def _uniform(rng, shape, lo, hi):
    return rng.uniform(lo, hi, shape)


def _away_from_zero(rng, shape, lo=0.3, hi=2.0):
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


# fn -> sampler of its operand (inside the domain, away from singular points)
UNARY_DOMAIN = {
    "neg": lambda r, s: r.standard_normal(s),
    "abs": _away_from_zero,
    "exp": lambda r, s: _uniform(r, s, -2, 2),
    "exp2": lambda r, s: _uniform(r, s, -2, 2),
    "expm1": lambda r, s: _uniform(r, s, -2, 2),
    "log": lambda r, s: _uniform(r, s, 0.3, 3),
    "log2": lambda r, s: _uniform(r, s, 0.3, 3),
    "log1p": lambda r, s: _uniform(r, s, -0.7, 3),
    "sqrt": lambda r, s: _uniform(r, s, 0.3, 3),
    "rsqrt": lambda r, s: _uniform(r, s, 0.3, 3),
    "sin": lambda r, s: _uniform(r, s, -4, 4),
    "cos": lambda r, s: _uniform(r, s, -4, 4),
    "tan": lambda r, s: _uniform(r, s, -1.2, 1.2),
    "tanh": lambda r, s: _uniform(r, s, -3, 3),
    "logistic": lambda r, s: _uniform(r, s, -4, 4),
    "erf": lambda r, s: _uniform(r, s, -2, 2),
    "erfinv": lambda r, s: _uniform(r, s, -0.9, 0.9),
}
# zero derivative almost everywhere; sampled away from the jumps
def _between_integers(lo: float, hi: float):
    return lambda r, s: r.integers(-3, 3, s) + _uniform(r, s, lo, hi)


STEPS = {"sign": _away_from_zero, "floor": _between_integers(0.1, 0.9),
         "ceil": _between_integers(0.1, 0.9), "round": _between_integers(0.6, 1.4),
         "trunc": _between_integers(0.1, 0.9)}


def test_every_float_unary_function_is_covered():
    floats = {f for f, k in ew.UNARY.items() if k in ("float", "num")} - {"isnan"}
    assert floats == set(UNARY_DOMAIN) | set(STEPS)


@pytest.mark.parametrize("fn", sorted(UNARY_DOMAIN))
@settings(max_examples=10)
@given(shape=shapes, seed=seeds)
def test_unary(fn, shape, seed):
    rng = np.random.default_rng(seed)
    m = func(lambda b, x: b(f"prim.{fn}", x), T(*shape))
    fd_check(m, [UNARY_DOMAIN[fn](rng, shape)], rng, fused=seed % 2 == 0)


@pytest.mark.parametrize("fn", sorted(STEPS))
@settings(max_examples=5)
@given(shape=shapes, seed=seeds)
def test_zero_derivative_functions(fn, shape, seed):
    rng = np.random.default_rng(seed)
    m = func(lambda b, x: b(f"prim.{fn}", x), T(*shape))
    (g,) = fd_check(m, [STEPS[fn](rng, shape)], rng)
    np.testing.assert_array_equal(g, np.zeros(shape))


def _binary_args(fn, rng, shape):
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    if fn == "div":
        b = _away_from_zero(rng, shape)
    elif fn == "rem":  # keep a / b away from integers, where fmod jumps
        b = _away_from_zero(rng, shape, 0.5, 2.0)
        a = b * (rng.integers(-3, 3, shape) + _uniform(rng, shape, 0.1, 0.9))
    elif fn == "pow":
        a, b = _uniform(rng, shape, 0.3, 2.0), _uniform(rng, shape, -2.0, 2.0)
    elif fn in ("max", "min"):  # no ties
        b = a + _away_from_zero(rng, shape, 0.1, 1.0)
    elif fn == "atan2":
        a = _away_from_zero(rng, shape)
    return [a, b]


@pytest.mark.parametrize("fn", ["add", "sub", "mul", "div", "rem", "pow", "max", "min", "atan2"])
@settings(max_examples=12)
@given(shape=shapes, seed=seeds, same=st.booleans())
def test_binary(fn, shape, seed, same):
    rng = np.random.default_rng(seed)
    if same and fn not in ("rem", "max", "min", "atan2"):  # f(x, x): contributions add up
        m = func(lambda b, x: b(f"prim.{fn}", x, x), T(*shape))
        fd_check(m, _binary_args(fn, rng, shape)[:1], rng)
        return
    m = func(lambda b, x, y: b(f"prim.{fn}", x, y), T(*shape), T(*shape))
    fd_check(m, _binary_args(fn, rng, shape), rng, fused=seed % 2 == 0)


def _vjp(m, arrays, seed):
    return _grads(m, arrays, seed, _float_args(m.graphs[0]), fused=False)


def test_max_min_split_ties_evenly_like_torch_maximum():
    a = np.array([1.0, 2.0, 3.0, -0.5])
    b = np.array([1.0, 5.0, 0.0, -0.5])
    s = np.array([2.0, 3.0, 4.0, 6.0])
    ga, gb = _vjp(func(lambda bl, x, y: bl("prim.max", x, y), T(4), T(4)), [a, b], s)
    np.testing.assert_array_equal(ga, [1.0, 0.0, 4.0, 3.0])
    np.testing.assert_array_equal(gb, [1.0, 3.0, 0.0, 3.0])
    ga, gb = _vjp(func(lambda bl, x, y: bl("prim.min", x, y), T(4), T(4)), [a, b], s)
    np.testing.assert_array_equal(ga, [1.0, 3.0, 0.0, 3.0])
    np.testing.assert_array_equal(gb, [1.0, 0.0, 4.0, 3.0])


def test_pow_masks_like_torch():
    # base 0 with exponent >= 0: no exponent gradient (log 0); exponent 0: no base gradient
    a = np.array([0.0, 0.0, 2.0, 0.0])
    b = np.array([2.0, 0.0, 0.0, 1.0])
    ga, gb = _vjp(func(lambda bl, x, y: bl("prim.pow", x, y), T(4), T(4)), [a, b], np.ones(4))
    np.testing.assert_array_equal(ga, [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(gb, [0.0, 0.0, math.log(2.0), 0.0])


@settings(max_examples=25)
@given(shape=shapes, seed=seeds)
def test_where(shape, seed):
    rng = np.random.default_rng(seed)
    m = func(lambda b, c, x, y: b("prim.where", c, x, y), T(*shape, dtype=i1), T(*shape),
             T(*shape))
    c = rng.random(shape) < 0.5
    s = rng.standard_normal(shape)
    gx, gy = _vjp(m, [c, rng.standard_normal(shape), rng.standard_normal(shape)], s)
    np.testing.assert_array_equal(gx, np.where(c, s, 0.0))
    np.testing.assert_array_equal(gy, np.where(c, 0.0, s))


@pytest.mark.parametrize("src,dst", [(f64, f32), (f32, f64), (f64, f64)])
def test_cast_casts_the_cotangent_back(src, dst):
    m = func(lambda b, x: b("prim.cast", x, dtype=dst), T(2, 3, dtype=src))
    x = np.arange(6.0).reshape(2, 3).astype(src.numpy)
    s = (np.arange(6.0).reshape(2, 3) / 7).astype(dst.numpy)
    (g,) = _vjp(m, [x], s)
    assert g.dtype == src.numpy
    np.testing.assert_array_equal(g, s.astype(src.numpy))


def test_integer_operands_get_no_cotangent():
    # cast from i32, and an i1 condition: only the float arguments are differentiated
    m = func(lambda b, n, x: b("prim.mul", b("prim.cast", n, dtype=f64), x),
             T(3, dtype=i32), T(3))
    (g,) = _grads(m, [np.array([1, 2, 3], np.int32), np.ones(3)], np.ones(3), (1,), False)
    np.testing.assert_array_equal(g, [1.0, 2.0, 3.0])
    with pytest.raises(IRError, match="argument 0 .* only floating"):
        Autodiff(wrt=(0,), seed_arg=True).run(m)


# -- reductions ------------------------------------------------------------------------------
@st.composite
def shape_and_axes(draw, min_rank=0):
    shape = draw(st.lists(st.integers(1, 3), min_size=min_rank, max_size=3).map(tuple))
    axes = draw(st.lists(st.sampled_from(range(len(shape))), unique=True)
                if shape else st.just([]))
    return shape, tuple(sorted(axes))


@pytest.mark.parametrize("fn", ["sum", "prod", "max", "min"])
@settings(max_examples=20)
@given(sa=shape_and_axes(), seed=seeds)
def test_reduce(fn, sa, seed):
    shape, axes = sa
    rng = np.random.default_rng(seed)
    m = func(lambda b, x: b(f"prim.reduce_{fn}", x, axes=axes), T(*shape))
    x = _away_from_zero(rng, shape, 0.5, 1.5)
    fd_check(m, [x], rng, fused=seed % 2 == 0)


def test_reduce_prod_with_zeros_is_exact():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, 2.0, 4.0]])
    m = func(lambda b, v: b("prim.reduce_prod", v, axes=(1,)), T(3, 3))
    (g,) = _vjp(m, [x], np.array([1.0, 1.0, 2.0]))
    np.testing.assert_array_equal(g, [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [16.0, 12.0, 6.0]])
    fd_check(m, [x], np.random.default_rng(0))  # prod is multilinear: differences are exact


def test_reduce_max_min_split_ties_like_torch_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [-1.0, 0.0, -4.0]])
    s = np.array([6.0, 3.0, 1.0])
    (g,) = _vjp(func(lambda b, v: b("prim.reduce_max", v, axes=(1,)), T(3, 3)), [x], s)
    np.testing.assert_array_equal(g, [[0, 3, 3], [1, 1, 1], [0, 1, 0]])
    (g,) = _vjp(func(lambda b, v: b("prim.reduce_min", v, axes=(0, 1)), T(3, 3)), [x],
                np.array(2.0))
    np.testing.assert_array_equal(g, [[0, 0, 0], [0, 0, 0], [0, 0, 2]])


# -- movement --------------------------------------------------------------------------------
@settings(max_examples=25)
@given(shape=shapes, seed=seeds)
def test_reshape_and_permute(shape, seed):
    rng = np.random.default_rng(seed)
    perm = tuple(int(p) for p in rng.permutation(len(shape)))
    n = math.prod(shape)
    m = func(lambda b, x: b("prim.reshape", b("prim.permute", x, perm=perm), shape=(n, 1)),
             T(*shape))
    fd_check(m, [rng.standard_normal(shape)], rng, fused=seed % 2 == 0)


@st.composite
def broadcasts(draw):
    """(operand shape, result shape, dims): new axes anywhere, size-1 axes stretched."""
    out = draw(st.lists(st.integers(1, 3), min_size=0, max_size=4).map(tuple))
    dims = tuple(sorted(draw(st.lists(st.sampled_from(range(len(out))), unique=True))
                        if out else []))
    src = tuple(draw(st.sampled_from([1, out[d]])) for d in dims)
    return src, out, dims


@settings(max_examples=40)
@given(bc=broadcasts(), seed=seeds)
def test_broadcast(bc, seed):
    src, out, dims = bc
    rng = np.random.default_rng(seed)
    m = func(lambda b, x: b("prim.broadcast", x, shape=out, dims=dims), T(*src))
    fd_check(m, [rng.standard_normal(src)], rng, fused=seed % 2 == 0)


@st.composite
def slices(draw):
    shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple))
    start, stop, step = [], [], []
    for d in shape:
        a = draw(st.integers(0, d))
        start.append(a)
        stop.append(draw(st.integers(a, d)))
        step.append(draw(st.integers(1, 4)))
    return shape, tuple(start), tuple(stop), tuple(step)


@settings(max_examples=50)
@given(sl=slices(), seed=seeds)
def test_slice(sl, seed):
    shape, start, stop, step = sl
    rng = np.random.default_rng(seed)
    m = func(lambda b, x: b("prim.slice", x, start=start, stop=stop, step=step), T(*shape))
    x = rng.standard_normal(shape)
    out = run(m, x)[0]
    s = rng.standard_normal(out.shape)
    (g,) = _vjp(m, [x], s)
    want = np.zeros(shape)
    want[tuple(slice(a, b, c) for a, b, c in zip(start, stop, step))] = s
    np.testing.assert_array_equal(g, want)
    fd_check(m, [x], rng, fused=True)


@settings(max_examples=25)
@given(shape=shapes, seed=seeds, data=st.data())
def test_pad(shape, seed, data):
    low = tuple(data.draw(st.integers(0, 2)) for _ in shape)
    high = tuple(data.draw(st.integers(0, 2)) for _ in shape)
    rng = np.random.default_rng(seed)
    m = func(lambda b, x: b("prim.pad", x, low=low, high=high, value=1.5), T(*shape))
    fd_check(m, [rng.standard_normal(shape)], rng, fused=seed % 2 == 0)


@settings(max_examples=25)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), seed=seeds,
       data=st.data())
def test_concat(shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    types = [T(*(shape[:axis] + (n,) + shape[axis + 1:])) for n in sizes]
    rng = np.random.default_rng(seed)
    m = func(lambda b, *xs: b("prim.concat", *xs, axis=axis), *types)
    fd_check(m, [rng.standard_normal(t.shape) for t in types], rng, fused=seed % 2 == 0)


# -- contraction -----------------------------------------------------------------------------
@st.composite
def dot_generals(draw):
    """Operand shapes and dims of a dot_general with batch, contracted and free axes of both
    sides placed anywhere."""
    nb, nc, nl, nr = (draw(st.integers(0, 2)) for _ in range(4))
    size = st.integers(1, 3)
    batch = [draw(size) for _ in range(nb)]
    contract = [draw(size) for _ in range(nc)]
    lpos = draw(st.permutations(range(nb + nc + nl)))
    rpos = draw(st.permutations(range(nb + nc + nr)))
    lshape = [0] * len(lpos)
    rshape = [0] * len(rpos)
    for k, n in enumerate(batch + contract + [draw(size) for _ in range(nl)]):
        lshape[lpos[k]] = n
    for k, n in enumerate(batch + contract + [draw(size) for _ in range(nr)]):
        rshape[rpos[k]] = n
    attrs = dict(lhs_batch=tuple(lpos[:nb]), rhs_batch=tuple(rpos[:nb]),
                 lhs_contract=tuple(lpos[nb:nb + nc]), rhs_contract=tuple(rpos[nb:nb + nc]))
    return tuple(lshape), tuple(rshape), attrs


@settings(max_examples=50)
@given(dg=dot_generals(), seed=seeds, same=st.booleans())
def test_dot_general(dg, seed, same):
    lshape, rshape, attrs = dg
    rng = np.random.default_rng(seed)
    if same and lshape == rshape:  # x . x: both cotangents add up
        m = func(lambda b, x: b("prim.dot_general", x, x, **attrs), T(*lshape))
        fd_check(m, [rng.standard_normal(lshape)], rng)
        return
    m = func(lambda b, x, y: b("prim.dot_general", x, y, **attrs), T(*lshape), T(*rshape))
    fd_check(m, [rng.standard_normal(lshape), rng.standard_normal(rshape)], rng,
             fused=seed % 2 == 0)


def test_matmul_cotangents_need_no_permute():
    m = func(lambda b, x, y: b("prim.dot_general", x, y, lhs_batch=(), rhs_batch=(),
                               lhs_contract=(1,), rhs_contract=(0,)), T(4, 3), T(3, 2))
    text = str(Autodiff(wrt=(0, 1), seed_arg=True).run(m))
    assert "prim.permute" not in text, text


# -- composites ------------------------------------------------------------------------------
def _chain(b: Builder, x: Value, w: Value) -> Value:
    """log-softmax over axis 1 of tanh(x) @ w, as decompose writes it."""
    h = b("prim.dot_general", b("prim.tanh", x), w, lhs_batch=(), rhs_batch=(),
          lhs_contract=(1,), rhs_contract=(0,))
    t = h.type
    mx = b("prim.reduce_max", h, axes=(1,))
    z = b("prim.sub", h, b("prim.broadcast", mx, shape=t.shape, dims=(0,)))
    s = b("prim.reduce_sum", b("prim.exp", z), axes=(1,))
    return b("prim.sub", z, b("prim.broadcast", b("prim.log", s), shape=t.shape, dims=(0,)))


@settings(max_examples=20)
@given(seed=seeds)
def test_composite_log_softmax(seed):
    rng = np.random.default_rng(seed)
    m = func(_chain, T(3, 4), T(4, 5))
    fd_check(m, [rng.standard_normal((3, 4)), rng.standard_normal((4, 5))], rng,
             fused=seed % 2 == 0)


def test_rule_type_errors_name_the_op():
    g = Graph("f", [T(3)], ["x"])
    b = Builder(g.body)
    y = b("prim.exp", g.args[0])
    g.body.append(Return([b("prim.reduce_sum", y, axes=(0,))], []))
    exp_rule = VJP["prim.exp"]
    try:
        VJP["prim.exp"] = lambda e, attrs, ins, outs, cts, wanted=None: [
            e.prim("prim.cast", cts[0], dtype=f32)]
        with pytest.raises(IRError, match="prim.exp gives a cotangent of type"):
            Autodiff().run(Module([g]))
    finally:
        VJP["prim.exp"] = exp_rule
