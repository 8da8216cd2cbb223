"""memory-plan as IR text in, IR text out: reuse, returned buffers, alignment, aliasing,
and random straight-line programs checked against an independent liveness oracle."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.ir import parse, verify
from lamina.ir.core import IRError
from lamina.passes import PassManager, parse_pipeline
from lamina.passes.memory_plan import Live, assign_offsets

MLP_GRAD = """
func @g(%x: memref<8x16xf32>, %w1: memref<16x32xf32>, %w2: memref<32x4xf32>) -> \
(memref<16x32xf32>, memref<32x4xf32>) {
  %0 = loop.alloc : memref<8x32xf32>
  loop.call %x, %w1, %0 {kernel = @k0}
  %1 = loop.alloc : memref<8x32xf32>
  loop.call %0, %1 {kernel = @k1}
  %2 = loop.alloc : memref<8x4xf32>
  loop.call %1, %w2, %2 {kernel = @k2}
  %3 = loop.alloc : memref<8x4xf32>
  loop.call %2, %3 {kernel = @k3}
  %4 = loop.alloc : memref<32x4xf32>
  loop.call %1, %3, %4 {kernel = @k4}
  %5 = loop.alloc : memref<8x32xf32>
  loop.call %0, %3, %w2, %5 {kernel = @k5}
  %6 = loop.alloc : memref<16x32xf32>
  loop.call %x, %5, %6 {kernel = @k6}
  return %6, %4
}
"""


def plan(text: str) -> str:
    module = PassManager(parse_pipeline("memory-plan")).run(parse(text))
    verify(module)
    return str(module)


def allocs(text: str) -> dict[str, int | None]:
    """%name -> offset (None when unplanned)."""
    out = {}
    for m in re.finditer(r"(%\w+) = loop\.alloc[^{:\n]*(?:\{offset = (\d+)\})? :", text):
        out[m.group(1)] = int(m.group(2)) if m.group(2) else None
    return out


def arena(text: str) -> int | None:
    m = re.search(r"loop\.arena \{size = (\d+)\}", text)
    return int(m.group(1)) if m else None


def test_mlp_gradient_plan():
    out = plan(MLP_GRAD)
    assert out.splitlines()[1] == "  loop.arena {size = 2304}"
    offs = allocs(out)
    # %5 is born when %1 died (last read by k4): it takes %1's bytes.
    assert offs == {"%0": 0, "%1": 1024, "%2": 2048, "%3": 2176, "%4": None, "%5": 1024,
                    "%6": None}
    assert plan(out) == out  # planning a planned func gives the same plan


def test_returned_buffers_are_never_in_the_arena():
    text = """
func @f(%x: memref<16xf32>) -> (memref<16xf32>, memref<16xf32>) {
  %0 = loop.alloc : memref<16xf32>
  loop.call %x, %0 {kernel = @k}
  %1 = loop.alloc : memref<16xf32>
  loop.call %0, %1 {kernel = @k}
  %2 = loop.alloc : memref<16xf32>
  loop.call %1, %2 {kernel = @k}
  return %2, %0
}
"""
    out = plan(text)
    assert allocs(out) == {"%0": None, "%1": 0, "%2": None}
    assert arena(out) == 64


def test_alignment_and_size():
    text = """
func @f(%x: memref<3xf32>) -> (memref<3xf32>) {
  %0 = loop.alloc : memref<3xf32>
  %1 = loop.alloc : memref<5xi8>
  %2 = loop.alloc : memref<100xf64>
  loop.call %x, %0, %1, %2 {kernel = @k}
  %3 = loop.alloc : memref<3xf32>
  loop.call %0, %1, %2, %3 {kernel = @k}
  return %3
}
"""
    out = plan(text)
    offs = allocs(out)
    assert all(o % 64 == 0 for o in offs.values() if o is not None)
    # three buffers live together: 800 -> 832, 12 -> 64, 5 -> 64 bytes
    assert arena(out) == 832 + 64 + 64
    assert sorted(o for o in offs.values() if o is not None) == [0, 832, 896]


def test_no_aliasing_within_one_call():
    text = """
func @f(%x: memref<64xf32>) -> (memref<64xf32>) {
  %0 = loop.alloc : memref<64xf32>
  loop.call %x, %0 {kernel = @k}
  %1 = loop.alloc : memref<64xf32>
  loop.call %0, %1 {kernel = @k}
  %2 = loop.alloc : memref<64xf32>
  loop.call %1, %2 {kernel = @k}
  %3 = loop.alloc : memref<64xf32>
  loop.call %2, %3 {kernel = @k}
  return %3
}
"""
    offs = allocs(plan(text))
    # %0 dies in the call that writes %1, so they must differ; %2 may reuse %0's bytes.
    assert offs["%0"] != offs["%1"] and offs["%1"] != offs["%2"]
    assert offs["%2"] == offs["%0"]
    assert arena(plan(text)) == 512


def test_dynamic_sizes_stay_unplanned():
    text = """
