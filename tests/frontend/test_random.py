"""Random numbers: Philox against Random123's known answers, the generated kernels against
the numpy reference bit for bit, the Generator API, and the statistics of every sampler
(fixed seeds, so every test is deterministic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lamina
from lamina.backends.interp import run as run_prims
from lamina.backends.interp.prim_random_impl import philox4x32, random_bits
from lamina.frontend import dispatch
from lamina.ir import parse
from lamina.ir.types import i64
from lamina.passes.pipeline import lower
from lamina.runtime import compile_program

U64 = 1 << 64


# -- Philox itself -----------------------------------------------------------------------------
KAT = [  # Random123's kat_vectors for philox4x32_10: counter, key, output
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_known_answers(counter, key, expected):
    assert tuple(int(w) for w in philox4x32(counter, key)) == expected


def _scalar_philox(counter: int, key: int) -> list[int]:
    """Philox4x32-10 with Python ints, straight from the paper (an independent oracle)."""
    m = 0xFFFFFFFF
    c = [counter & m, counter >> 32 & m, 0, 0]
    k = [key & m, key >> 32 & m]
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & m, (k[1] + 0xBB67AE85) & m]
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & m, (p0 >> 32) ^ c[3] ^ k[1], p0 & m]
    return c


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_reference_layout(stride):
    key, offset = 0x0123456789ABCDEF - U64 // 2, 2**32 - 2  # counters cross 2**32
    n = 13
    per = 4 // stride
    for word in range(stride):
        got = random_bits(np.int64(key), np.int64(offset), (n,), stride, word)
        want = [_scalar_philox((offset + i // per) % U64, key % U64)[(i % per) * stride + word]
                for i in range(n)]
        assert got.tolist() == want


# -- the kernels, bit for bit ------------------------------------------------------------------
def _kernel_bits(key: int, offset: int, n: int, stride: int, word: int) -> np.ndarray:
    def build(b, k, o):
        return b("prim.random_bits", k, o, stride=stride, word=word)

    k, o = np.array(key, np.int64), np.array(offset, np.int64)
    views = [np.ndarray((n,), np.int64, buffer=a, strides=(0,)) for a in (k, o)]
    (res,) = dispatch.run_eager(("test_bits", stride, word), build, views, [i64, i64],
                                ((0,), (0,)))
    return res


@given(key=st.integers(-(2**63), 2**63 - 1), offset=st.integers(-(2**63), 2**63 - 1),
       n=st.integers(1, 67), stride=st.sampled_from([1, 2, 4]), data=st.data())
def test_kernel_matches_reference(key, offset, n, stride, data):
    word = data.draw(st.integers(0, stride - 1))
    got = _kernel_bits(key, offset, n, stride, word)
    want = random_bits(np.int64(key), np.int64(offset), (n,), stride, word)
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() < 2**32


def test_multi_axis_static_kernel_matches_interpreter():
    """The row-major linear index over several axes, with the key and offset broadcast."""
    text = """func @f(%k: tensor<i64>, %o: tensor<i64>) -> (tensor<3x5x7xi64>) {
  %0 = prim.broadcast %k {dims = [], shape = [3, 5, 7]} : tensor<3x5x7xi64>
  %1 = prim.broadcast %o {dims = [], shape = [3, 5, 7]} : tensor<3x5x7xi64>
  %2 = prim.random_bits %0, %1 {stride = 1, word = 0} : tensor<3x5x7xi64>
  %3 = prim.permute %2 {perm = [2, 0, 1]} : tensor<7x3x5xi64>
  %4 = prim.iota_like %3 {dim = 1, dtype = i64} : tensor<7x3x5xi64>
  %5 = prim.add %3, %4 : tensor<7x3x5xi64>
  %6 = prim.permute %5 {perm = [1, 2, 0]} : tensor<3x5x7xi64>
  return %6
}"""
    module = parse(text)
    k, o = np.array(987654321987, np.int64), np.array(11, np.int64)
    (interp,) = run_prims(module, k, o)
    want = random_bits(k, o, (3, 5, 7), 1, 0) + np.arange(3).reshape(3, 1, 1)
    np.testing.assert_array_equal(interp, want)
    stages = lower(module)
    (native,) = compile_program(stages.loop, "f")(k, o)
    np.testing.assert_array_equal(native, want)
    from lamina.backends.interp import run_program

    (looped,) = run_program(stages.loop, "f", k, o)
    np.testing.assert_array_equal(looped, want)


def _reference(seed: int, offset: int, n: int, stride: int) -> list[np.ndarray]:
    key = np.int64(seed - U64 if seed >= U64 // 2 else seed)
    return [random_bits(key, np.int64(offset), (n,), stride, w).astype(np.uint64)
            for w in range(stride)]


@pytest.mark.parametrize("dtype,m", [(lamina.float32, 24), (lamina.float16, 11),
                                     (lamina.bfloat16, 8)])
def test_rand_is_the_documented_transform(dtype, m):
    lamina.manual_seed(1234)
    x = lamina.rand(2, 513, dtype=dtype).float().numpy().reshape(-1)
    (w,) = _reference(1234, 0, x.size, 1)
    np.testing.assert_array_equal(x, (w >> np.uint64(32 - m)).astype(np.float64) * 2.0**-m)


def test_rand_float64_uses_53_bits():
    g = lamina.Generator().manual_seed(99)
    x = lamina.rand(1001, dtype=lamina.float64, generator=g).numpy()
    hi, lo = _reference(99, 0, x.size, 2)
    bits = ((hi >> np.uint64(11)) << np.uint64(32)) | lo
    np.testing.assert_array_equal(x, bits.astype(np.float64) * 2.0**-53)


@pytest.mark.parametrize("dtype", [lamina.float32, lamina.float64])
def test_randn_is_box_muller(dtype):
    g = lamina.Generator().manual_seed(7)
    x = lamina.randn(999, dtype=dtype, generator=g).numpy().astype(np.float64)
    if dtype is lamina.float64:
        w = _reference(7, 0, x.size, 4)
        u1 = ((((w[0] >> np.uint64(11)) << np.uint64(32)) | w[1]).astype(np.float64) + 0.5) \
            * 2.0**-53
        u2 = (((w[2] >> np.uint64(11)) << np.uint64(32)) | w[3]).astype(np.float64) * 2.0**-53
    else:
        w = _reference(7, 0, x.size, 2)
        u1 = (w[0].astype(np.float32).astype(np.float64) + 0.5) * 2.0**-32
        u2 = w[1].astype(np.float32).astype(np.float64) * 2.0**-32
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)
    if dtype is lamina.float32:  # computed in float32: a few ulps, absolute near cos = 0
        np.testing.assert_allclose(x, z, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(x, z, rtol=1e-13, atol=1e-13)


# -- the generator --------------------------------------------------------------------------
def test_manual_seed_determinism_and_independence():
    lamina.manual_seed(5)
    a = lamina.rand(100).numpy().copy()
    b = lamina.rand(100).numpy().copy()
    lamina.manual_seed(5)
    np.testing.assert_array_equal(lamina.rand(100).numpy(), a)
    assert not np.array_equal(a, b)
    g1, g2 = lamina.Generator().manual_seed(5), lamina.Generator().manual_seed(6)
    np.testing.assert_array_equal(lamina.rand(100, generator=g1).numpy(), a)
    assert not np.array_equal(lamina.rand(100, generator=g2).numpy(), a)


def test_offset_advances_by_counters():
    g = lamina.Generator().manual_seed(3)
    whole = lamina.rand(16, generator=g).numpy().copy()  # 4 counters of 4 floats
    g.manual_seed(3)
    parts = np.concatenate([lamina.rand(8, generator=g).numpy(),
                            lamina.rand(8, generator=g).numpy()])
    np.testing.assert_array_equal(parts, whole)
    g.manual_seed(3)
    lamina.rand(5, generator=g)  # 2 counters; the next draw starts at counter 2
    np.testing.assert_array_equal(lamina.rand(8, generator=g).numpy(), whole[8:])
    state = g.get_state()
    assert state.tolist() == [3, 4]
    lamina.randn(3, generator=g)  # 2 words each: 2 counters
    assert g.get_state().tolist() == [3, 6]
    lamina.randn(3, dtype=lamina.float64, generator=g)  # 4 words each: 3 counters
    assert g.get_state().tolist() == [3, 9]


def test_state_round_trip_and_seeds():
    g = lamina.Generator()
    assert g.initial_seed() == 67280421310721
    g.manual_seed(-1)
    assert g.initial_seed() == U64 - 1
    s = g.seed()
    assert 0 <= s < U64 and g.initial_seed() == s
    g.manual_seed(2**63 + 5)
    lamina.rand(3, generator=g)
    state = g.get_state()
    a = lamina.randn(10, generator=g).numpy().copy()
    g.set_state(state)
    np.testing.assert_array_equal(lamina.randn(10, generator=g).numpy(), a)
    with pytest.raises(RuntimeError, match="int64 tensor of shape"):
        g.set_state(lamina.zeros(3))
    with pytest.raises(RuntimeError, match="Overflow"):
        g.manual_seed(2**64)
    with pytest.raises(TypeError):
        g.manual_seed(1.5)
    with pytest.raises(RuntimeError, match="not available"):
        lamina.Generator("cuda")


def test_default_generator_functions():
    lamina.manual_seed(11)
    assert lamina.initial_seed() == 11 and lamina.random.initial_seed() == 11
    state = lamina.get_rng_state()
    a = lamina.rand(4).numpy().copy()
    lamina.set_rng_state(state)
    np.testing.assert_array_equal(lamina.rand(4).numpy(), a)
    with lamina.random.fork_rng():
        lamina.rand(100)
    np.testing.assert_array_equal(lamina.get_rng_state().numpy(), [11, 1])
    s = lamina.seed()
    assert lamina.initial_seed() == s
    assert lamina.manual_seed(0) is lamina.default_generator


def test_new_seeds_and_sizes_compile_nothing():
    lamina.rand(3)
    lamina.randn(3)
    before = dispatch.eager_signatures()
    for s in range(5):
        lamina.manual_seed(s)
        lamina.rand(s + 1, 7)
        lamina.randn(100 + s)
    assert dispatch.eager_signatures() == before


def test_traced_draw_equals_eager():
    def f(x):
        return x + lamina.rand(4, 3)

    x = lamina.zeros(4, 3)
    lamina.manual_seed(21)
    traced = lamina.compile(f)(x).numpy().copy()
    lamina.manual_seed(21)
    np.testing.assert_array_equal(traced, lamina.rand(4, 3).numpy())


# -- statistics ---------------------------------------------------------------------------------
def _chi2_pvalue(observed: np.ndarray, expected: np.ndarray) -> float:
    """Upper tail of the chi-square statistic (Wilson-Hilferty normal approximation)."""
    stat = float(((observed - expected) ** 2 / expected).sum())
    k = observed.size - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


@pytest.mark.parametrize("dtype", [lamina.float32, lamina.float64, lamina.float16,
                                   lamina.bfloat16])
def test_uniform_histogram(dtype):
    g = lamina.Generator().manual_seed(2024)
    x = lamina.rand(200_000, dtype=dtype, generator=g).float().numpy()
    assert x.min() >= 0 and x.max() < 1
    counts = np.histogram(x, bins=32, range=(0, 1))[0]
    assert _chi2_pvalue(counts, np.full(32, x.size / 32)) > 1e-3
    assert abs(x.mean() - 0.5) < 0.005 and abs(x.var() - 1 / 12) < 0.002


def test_uniform_bounds():
    g = lamina.Generator().manual_seed(1)
    x = lamina.empty(50_000, dtype=lamina.float64).uniform_(-3.0, 5.0, generator=g).numpy()
    assert x.min() >= -3 and x.max() < 5 and abs(x.mean() - 1) < 0.05


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


@pytest.mark.parametrize("dtype", [lamina.float32, lamina.float64, lamina.float16,
                                   lamina.bfloat16])
def test_normal_histogram(dtype):
    g = lamina.Generator().manual_seed(77)
    x = lamina.randn(200_000, dtype=dtype, generator=g).double().numpy()
    edges = np.concatenate([[-np.inf], np.linspace(-3, 3, 25), [np.inf]])
    counts = np.histogram(x, bins=edges)[0]
    probs = np.diff(_normal_cdf(edges))
    assert _chi2_pvalue(counts, probs * x.size) > 1e-3
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert np.abs(x).max() > 4  # the tails are there


def test_normal_mean_std_forms():
    g = lamina.Generator().manual_seed(3)
    x = lamina.normal(2.0, 3.0, (100_000,), generator=g).numpy()
    assert abs(x.mean() - 2) < 0.05 and abs(x.std() - 3) < 0.05
    mean = lamina.tensor([0.0, 100.0]).reshape(2, 1)
    y = lamina.normal(mean, lamina.full((1, 50_000), 0.5), generator=g).numpy()
    assert y.shape == (2, 50_000)
    assert abs(y[1].mean() - 100) < 0.02 and abs(y[0].std() - 0.5) < 0.02
    z = lamina.normal(1.0, lamina.ones(10, dtype=lamina.float64), generator=g)
    assert z.dtype is lamina.float64 and z.shape == (10,)
    w = lamina.empty(40_000).normal_(5.0, 0.1, generator=g).numpy()
    assert abs(w.mean() - 5) < 0.01
    with pytest.raises(RuntimeError, match="std >= 0"):
        lamina.normal(0.0, -1.0, (3,))
    with pytest.raises(RuntimeError, match="std >= 0"):
        lamina.normal(lamina.zeros(2), lamina.tensor([1.0, -1.0]))


@pytest.mark.parametrize("low,high", [(0, 7), (-5, 3), (0, 2**40), (-(2**62), 2**62 - 1)])
def test_randint_histogram(low, high):
    g = lamina.Generator().manual_seed(5)
    x = lamina.randint(low, high, (70_000,), generator=g)
    assert x.dtype is lamina.int64
    a = x.numpy()
    assert a.min() >= low and a.max() < high
    bins = min(high - low, 16)
    counts = np.bincount(((a - low) * bins // (high - low)).astype(np.int64), minlength=bins) \
        if high - low < 2**40 else np.histogram(a.astype(np.float64), bins=bins,
                                                range=(low, high))[0]
    assert _chi2_pvalue(counts, np.full(bins, a.size / bins)) > 1e-3


def test_randint_forms_and_dtypes():
    g = lamina.Generator().manual_seed(0)
    assert lamina.randint(3, (5,), generator=g).numpy().max() < 3
    assert lamina.randint(2, 4, size=(2, 2), generator=g).shape == (2, 2)
    x = lamina.randint(-3, 3, (100,), dtype=lamina.int8, generator=g)
    assert x.dtype is lamina.int8 and x.numpy().min() >= -3
    f = lamina.randint(0, 10, (100,), dtype=lamina.float32, generator=g).numpy()
    assert np.all(f == np.round(f))
    b = lamina.randint(0, 2, (1000,), dtype=lamina.bool, generator=g).numpy()
    assert 400 < b.sum() < 600
    like = lamina.randint_like(lamina.zeros(3, 4), 10, generator=g)
    assert like.shape == (3, 4) and like.dtype is lamina.float32
    with pytest.raises(RuntimeError, match="from=5 >= to=5"):
        lamina.randint(5, 5, (3,))
    with pytest.raises(RuntimeError, match="out of bounds"):
        lamina.randint(0, 300, (3,), dtype=lamina.int8)
    with pytest.raises(TypeError):
        lamina.randint(3)
    with pytest.raises(RuntimeError, match="too wide"):
        lamina.randint(-(2**63), 2**63 - 1, (3,))


def test_randperm_is_a_uniform_permutation():
    g = lamina.Generator().manual_seed(9)
    for n in (0, 1, 2, 17, 1000):
        p = lamina.randperm(n, generator=g)
        assert p.dtype is lamina.int64
        assert sorted(p.tolist()) == list(range(n))
    first = np.array([lamina.randperm(4, generator=g)[0].item() for _ in range(800)])
    assert _chi2_pvalue(np.bincount(first, minlength=4), np.full(4, 200.0)) > 1e-3
    assert lamina.randperm(5, dtype=lamina.int32, generator=g).dtype is lamina.int32


def test_bernoulli():
    g = lamina.Generator().manual_seed(13)
    p = lamina.tensor([0.0, 0.25, 1.0]).reshape(3, 1).expand(3, 20_000)
    x = lamina.bernoulli(p, generator=g)
    assert x.dtype is lamina.float32 and x.shape == (3, 20_000)
    m = x.numpy().mean(axis=1)
    assert m[0] == 0 and m[2] == 1 and abs(m[1] - 0.25) < 0.01
    y = lamina.empty(50_000, dtype=lamina.float64).bernoulli_(0.7, generator=g).numpy()
    assert set(np.unique(y)) <= {0.0, 1.0} and abs(y.mean() - 0.7) < 0.01
    z = lamina.zeros(10_000).bernoulli_(lamina.full((10_000,), 0.1), generator=g).numpy()
    assert abs(z.mean() - 0.1) < 0.01
    with pytest.raises(RuntimeError, match="p_in >= 0"):
        lamina.bernoulli(lamina.tensor([1.5]))
    with pytest.raises(RuntimeError, match="bernoulli_ expects p"):
        lamina.zeros(2).bernoulli_(-0.1)


def test_exponential_and_random_():
    g = lamina.Generator().manual_seed(17)
    x = lamina.empty(100_000).exponential_(2.0, generator=g).numpy()
    assert x.min() >= 0 and abs(x.mean() - 0.5) < 0.01 and abs(x.var() - 0.25) < 0.01
    y = lamina.empty(10_000, dtype=lamina.int32).random_(3, 9, generator=g).numpy()
    assert y.min() == 3 and y.max() == 8
    z = lamina.empty(1000).random_(generator=g).numpy()
    assert z.min() >= 0 and z.max() <= 2**24 and np.all(z == np.round(z))
    with pytest.raises(RuntimeError, match="lambda > 0"):
        lamina.empty(2).exponential_(0.0)


def test_multinomial():
    g = lamina.Generator().manual_seed(23)
    w = lamina.tensor([1.0, 2.0, 0.0, 7.0])
    x = lamina.multinomial(w, 20_000, replacement=True, generator=g)
    assert x.dtype is lamina.int64 and x.shape == (20_000,)
    counts = np.bincount(x.numpy(), minlength=4)
    assert counts[2] == 0
    assert _chi2_pvalue(counts[[0, 1, 3]], np.array([0.1, 0.2, 0.7]) * 20_000) > 1e-3
    rows = lamina.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 3.0]])
    y = lamina.multinomial(rows, 2, generator=g).numpy()
    assert y.shape == (2, 2) and sorted(y[0]) == [0, 1] and sorted(y[1]) == [1, 2]
    firsts = np.array([lamina.multinomial(w, 2, generator=g).tolist() for _ in range(400)])
    assert np.all(firsts[:, 0] != firsts[:, 1]) and not np.any(firsts == 2)
    # without replacement, the first draw follows the weights: 0.1, 0.2, 0.7
    first = np.bincount(firsts[:, 0], minlength=4)[[0, 1, 3]]
    assert _chi2_pvalue(first, np.array([0.1, 0.2, 0.7]) * 400) > 1e-3
    with pytest.raises(RuntimeError, match="not enough"):
        lamina.multinomial(w, 4)
    with pytest.raises(RuntimeError, match="n_sample > prob_dist"):
        lamina.multinomial(w, 5)
    with pytest.raises(RuntimeError, match="inf"):
        lamina.multinomial(lamina.tensor([1.0, -1.0]), 1)


def test_like_functions_and_errors():
    x = lamina.zeros(3, 2, dtype=lamina.float64)
    assert lamina.rand_like(x).dtype is lamina.float64 and lamina.randn_like(x).shape == (3, 2)
    with pytest.raises(RuntimeError, match="floating point"):
        lamina.rand(3, dtype=lamina.int64)
    with pytest.raises(RuntimeError, match="not available"):
        lamina.rand(3, device="cuda")
    with pytest.raises(TypeError, match="generator"):
        lamina.rand(3, generator=5)
    assert lamina.rand(0, 3).shape == (0, 3)
    assert lamina.randn(()).shape == ()
    t = lamina.rand(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf
