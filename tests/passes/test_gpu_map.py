"""gpu-map: top-level parallel loops become loop.gpu_parallel with a block size; IR text."""

from __future__ import annotations

import pytest

from lamina.ir import parse, verify
from lamina.ir.core import IRError
from lamina.ir.printer import print_module
from lamina.passes.gpu_map import GpuMap
from lamina.passes.manager import parse_pipeline

ELEMENTWISE = """
kernel @k(%a: memref<1000xf32>, %b: memref<1000xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1000} : index
  %2 = loop.const {value = 1} : index
  loop.parallel %0, %1, %2 (%i: index) {
    %3 = loop.load %a, %i : f32
    %4 = loop.exp %3 : f32
    loop.store %4, %b, %i
  }
}
"""

ROWSUM = """
kernel @r(%a: memref<?x?xf32>, %b: memref<?xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1} : index
  %z = loop.const {value = 0.0} : f32
  %n = loop.dim %a {axis = 0} : index
  %m = loop.dim %a {axis = 1} : index
  loop.parallel %0, %n, %1 (%i: index) {
    %s = loop.for %0, %m, %1, %z : f32 (%j: index, %acc: f32) {
      %x = loop.load %a, %i, %j : f32
      %y = loop.add %acc, %x : f32
      loop.yield %y
    }
    loop.store %s, %b, %i
  }
}
"""

SMALL = ELEMENTWISE.replace("1000", "40")


def _mapped(text: str, **kw) -> str:
    m = GpuMap(**kw).run(parse(text))
    verify(m)
    out = print_module(m)
    assert print_module(parse(out)) == out  # round-trips through the parser
    return out


def test_elementwise_gets_256_threads():
    out = _mapped(ELEMENTWISE)
    assert "loop.gpu_parallel %0, %1, %2 {block = 256} (%i: index)" in out
    assert "loop.parallel" not in out


def test_reduction_rows_get_128_threads_and_stay_sequential_inside():
    out = _mapped(ROWSUM)
    assert "{block = 128}" in out
    assert "loop.for" in out  # each thread accumulates its row


def test_small_static_trip_count_rounds_to_a_warp_multiple():
    assert "{block = 64}" in _mapped(SMALL)


def test_forced_block_and_bad_block():
    assert "{block = 512}" in _mapped(ELEMENTWISE, block=512)
    with pytest.raises(ValueError, match="multiple of 32"):
        GpuMap(block=100).run(parse(ELEMENTWISE))


def test_idempotent_and_kernels_without_parallel_untouched():
    once = _mapped(ELEMENTWISE)
    assert _mapped(once) == once
    seq = ELEMENTWISE.replace("loop.parallel", "loop.for")
    assert _mapped(seq) == print_module(parse(seq))


def test_named_in_textual_pipelines():
    (p,) = parse_pipeline("gpu-map")
    assert isinstance(p, GpuMap)


def test_verifier_rejects_bad_block_attribute():
    bad = _mapped(ELEMENTWISE).replace("{block = 256}", "{block = 33}")
    with pytest.raises(IRError, match="multiple of 32"):
        verify(parse(bad))
    missing = _mapped(ELEMENTWISE).replace(" {block = 256}", "")
    with pytest.raises(IRError, match="block"):
        verify(parse(missing))
