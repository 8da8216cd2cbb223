"""The C-ABI driver: kernels + driver linked into a .so by ``cc``, called via ctypes, vs numpy."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina.backends.llvm.driver import build_object, header_text
from lamina.frontend.compile import CompiledFunction, _contiguous_array
from lamina.passes.pipeline import lower

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


def _library(fn, inputs, tmp: Path, name: str = "fn"):
    cf = CompiledFunction(fn, name)
    module, captured, _ = cf._trace(tuple(inputs))
    obj, sig = build_object(lower(module).loop, cf.name, [_contiguous_array(t) for t in captured],
                            cf.name)
    o, so = tmp / f"{name}.o", tmp / f"lib{name}.so"
    o.write_bytes(obj)
    subprocess.run(["cc", "-shared", "-o", str(so), str(o), "-lm"], check=True)
    return ctypes.CDLL(str(so)), sig


def _call(lib, sig, arrays):
    outs = [np.full(p.shape, np.nan if p.dtype.startswith("f") else 7,
                    dtype=lamina.frontend.dtypes._NAMES[_NAME[p.dtype]].numpy)
            for p in sig.outputs]
    fn = getattr(lib, sig.symbol)
    fn.restype = ctypes.c_int32
    ptrs = [a.ctypes.data_as(ctypes.c_void_p) for a in arrays + outs]
    assert fn(*ptrs) == 0
    return outs


_NAME = {"f32": "float32", "f64": "float64", "i32": "int32", "i64": "int64", "i1": "bool"}


@needs_cc
@settings(max_examples=8, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_elementwise_matches_numpy(tmp_path_factory, shape, dtype):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    lib, sig = _library(lambda x, y: lamina.relu(x * 1.5 - y), [lamina.from_numpy(a),
                        lamina.from_numpy(b)], tmp_path_factory.mktemp("ew"))
    (out,) = _call(lib, sig, [a, b])
    np.testing.assert_allclose(out, np.maximum(a * 1.5 - b, 0), rtol=1e-6)


@needs_cc
def test_mlp_weights_embedded_and_intermediates(tmp_path):
    lamina.manual_seed(1)
    net = lamina.nn.Sequential(lamina.nn.Linear(20, 33), lamina.nn.ReLU(),
                               lamina.nn.Linear(33, 5), lamina.nn.Softmax(1))
    x = np.random.default_rng(2).standard_normal((3, 20)).astype(np.float32)
    lib, sig = _library(net, [lamina.from_numpy(x)], tmp_path, "mlp")
    (out,) = _call(lib, sig, [x])
    w1, b1, w2, b2 = (p.detach().numpy() for p in net.parameters())
    h = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    ref = np.exp(h - h.max(1, keepdims=True))
    np.testing.assert_allclose(out, ref / ref.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


@needs_cc
def test_several_outputs_including_an_input_and_a_reduction(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    lib, sig = _library(lambda x: (x, x.sum(1), lamina.argmax(x * -1.0, 1), x + 1.0),
                        [lamina.from_numpy(a)], tmp_path, "multi")
    assert [p.shape for p in sig.outputs] == [(3, 4), (3,), (3,), (3, 4)]
    same, s, am, plus = _call(lib, sig, [a])
    np.testing.assert_array_equal(same, a)
    np.testing.assert_allclose(s, a.sum(1))
    np.testing.assert_array_equal(am, np.argmax(-a, 1))
    np.testing.assert_array_equal(plus, a + 1)


@needs_cc
def test_null_pointer_returns_2_and_header_is_valid_c(tmp_path):
    a = np.ones((2, 2), np.float32)
    lib, sig = _library(lambda x: x * 2.0, [lamina.from_numpy(a)], tmp_path, "twice")
    fn = lib.twice
    fn.restype = ctypes.c_int32
    assert fn(None, a.ctypes.data_as(ctypes.c_void_p)) == 2
    h = tmp_path / "twice.h"
    h.write_text(header_text(sig))
    c = tmp_path / "use.c"
    c.write_text('#include "twice.h"\nint main(void) { float x[TWICE_IN0_SIZE] = {1, 2, 3, 4};'
                 ' float y[TWICE_OUT0_SIZE]; return twice(x, y) || y[3] != 8.0f; }\n')
    exe = tmp_path / "use"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", f"-I{tmp_path}", str(c),
                    str(tmp_path / "libtwice.so"), f"-Wl,-rpath,{tmp_path}", "-o", str(exe)],
                   check=True)
    assert subprocess.run([str(exe)]).returncode == 0


def test_kernels_are_internal_only_driver_exported(tmp_path):
    cf = CompiledFunction(lambda x: lamina.exp(x) + 1.0, "expo")
    module, _, _ = cf._trace((lamina.ones(4),))
    obj, _ = build_object(lower(module).loop, "expo", [], "expo")
    if shutil.which("nm") is None:
        pytest.skip("no nm")
    o = tmp_path / "e.o"
    o.write_bytes(obj)
    syms = subprocess.run(["nm", "-g", "--defined-only", str(o)], capture_output=True,
                          text=True, check=True).stdout.split()
    assert "expo" in syms and not any(s.startswith("k") for s in syms if s != "expo")


def test_dynamic_shapes_are_rejected():
    from lamina.backends.llvm.driver import emit_driver
    from lamina.ir import IRError, parse

    m = parse("func @f(%a: memref<?xf32>) -> (memref<?xf32>) {\n  return %a\n}\n")
    with pytest.raises(IRError, match="static shapes"):
        emit_driver(m, "f", [], "f")
