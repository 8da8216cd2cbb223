"""lower-loops with target="cuda" on contraction groups: the gpu_matmul tile loop (IR text,
tags, gpu-map's launch shape, the kill switch), its PTX through ptxas (sm_80/sm_90, no
spills), and its CPU build against numpy (any M, N, K, transposed/strided, batched,
bias + relu epilogue)."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends import nvptx
from lamina.ir import TensorType, parse, verify
from lamina.ir.types import f32, f64
from lamina.passes.lower_dot import GPU_SWITCH
from lamina.passes.lower_loops import LowerLoops
from lamina.passes.prepare_loops import PrepareLoops
from lamina.runtime import compile_program
from tests.passes.filecheck import filecheck
from tests.passes.lower_util import group, layout_of


def lower_cuda(module, layouts=None, target: str = "cuda"):
    out = PrepareLoops().run(LowerLoops(arg_layouts=layouts, target=target).run(module))
    verify(out)
    text = str(out)
    assert str(parse(text)) == text
    return out


def mm_group(batch: int = 0, lhs: str = "mk", rhs: str = "kn", epilogue: bool = False,
             dtype=f32, shapes: list[tuple[int, ...]] | None = None):
    """``[relu](x @ w [+ bias])`` over ``batch`` leading axes, all sizes ``?`` unless
    ``shapes`` gives the arguments' static shapes; ``lhs`` "km" gives x as (K, M) permuted
    inside the group, ``rhs`` "nk" contracts w's last axis."""
    nb = batch
    dyn = TensorType((None,) * (nb + 2), dtype)
    types = [dyn, dyn] + ([TensorType((None,), dtype)] if epilogue else [])
    if shapes is not None:
        types = [TensorType(tuple(sh), dtype) for sh in shapes]

    def build(b, x, w, *bias):
        if lhs == "km":
            x = b("prim.permute", x, perm=(*range(nb), nb + 1, nb))
        rc = nb + 1 if rhs == "nk" else nb
        d = b("prim.dot_general", x, w, lhs_batch=tuple(range(nb)), rhs_batch=tuple(range(nb)),
              lhs_contract=(nb + 1,), rhs_contract=(rc,))
        if not epilogue:
            return d
        shape = d.type.shape
        bb = b("prim.broadcast", bias[0], shape=shape, dims=(nb + 1,))
        zero = b("prim.broadcast", b("prim.const", value=0.0, shape=(), dtype=dtype),
                 shape=shape, dims=())
        return b("prim.max", b("prim.add", d, bb), zero)

    return group(types, build)


def tag_of(module) -> str | None:
    k = module.graphs[0]
    par = [op for op in k.ops if op.name in ("loop.parallel", "loop.gpu_parallel")]
    return par[0].attrs.get("gpu_matmul") if par else None


# -- IR -----------------------------------------------------------------------------------
def test_tile_loop_structure_and_tag():
    out = str(lower_cuda(mm_group(epilogue=True), ((None, 1), (None, 1), (1,))))
    filecheck(out, """
        CHECK: kernel @k0(
        CHECK: loop.const {value = 127} : index
        CHECK: loop.parallel
        CHECK-SAME: {gpu_matmul = "a=0 b=1 c=3 batch=0 a_axes=0,1 b_axes=0,1 tile=128x128x8"}
        CHECK: loop.for
        CHECK: loop.for
        CHECK: = loop.for
        CHECK-SAME: : f32 (
        CHECK: loop.load %in0
        CHECK: loop.load %in1
        CHECK: loop.yield
        CHECK: loop.load %in2
        CHECK: loop.add
        CHECK: loop.max
        CHECK: loop.store
        CHECK-SAME: %out
    """)
    assert "vector" not in out


@pytest.mark.parametrize("batch,lhs,rhs,expected", [
    (0, "mk", "nk", "a=0 b=1 c=2 batch=0 a_axes=0,1 b_axes=1,0"),
    (0, "km", "kn", "a=0 b=1 c=2 batch=0 a_axes=1,0 b_axes=0,1"),
    (1, "mk", "kn", "a=0 b=1 c=2 batch=1 a_axes=0,1,2 b_axes=0,1,2"),
    (2, "km", "nk", "a=0 b=1 c=2 batch=2 a_axes=0,1,3,2 b_axes=0,1,3,2"),
])
def test_tags_map_axes_of_transposed_and_batched_operands(batch, lhs, rhs, expected):
    assert tag_of(lower_cuda(mm_group(batch, lhs, rhs))) == expected + " tile=128x128x8"


