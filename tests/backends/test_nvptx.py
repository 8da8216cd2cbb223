"""NVPTX backend: every kind of kernel the CPU pipeline makes is emitted as PTX and
assembled by ptxas (sm_90 and sm_80). Needs no GPU; ptxas-dependent tests skip
cleanly when it is not installed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lamina
from lamina.backends import nvptx
from lamina.backends.nvptx import emit_kernel, emit_module, gpu_module, module_ptx
from lamina.ir import parse
from lamina.ir.core import IRError

needs_ptxas = pytest.mark.skipif(nvptx.ptxas_path() is None, reason="ptxas is not installed")


def _t(shape, dtype="float32", lo=-2.0, hi=2.0, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return lamina.tensor(rng.random(shape) > 0.5)
    a = rng.uniform(lo, hi, shape)
    if np.dtype(dtype if dtype != "bfloat16" else "float32").kind in "iu":
        a = np.round(a * 10)
    t = lamina.tensor(a.astype("float32" if dtype == "bfloat16" else dtype))
    return t.to(lamina.bfloat16) if dtype == "bfloat16" else t


def _loop(fn, *args):
    return lamina.compile(fn).lower(*args).stages.loop


def _assemble(loop, arch="sm_90"):
    ptx = module_ptx(loop, arch)
    assert f".target {arch}" in ptx
    n_kernels = sum(1 for g in loop.graphs if g.kind == "kernel")
    assert ptx.count(".entry ") == n_kernels
    cubin = nvptx.assemble_cubin(ptx, arch)
    assert cubin[:4] == b"\x7fELF"
    return ptx


FLOATS = ["float16", "bfloat16", "float32", "float64"]
INTS = ["int8", "int32", "int64"]

# A broad sample of graphs: (name, function, argument tensors).
CASES = [
    *[(f"ew_math_{d}", lambda x, y: ((x * y + 1).exp().tanh() + x.sin() - y.abs().sqrt()
                                     + (x / (y.abs() + 1)).log1p() + x.sigmoid() + x.erf()),
       (_t((17, 33), d), _t((17, 33), d, seed=1))) for d in FLOATS],
    *[(f"ew_pow_{d}", lambda x, y: x.abs().pow(y) + x.atan2(y) + lamina.maximum(x, y).floor(),
       (_t((5, 7), d), _t((5, 7), d, seed=2))) for d in ["float32", "float64"]],
    *[(f"ew_int_{d}", lambda x, y: (x * y - x // (y.abs() + 1) + (x % 3)).clamp(-50, 50),
       (_t((9, 13), d), _t((9, 13), d, seed=3))) for d in INTS],
    ("ew_bool", lambda x, y: lamina.where(x & ~y, 1.0, 2.0), (_t((6, 40), "bool"),
                                                           _t((6, 40), "bool", seed=4))),
    ("ew_cast", lambda x: (x.to(lamina.float16).to(lamina.int32) + 1).to(lamina.float64),
     (_t((8, 8)),)),
    ("ew_compare", lambda x, y: (x < y) | (x == y), (_t((3, 70)), _t((3, 70), seed=5))),
    ("broadcast", lambda x, y: x + y, (_t((4, 1, 6)), _t((5, 1)))),
    ("movement", lambda x: lamina.cat([x.permute(1, 0), x.flip(0).t()], 0)[1:, ::2],
     (_t((6, 10)),)),
    ("roll_narrow", lambda x: x.roll(2, 1) + lamina.cat([x.narrow(1, 3, 6), x[:, :3]], 1),
     (_t((4, 9)),)),
    ("reduce_sum", lambda x: x.sum(1) + x.mean(1), (_t((31, 129)),)),
    ("reduce_all", lambda x: x.sum(), (_t((1000,)),)),
    ("reduce_max", lambda x: x.amax(0) - x.amin(0), (_t((64, 33)),)),
    ("argmax", lambda x: x.argmax(1), (_t((10, 77)),)),
    ("reduce_f16", lambda x: x.sum(0), (_t((40, 3), "float16"),)),
    ("reduce_int", lambda x: x.sum(1), (_t((40, 3), "int32"),)),
    ("softmax", lambda x: lamina.softmax(x, 1), (_t((16, 100)),)),
    ("log_softmax", lambda x: lamina.log_softmax(x, 0), (_t((16, 10)),)),
    ("layer_norm", lambda x: lamina.layer_norm(x, (64,)), (_t((8, 64)),)),
    ("matmul_f32", lambda x, y: x @ y, (_t((33, 65)), _t((65, 17), seed=6))),
    ("matmul_f64_bias", lambda x, y, b: (x @ y + b).relu(),
     (_t((9, 8), "float64"), _t((8, 7), "float64", seed=7), _t((7,), "float64", seed=8))),
    ("matmul_f16", lambda x, y: x @ y, (_t((16, 16), "float16"), _t((16, 16), "float16", 1))),
    ("bmm", lambda x, y: lamina.bmm(x, y.transpose(1, 2)), (_t((3, 5, 6)), _t((3, 4, 6), seed=9))),
    ("conv2d", lambda x, w: lamina.conv2d(x, w, padding=1), (_t((2, 3, 8, 8)),
                                                            _t((4, 3, 3, 3), seed=10))),
    ("max_pool", lambda x: lamina.max_pool2d(x, 2), (_t((2, 3, 8, 8)),)),
    ("cumsum", lambda x: x.cumsum(1), (_t((4, 50)),)),
    ("sort", lambda x: x.sort(1)[0], (_t((4, 50)),)),
    ("index_select", lambda x, i: lamina.index_select(x, 0, i),
     (_t((10, 5)), lamina.tensor(np.array([3, 0, 9, 9], dtype=np.int64)))),
    ("gather", lambda x, i: lamina.gather(x, 1, i),
     (_t((4, 5)), lamina.tensor(np.array([[0, 4], [1, 1], [2, 3], [4, 0]], dtype=np.int64)))),
    ("arange_iota", lambda x: x + lamina.arange(12, dtype=lamina.float32), (_t((3, 12)),)),
]


@needs_ptxas
@pytest.mark.parametrize("name,fn,args", CASES, ids=[c[0] for c in CASES])
def test_every_kind_of_kernel_assembles_for_sm90(name, fn, args):
    try:
        loop = _loop(fn, *args)
    except (NotImplementedError, AttributeError, TypeError) as e:  # pragma: no cover
        pytest.skip(f"{name}: the CPU pipeline does not lower this graph here ({e})")
    _assemble(loop, "sm_90")


@needs_ptxas
@pytest.mark.parametrize("name", ["ew_math_float16", "reduce_sum", "matmul_f32", "conv2d"])
def test_sm80(name):
    _, fn, args = next(c for c in CASES if c[0] == name)
    _assemble(_loop(fn, *args), "sm_80")


@needs_ptxas
def test_eager_kernels_with_dynamic_sizes_assemble(monkeypatch):
    """Eager ops make kernels with ``?`` sizes and stride patterns: record and assemble them."""
    import lamina.runtime.program as program

    seen = []
    real = program.compile_module

    def spy(loop):
        seen.append(loop)
        return real(loop)

    monkeypatch.setattr(program, "compile_module", spy)
    # unusual shapes/dtypes so the eager kernel caches of other tests do not hide them
    x = _t((3, 1, 7), "float64", seed=11)
    y = _t((1, 5, 7), "float64", seed=12)
    (x * y - y.exp()).sum(2)
    x.expand(3, 5, 7).transpose(0, 2).tanh()
    (_t((11, 3), "int8") + 3).max()
    if not seen:
        pytest.skip("every eager kernel was already cached in this process")
    for loop in seen:
        _assemble(loop)


@needs_ptxas
@given(rows=st.integers(1, 70), cols=st.integers(1, 70),
       dtype=st.sampled_from(["float32", "float16", "int64", "float64"]))
def test_elementwise_shapes_hypothesis(rows, cols, dtype):
    x = _t((rows, cols), dtype)
    _assemble(_loop(lambda a: (a * a + a).abs() - a, x))


def test_ptx_without_ptxas_shapes():
    """PTX text needs only llvmlite: entries, thread ids, the by-value argument array."""
    x = _t((64, 33))
    loop = _loop(lambda a: a.exp() + 1, x)
    ptx = module_ptx(loop)
    assert ".visible .entry" in ptx and "%tid.x" in ptx and "%ctaid.x" in ptx
    assert ".param .align 8 .b8" in ptx  # the int64 args array passed by value
    assert ".target sm_90" in ptx
    assert ".target sm_80" in module_ptx(loop, "sm_80")


def test_bad_arch():
    x = _t((4,))
    with pytest.raises(ValueError, match="arch"):
        module_ptx(_loop(lambda a: a + 1, x), "gfx90a")


KERNEL_NO_PARALLEL = """
kernel @k(%a: memref<4xf32>, %b: memref<4xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 4} : index
  %2 = loop.const {value = 1} : index
  loop.for %0, %1, %2 (%i: index) {
    %3 = loop.load %a, %i : f32
    loop.store %3, %b, %i
  }
}
"""


def test_kernel_without_parallel_runs_on_thread_zero():
    g = parse(KERNEL_NO_PARALLEL).graphs[0]
    ir = emit_kernel(g)
    assert "define ptx_kernel void @k(ptr byval([6 x i64]) align 8 %args)" in ir
    assert "icmp eq i64" in ir  # the gid == 0 guard
    ptx = module_ptx(parse(KERNEL_NO_PARALLEL))
    if nvptx.ptxas_path() is not None:
        nvptx.assemble_cubin(ptx)


def test_emit_rejects_funcs_and_bad_kernels():
    m = parse(KERNEL_NO_PARALLEL)
    x = _t((4,))
    loop = _loop(lambda a: a + 1, x)
    func = next(g for g in loop.graphs if g.kind == "func")
    with pytest.raises(IRError, match="kernel graph"):
        emit_kernel(func)
    assert emit_module(m).count("define ptx_kernel") == 1


def test_gpu_module_does_not_change_its_input():
    x = _t((64, 33))
    loop = _loop(lambda a: a.exp(), x)
    before = str(loop)
    mapped = gpu_module(loop)
    assert str(loop) == before and "loop.gpu_parallel" in str(mapped)


# -- target="cuda" loop shapes and cooperative trips ---------------------------------------------
def _cuda_loop(fn, *args):
    return lamina.compile(fn).lower(*args, target="cuda").stages.loop


def _ce(x, t):
    return lamina.nn.functional.cross_entropy(x, t)


_LABELS = lamina.tensor(np.array([1, 0, 4, 2, 3, 3, 0, 1], dtype=np.int64))
REDUCE_DTYPES = ["float16", "bfloat16", "float32", "float64", "int8", "int32", "int64"]
COOP_CASES = [
    *[(f"reduce_{d}", lambda x: (x.sum(1), x.amax(1), x.amin(1), x.sum()), (_t((9, 70), d),))
      for d in REDUCE_DTYPES],
    *[(f"prod_{d}", lambda x: x.prod(1), (_t((5, 40), d),)) for d in ["float32", "int64"]],
    ("any_all", lambda x: (x.any(1), x.all(1)), (_t((6, 50), "bool"),)),
    ("mean_var", lambda x: (x.mean(1), x.var(1)), (_t((300, 129)),)),
    ("argmax", lambda x: x.argmax(1), (_t((10, 77)),)),
    ("softmax_f64", lambda x: lamina.softmax(x, 1), (_t((16, 100), "float64"),)),
    ("log_softmax", lambda x: lamina.log_softmax(x, 1), (_t((500, 33)),)),
    ("layer_norm", lambda x: lamina.layer_norm(x, (64,)), (_t((8, 64)),)),
    ("few_long_rows", lambda x: x.softmax(1), (_t((3, 5000)),)),
    ("full_2d", lambda x: x.sum(), (_t((40, 3000)),)),
    ("cross_entropy", lambda x: _ce(x, _LABELS), (_t((8, 5)),)),
]


@needs_ptxas
@pytest.mark.parametrize("name,fn,args", COOP_CASES, ids=[c[0] for c in COOP_CASES])
def test_cuda_target_kernels_assemble_for_sm90_and_sm80(name, fn, args):
    loop = _cuda_loop(fn, *args)
    for arch in ("sm_90", "sm_80"):
        _assemble(loop, arch)


@needs_ptxas
def test_cross_entropy_backward_assembles():
    grad = lamina.grad(lambda x: _ce(x, _LABELS))
    loop = grad.lower(_t((8, 5)), target="cuda").stages.loop
    ptx = _assemble(loop)
    assert "shfl.sync.bfly" in ptx


@needs_ptxas
@pytest.mark.parametrize("name,fn,args", CASES, ids=[c[0] for c in CASES])
def test_every_kind_of_kernel_assembles_with_target_cuda(name, fn, args):
    try:
        loop = _cuda_loop(fn, *args)
    except (NotImplementedError, AttributeError, TypeError) as e:  # pragma: no cover
        pytest.skip(f"{name}: the pipeline does not lower this graph here ({e})")
    _assemble(loop, "sm_90")


def test_warp_reduction_ptx_shapes():
    ptx = module_ptx(_cuda_loop(lambda x: x.sum(1), _t((1000, 64), "float64")))
    # a 64-bit value crosses lanes as two 32-bit halves: 5 butterfly steps each
    assert ptx.count("shfl.sync.bfly.b32") == 10
    assert ".maxntid 256" in ptx and "bar.sync" not in ptx


def test_block_reduction_ptx_shapes():
    ptx = module_ptx(_cuda_loop(lambda x: x.amax(1), _t((4, 5000))))
    assert ".shared" in ptx and "bar.sync" in ptx and ".maxntid 256" in ptx
    assert "shfl.sync.bfly" in ptx


def test_kill_switch_gives_the_old_ptx(monkeypatch):
    loop = _cuda_loop(lambda x: x.sum(1), _t((1000, 64)))
    monkeypatch.setenv("LAMINA_GPU_COOP", "0")
    ptx = module_ptx(loop)
    assert "shfl" not in ptx and ".maxntid 128" in ptx


def test_cuda_loops_carry_no_vectors():
    loop = _cuda_loop(lambda x: (x.softmax(1), x.sum(0), x.sum()), _t((33, 70)))
    assert "vector<" not in str(loop)
    with pytest.raises(ValueError, match="target"):
        lamina.compile(lambda x: x + 1).lower(_t((3,)), target="tpu")


# -- unrolled elementwise trips (gpu-map {unroll = 4}) -------------------------------------------
def _chain(a):
    return ((a * 2 + 1).relu() * a).tanh()


def _ptx_body(ptx: str) -> list[str]:
    return [line.strip() for line in ptx.splitlines() if "ld.global" in line
            or "st.global" in line]


def _ptxas_registers(ptx: str, arch: str) -> int:
    import re
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = f"{d}/k.ptx"
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([nvptx.ptxas_path(), f"-arch={arch}", "-O3", "-v", src, "-o",
                            f"{d}/k.cubin"], capture_output=True, text=True, check=True)
    text = r.stdout + r.stderr
    assert "0 bytes spill stores" in text
    return int(re.search(r"Used (\d+) registers", text).group(1))


@pytest.mark.parametrize("n", [4096, 100003])
def test_unrolled_chain_issues_its_loads_before_any_store(n):
    ptx = module_ptx(_cuda_loop(_chain, _t((n,))))
    mem = _ptx_body(ptx)
    loads = [k for k, m in enumerate(mem) if m.startswith("ld.global")]
    stores = [k for k, m in enumerate(mem) if m.startswith("st.global")]
    assert len(loads) == len(stores) == 4 and max(loads) < min(stores)
    if n % 1024 == 0:  # whole blocks of elements: no clamps, one base address + 1024 bytes
        assert "min.s64" not in ptx
        if nvptx.ptxas_path() is not None:
            assert _ptxas_registers(ptx, "sm_90") <= 32  # 2048 threads per SM
        assert [m.split()[-1] for m in mem[:4]] == ["[%rd14];", "[%rd14+1024];",
                                                      "[%rd14+2048];", "[%rd14+3072];"]


def test_unroll_kill_switch_gives_the_old_ptx(monkeypatch):
    loop = _cuda_loop(_chain, _t((4096,)))
    monkeypatch.setenv("LAMINA_GPU_UNROLL", "0")
    mem = _ptx_body(module_ptx(loop))
    assert [m.split()[0] for m in mem] == ["ld.global.b32", "st.global.b32"]


UNROLL_CASES = [
    ("chain_f32", _chain, (_t((100003,)),)),
    ("chain_f16", _chain, (_t((4097,), "float16"),)),
    ("binary_f64", lambda a, b: a * b - a.exp(), (_t((1025,), "float64"),
                                                  _t((1025,), "float64", seed=1))),
    ("int32", lambda a, b: a // (b.abs() + 1) + a % 3, (_t((1023,), "int32"),
                                                        _t((1023,), "int32", seed=2))),
    ("bool", lambda a, b: a & ~b, (_t((257,), "bool"), _t((257,), "bool", seed=3))),
    ("broadcast_strided_cast", lambda a, b, c: (a.flip(0) * b[::3] + c).half(),
     (_t((999,)), _t((2997,), seed=4), _t((), seed=5))),
]


@needs_ptxas
@pytest.mark.parametrize("name,fn,args", UNROLL_CASES, ids=[c[0] for c in UNROLL_CASES])
def test_unrolled_kernels_assemble_for_sm90_and_sm80(name, fn, args):
    loop = _cuda_loop(fn, *args)
    assert "unroll = 4" in str(gpu_module(loop))
    for arch in ("sm_90", "sm_80"):
        ptx = _assemble(loop, arch)
        if name == "chain_f32":  # no spills; <= 40 registers: >= 6 blocks of 256 per SM
            assert _ptxas_registers(ptx, arch) <= 40


@needs_ptxas
def test_unrolled_dynamic_size_kernel_assembles():
    from tests.passes.test_gpu_map import DYNAMIC

    for arch in ("sm_90", "sm_80"):
        ptx = module_ptx(parse(DYNAMIC), arch)
        assert ".maxntid 256" in ptx and ptx.count("min.s64") >= 4  # clamped loads, guards
        nvptx.assemble_cubin(ptx, arch)
