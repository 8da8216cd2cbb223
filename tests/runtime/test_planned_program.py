"""Planned programs: same results as unplanned ones, one arena per program, out= (into the
inputs too), native replay == Python path, and the replay driver cached across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import lamina
from lamina.ir import parse
from lamina.runtime import ProgramError, buffers, cache_stats, compile_program
from lamina.runtime.outputs import pointwise

ROOT = Path(__file__).resolve().parents[2]


def _t(a: np.ndarray):
    return lamina.tensor(a)


def mlp_loss(x, w1, b1, w2):
    h = lamina.relu(x @ w1 + b1)
    return (lamina.tanh(h @ w2) ** 2).mean()


def _mlp_program():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((16, 8), (8, 32), (32,),
                                                                   (32, 5))]
    low = lamina.grad(mlp_loss, argnums=(1, 2, 3)).lower(*map(_t, arrays))
    return low.stages.loop, arrays


def _cnn_program():
    from lamina.frontend.ops_conv import conv2d, max_pool2d

    def loss(x, w, v):
        h = lamina.relu(conv2d(x, w, padding=1))
        h = max_pool2d(h, 2)
        return (h.reshape(2, -1) @ v).sum()

    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 8, 8), (4, 3, 3, 3),
                                                                   (64, 3))]
    low = lamina.grad(loss, argnums=(0, 1, 2)).lower(*map(_t, arrays))
    return low.stages.loop, arrays


@pytest.mark.parametrize("make", [_mlp_program, _cnn_program], ids=["mlp", "cnn"])
def test_planned_and_native_match_unplanned(make):
    loop, arrays = make()
    plain = compile_program(loop, plan=False)
    python = compile_program(loop, native=False)
    native = compile_program(loop)
    assert "loop.arena" in python.as_text() and "loop.arena" not in plain.as_text()
    want = plain(*arrays)
    for _ in range(3):  # the first call runs from Python, the next ones natively
        for got in (python(*arrays), native(*arrays)):
            for w, g in zip(want, got):
                np.testing.assert_array_equal(g, w)
    assert native.stats()["native"] and not python.stats()["native"]
    s = native.stats()
    assert s["kernels"] >= 2 and s["planned_bytes"] < s["naive_bytes"]


def test_stats_count_arena_and_results():
    loop, _ = _mlp_program()
    prog = compile_program(loop)
    s = prog.stats()
    returned = sum(int(np.prod(v.type.shape)) * 4 for v in prog.func.returned)
    assert s["planned_bytes"] == s["arena_bytes"] + returned
    assert s["kernels"] == sum(1 for op in prog.func.ops if op.name == "loop.call")


@pytest.mark.parametrize("native", [False, True])
def test_no_allocation_after_the_first_call(monkeypatch, native):
    calls = []
    real = buffers.alloc

    def counting(shape, dtype):
        calls.append(shape)
        return real(shape, dtype)

    loop, arrays = _mlp_program()
    monkeypatch.setattr(buffers, "alloc", counting)  # the program binds it when built
    prog = compile_program(loop, native=native)
    n_results = len(prog.func.returned)
    prog(*arrays)
    first = len(calls)
    assert first == n_results + 1  # the results and the arena
    prog(*arrays)
    prog(*arrays)
    assert len(calls) == first + 2 * n_results  # only the fresh results
    outs = [np.empty(tuple(v.type.shape), np.float32) for v in prog.func.returned]
    before = len(calls)
    for _ in range(2):
        got = prog(*arrays, out=outs)
    assert len(calls) == before and all(g is o for g, o in zip(got, outs))
    np.testing.assert_array_equal(outs[0], compile_program(loop, plan=False)(*arrays)[0])


def _sgd_program(n=(37, 13)):
    def step(p, g, m):
        m2 = m * 0.9 + g
        return p - 0.1 * m2, m2

    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    loop = lamina.compile(step).lower(*map(_t, arrays)).stages.loop
    return loop, arrays


@pytest.mark.parametrize("native", [False, True])
def test_out_into_inputs_is_an_in_place_update(native):
    loop, (p, g, m) = _sgd_program()
    prog = compile_program(loop, native=native)
    want_m = m * np.float32(0.9) + g
    want_p = p - np.float32(0.1) * want_m
    for _ in range(3):
        got = prog(p, g, m, out=[p, m])
        assert got[0] is p and got[1] is m
        np.testing.assert_allclose(p, want_p, rtol=1e-6)
        np.testing.assert_allclose(m, want_m, rtol=1e-6)
        want_m = want_m * np.float32(0.9) + g
        want_p = want_p - np.float32(0.1) * want_m
    # each update kernel reads its parameter at the element it writes: written in place
    assert not prog._scratches


def test_out_into_an_input_read_later_goes_through_a_copy(monkeypatch):
    monkeypatch.setenv("LAMINA_MULTI_OUTPUT_FUSION", "0")  # two kernels, not one with two outputs
    x = np.random.default_rng(3).standard_normal(64).astype(np.float32)

    def two(x):
        return x * 2.0, lamina.exp(x) + x

    loop = lamina.compile(two).lower(_t(x)).stages.loop
    prog = compile_program(loop)
    assert prog.calls == 2
    want = compile_program(loop, plan=False)(x)
    np.testing.assert_allclose(want[1], np.exp(x) + x, rtol=1e-5, atol=1e-6)
    for k in (0, 1):
        for _ in range(2):  # Python path, then native
            xx = x.copy()
            outs = [None, None]
            outs[k] = xx
            got = prog(xx, out=outs)
            assert got[k] is xx
            np.testing.assert_array_equal(got[k], want[k])
            np.testing.assert_array_equal(got[1 - k], want[1 - k])
    assert prog._scratches  # whichever kernel runs first, the other one reads x after it


def test_pointwise_proof():
    kernels = parse("""