def test_cpu_target_and_kill_switch_keep_the_cpu_tiles(monkeypatch):
    assert tag_of(lower_cuda(mm_group(), target="cpu")) is None
    monkeypatch.setenv(GPU_SWITCH, "0")
    out = lower_cuda(mm_group(), ((None, 1), (None, 1)))
    assert tag_of(out) is None and "vector<16xf32>" in str(out)


def test_other_dtypes_and_computed_operands_are_not_tagged():
    assert tag_of(lower_cuda(mm_group(dtype=f64))) is None
    dyn = TensorType((None, None), f32)

    def build(b, x, w):
        return b("prim.dot_general", b("prim.exp", x), w, lhs_batch=(), rhs_batch=(),
                 lhs_contract=(1,), rhs_contract=(0,))

    assert tag_of(lower_cuda(group([dyn, dyn], build))) is None


def test_gpu_map_launches_a_block_per_tile(monkeypatch):
    loop = lower_cuda(mm_group(epilogue=True))
    mapped = str(nvptx.gpu_module(loop))
    assert re.search(r"loop.gpu_parallel .*\{block = 256, gpu_matmul = \"a=0 .*\", "
                     r"lanes = 256\}", mapped), mapped
    monkeypatch.setenv(GPU_SWITCH, "0")
    assert "gpu_matmul" not in str(nvptx.gpu_module(loop))


# -- PTX ------------------------------------------------------------------------------------
needs_ptxas = pytest.mark.skipif(nvptx.ptxas_path() is None, reason="ptxas is not installed")


def ptxas_info(ptx: str, arch: str) -> str:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([nvptx.ptxas_path(), f"-arch={arch}", "-O3", "-v", src, "-o",
                            os.path.join(d, "k.cubin")], capture_output=True, text=True,
                           timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("batch,lhs,rhs,epilogue", [
    (0, "mk", "kn", True), (0, "mk", "nk", False), (0, "km", "kn", False),
    (1, "km", "nk", True),
])
def test_ptxas_assembles_without_spills(arch, batch, lhs, rhs, epilogue):
    loop = lower_cuda(mm_group(batch, lhs, rhs, epilogue))
    ptx = nvptx.module_ptx(loop, arch)
    assert ".maxntid 256" in ptx and "bar.sync" in ptx and "ld.shared.v4" in ptx
    assert ptx.count("fma.rn.f32") >= 512
    info = ptxas_info(ptx, arch)
    assert "0 bytes spill stores, 0 bytes spill loads" in info, info
    assert "bytes stack frame" in info and "0 bytes stack frame" in info, info


@needs_ptxas
def test_contiguous_operands_use_16_byte_global_loads():
    ptx = nvptx.module_ptx(lower_cuda(mm_group(), ((None, 1), (None, 1))), "sm_90")
    assert "ld.global.v4" in ptx
    assert ptx.count("fma.rn.f32") >= 512


# -- CPU build vs numpy -----------------------------------------------------------------------
SIZES = st.sampled_from([0, 1, 2, 5, 17, 33, 129])


def operand(rng, shape: tuple[int, ...], transposed: bool, strided: bool) -> np.ndarray:
    """Random float32 values of ``shape``, stored transposed (last two axes) and/or with a
    step of 2 along the last axis."""
    full = list(shape)
    if transposed:
        full[-1], full[-2] = full[-2], full[-1]
    if strided:
        full[-1] *= 2
    a = rng.standard_normal(full).astype(np.float32)
    if strided:
        a = a[..., ::2]
    return np.swapaxes(a, -1, -2) if transposed else a


@settings(max_examples=30, deadline=None)
@given(m=SIZES, n=SIZES, k=SIZES, batch=st.sampled_from([(), (2,), (1, 3)]),
       lhs=st.sampled_from(["mk", "km"]), rhs=st.sampled_from(["kn", "nk"]),
       strided=st.booleans(), epilogue=st.booleans(), seed=st.integers(0, 2**16))
def test_cpu_build_matches_numpy(m, n, k, batch, lhs, rhs, strided, epilogue, seed):
    rng = np.random.default_rng(seed)
    nb = len(batch)
    # program arguments as the group takes them: x is (.., K, M) for "km", w (.., N, K) for "nk"
    x = operand(rng, (*batch, k, m) if lhs == "km" else (*batch, m, k), False, strided)
    w = operand(rng, (*batch, n, k) if rhs == "nk" else (*batch, k, n), rhs == "nk", False)
    args = [x, w]
    if epilogue:
        args.append(rng.standard_normal(n).astype(np.float32))
    module = mm_group(nb, lhs, rhs, epilogue)
    loop = lower_cuda(module, tuple(layout_of(a) for a in args))
    assert tag_of(loop) is not None or 0 in (m, n, k)
    (got,) = compile_program(loop, "f")(*args)
    xm = np.swapaxes(x, -1, -2) if lhs == "km" else x
    wm = np.swapaxes(w, -1, -2) if rhs == "nk" else w
    want = xm.astype(np.float64) @ wm.astype(np.float64)
    if epilogue:
        want = np.maximum(want + args[2], 0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(k, 1))


@needs_ptxas
def test_kill_switch_at_map_time_and_single_static_tiles_take_the_generic_path(monkeypatch):
    """A tagged loop mapped with the switch off, and a one-tile static product (whose
    one-trip loop prepare-loops collapses), are emitted by the generic NVPTX path and
    still compute the product on the CPU build."""
    loop = lower_cuda(mm_group(epilogue=True))
    monkeypatch.setenv(GPU_SWITCH, "0")
    ptx = nvptx.module_ptx(loop, "sm_90")
    assert "bar.sync" not in ptx or "shfl" in ptx
    ptxas_info(ptx, "sm_90")
    monkeypatch.delenv(GPU_SWITCH)
    static = lower_cuda(group([TensorType((64, 48), f32), TensorType((48, 32), f32)],
                              lambda b, x, w: b("prim.dot_general", x, w, lhs_batch=(),
                                                rhs_batch=(), lhs_contract=(1,),
                                                rhs_contract=(0,))))
    assert tag_of(static) is None
    ptxas_info(nvptx.module_ptx(static, "sm_90"), "sm_90")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 48)).astype(np.float32)
    w = rng.standard_normal((48, 32)).astype(np.float32)
    (got,) = compile_program(static, "f")(x, w)
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