func @f(%x: memref<?xf32>) -> (memref<?xf32>) {
  %n = loop.dim %x {axis = 0} : index
  %0 = loop.alloc %n : memref<?xf32>
  loop.call %x, %0 {kernel = @k}
  %1 = loop.alloc : memref<4xf32>
  loop.call %0, %1 {kernel = @k}
  %2 = loop.alloc %n : memref<?xf32>
  loop.call %1, %2 {kernel = @k}
  return %2
}
"""
    out = plan(text)
    # printed names: %0 is the loop.dim
    assert allocs(out) == {"%1": None, "%2": 0, "%3": None}
    assert "%1 = loop.alloc %0 : memref<?xf32>" in out


def test_nothing_to_plan_adds_no_arena():
    text = """
func @f(%x: memref<4xf32>) -> (memref<4xf32>) {
  %0 = loop.alloc : memref<4xf32>
  loop.call %x, %0 {kernel = @k}
  return %0
}
"""
    assert arena(plan(text)) is None


@pytest.mark.parametrize("bad", ["offset = 3", "offset = -64"])
def test_verifier_rejects_bad_offsets(bad):
    text = f"""
func @f() -> () {{
  loop.arena {{size = 64}}
  %0 = loop.alloc {{{bad}}} : memref<4xf32>
  return
}}
"""
    with pytest.raises(IRError, match="offset"):
        verify(parse(text))


def test_verifier_rejects_dynamic_offsets_and_bad_arena():
    with pytest.raises(IRError, match="static"):
        verify(parse("func @f(%n: index) -> () {\n  %0 = loop.alloc %n {offset = 0} : "
                     "memref<?xf32>\n  return\n}\n"))
    with pytest.raises(IRError, match="size"):
        verify(parse("func @f() -> () {\n  loop.arena {size = 10}\n  return\n}\n"))


def test_greedy_placement_never_overlaps_live_buffers():
    bufs = [Live(0, 2, 100), Live(1, 3, 64), Live(3, 5, 200), Live(4, 4, 1), Live(0, 5, 0)]
    offsets, total = assign_offsets(bufs)
    for i, a in enumerate(bufs):
        for j, b in enumerate(bufs[:i]):
            if a.overlaps(b) and a.nbytes and b.nbytes:
                assert offsets[i] + a.nbytes <= offsets[j] or offsets[j] + b.nbytes <= offsets[i]
    assert total % 64 == 0 and all(o % 64 == 0 for o in offsets)


DTYPES = {"f32": 4, "f64": 8, "i8": 1, "i64": 8}


@st.composite
def programs(draw):
    """A random straight-line program: each call reads some earlier buffers, writes a new one."""
    n = draw(st.integers(1, 12))
    lines = ["func @p(%x: memref<4xf32>) -> ({ret}) {"]
    names: list[tuple[str, str]] = [("%x", "memref<4xf32>")]
    for i in range(n):
        shape = draw(st.lists(st.integers(1, 40), min_size=1, max_size=2))
        dt = draw(st.sampled_from(sorted(DTYPES)))
        t = f"memref<{'x'.join(map(str, shape))}x{dt}>"
        reads = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
        lines.append(f"  %b{i} = loop.alloc : {t}")
        lines.append(f"  loop.call {', '.join(r for r, _ in reads)}, %b{i} {{kernel = @k}}")
        names.append((f"%b{i}", t))
    ret = draw(st.lists(st.sampled_from(names[1:]), min_size=1, max_size=3, unique=True))
    lines.append(f"  return {', '.join(r for r, _ in ret)}")
    lines.append("}")
    return "\n".join(lines).replace("{ret}", ", ".join(t for _, t in ret)) + "\n"


def _oracle_intervals(text: str) -> dict[str, tuple[int, int, int]]:
    """%name -> (first use, last use, bytes), read from the printed text by position."""
    body = [ln.strip() for ln in text.splitlines()[1:-1] if not ln.strip().startswith(
        "loop.arena")]
    out: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    for pos, ln in enumerate(body):
        m = re.match(r"(%\w+) = loop\.alloc.*: memref<([0-9x]+)x(\w+)>", ln)
        if m:
            dims = [int(d) for d in m.group(2).split("x")]
            sizes[m.group(1)] = math.prod(dims) * DTYPES[m.group(3)]
            continue
        for name in re.findall(r"%\w+", ln):
            if name in sizes:
                out.setdefault(name, [pos, pos])[1] = pos
    return {k: (v[0], v[1], sizes[k]) for k, v in out.items()}


@settings(max_examples=50, deadline=None)
@given(text=programs())
def test_random_programs_never_overlap_live_buffers(text):
    out = plan(text)
    assert str(parse(out)) == out  # the plan round-trips as text
    offs = allocs(out)
    live = _oracle_intervals(out)
    returned = set(re.findall(r"%\w+", out.splitlines()[-2]))
    size = arena(out)
    for name, off in offs.items():
        assert (off is None) == (name in returned)
        if off is not None:
            assert off % 64 == 0 and off + live[name][2] <= size
    planned = [n for n, o in offs.items() if o is not None]
    for i, a in enumerate(planned):
        for b in planned[:i]:
            (s1, e1, n1), (s2, e2, n2) = live[a], live[b]
            if s1 <= e2 and s2 <= e1:  # live at one op: bytes must be disjoint
                assert offs[a] + n1 <= offs[b] or offs[b] + n2 <= offs[a], (a, b, out)