kernel @ew(%a: memref<8xf32>, %o: memref<8xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 8} : index
  %2 = loop.const {value = 1} : index
  loop.parallel %0, %1, %2 (%i: index) {
    %3 = loop.load %a, %i : f32
    %4 = loop.neg %3 : f32
    loop.store %4, %o, %i
  }
}

kernel @shift(%a: memref<8xf32>, %o: memref<8xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 7} : index
  %2 = loop.const {value = 1} : index
  loop.parallel %0, %1, %2 (%i: index) {
    %3 = loop.add %i, %2 : index
    %4 = loop.load %a, %3 : f32
    loop.store %4, %o, %i
  }
}
""")
    ew, shift = kernels.graphs
    assert pointwise(ew, 0, 1)
    assert not pointwise(shift, 0, 1)


def test_out_validation():
    loop, (p, g, m) = _sgd_program()
    prog = compile_program(loop)
    with pytest.raises(ProgramError, match=r"out\[1\].*memref<37x13xf32>.*dtype float64"):
        prog(p, g, m, out=[None, np.empty((37, 13), np.float64)])
    with pytest.raises(ProgramError, match=r"out\[0\].*shape"):
        prog(p, g, m, out=[np.empty((13, 37), np.float32), None])
    with pytest.raises(ProgramError, match=r"out\[0\].*contiguous"):
        prog(p, g, m, out=[np.empty((13, 37), np.float32).T, None])
    with pytest.raises(ProgramError, match="2 arrays"):
        prog(p, g, m, out=[None])
    buf = np.empty((37, 13), np.float32)
    with pytest.raises(ProgramError, match="overlap"):
        prog(p, g, m, out=[buf, buf])


def test_concurrent_calls_do_not_share_the_arena():
    loop, arrays = _mlp_program()
    prog = compile_program(loop, native=False)
    want = compile_program(loop, plan=False)(*arrays)
    errors = []

    def work():
        try:
            for _ in range(30):
                for w, got in zip(want, prog(*arrays)):
                    np.testing.assert_array_equal(got, w)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_one_kernel_programs_stay_unplanned():
    loop, arrays = _sgd_program((5,))

    def one(x):
        return x * 2.0

    prog = compile_program(lamina.compile(one).lower(_t(arrays[0])).stages.loop)
    assert "loop.arena" not in prog.as_text() and prog.stats()["native"] is False


_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import lamina
from lamina.runtime import cache_stats, compile_program
import tests.runtime.test_planned_program as T
loop, arrays = T._mlp_program()
prog = compile_program(loop)
for _ in range(3):
    out = prog(*arrays)
print(json.dumps({**cache_stats(), "native": prog.stats()["native"],
                  "sum": float(sum(o.sum() for o in out))}))
"""


def _child(cache_dir: Path) -> dict:
    env = {**os.environ, "LAMINA_CACHE_DIR": str(cache_dir)}
    p = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_second_process_replays_without_llvm(cache_dir):
    first = _child(cache_dir)
    assert first["native"] and first["compiles"] >= 2  # the kernels and the driver
    second = _child(cache_dir)
    assert second["native"] and second["compiles"] == 0 and second["disk_hits"] >= 2
    assert second["sum"] == first["sum"]
    assert cache_stats()["compiles"] == 0  # nothing compiled in this process