STATIC_CASES = [  # (batch, m, n, k, lhs, rhs, epilogue): 64x64 tiles (few big tiles) or 128
    ((), 65, 130, 17, "mk", "kn", True), ((2,), 100, 70, 33, "km", "nk", False),
    ((), 300, 200, 9, "mk", "nk", True), ((), 1030, 1100, 20, "mk", "kn", False),
]


def static_case(batch, m, n, k, lhs, rhs, epilogue, seed=0):
    """(loop module, program arguments, float64 reference) of a static-shape product."""
    rng = np.random.default_rng(seed)
    x = operand(rng, (*batch, k, m) if lhs == "km" else (*batch, m, k), False, False)
    w = operand(rng, (*batch, n, k) if rhs == "nk" else (*batch, k, n), rhs == "nk", False)
    args = [x, w] + ([rng.standard_normal(n).astype(np.float32)] if epilogue else [])
    loop = lower_cuda(mm_group(len(batch), lhs, rhs, epilogue, shapes=[a.shape for a in args]),
                      tuple(layout_of(a) for a in args))
    xm = np.swapaxes(x, -1, -2) if lhs == "km" else x
    wm = np.swapaxes(w, -1, -2) if rhs == "nk" else w
    want = xm.astype(np.float64) @ wm.astype(np.float64)
    if epilogue:
        want = np.maximum(want + args[2], 0)
    return loop, args, want


@pytest.mark.parametrize("case", STATIC_CASES)
def test_static_products_pick_the_tile_and_match_numpy(case):
    loop, args, want = static_case(*case)
    big = -(-case[1] // 128) * -(-case[2] // 128) * int(np.prod(case[0])) >= 128
    assert f"tile={128 if big else 64}x{128 if big else 64}x8" in tag_of(loop)
    (got,) = compile_program(loop, "f")(*args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * case[3])


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("case", STATIC_CASES[:3])
def test_small_tiles_assemble_without_spills(arch, case):
    ptx = nvptx.module_ptx(static_case(*case)[0], arch)
    info = ptxas_info(ptx, arch)
    assert "0 bytes spill stores, 0 bytes spill loads" in info, info
    assert "8704 bytes smem" in info, info
