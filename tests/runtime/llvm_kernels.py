"""Hand-written kernels for the runtime tests: loop-stage signatures plus LLVM IR that
follows the Kernel ABI (args words: per memref the pointer, sizes, strides).

They let the runtime be tested without the code generator: each kernel's IR
text is what ``compile_module`` hashes, and ``HandEmitter`` stands in for
``emit_module`` by returning the LLVM IR written here.
"""

from __future__ import annotations

from lamina.ir import Module, parse

_LL = {"f32": "float", "f64": "double", "i32": "i32", "i64": "i64"}
_OPS = {("add", True): "fadd", ("mul", True): "fmul", ("sub", True): "fsub",
        ("add", False): "add", ("mul", False): "mul", ("sub", False): "sub"}


def _word(lines: list[str], name: str, k: int) -> str:
    lines.append(f"  %{name}.p = getelementptr i64, ptr %args, i64 {k}")
    lines.append(f"  %{name} = load i64, ptr %{name}.p")
    return f"%{name}"


def _ptr(lines: list[str], name: str, k: int) -> str:
    w = _word(lines, name + ".w", k)
    lines.append(f"  %{name} = inttoptr i64 {w} to ptr")
    return f"%{name}"


def binary(name: str, fn: str, dtype: str, rank: int) -> str:
    """LLVM IR for ``out = a <fn> b`` over rank-1 or rank-2 strided buffers; the
    parallel loop is axis 0 (trips = size of out on axis 0)."""
    ty, is_float = _LL[dtype], dtype.startswith("f")
    op = _OPS[(fn, is_float)]
    per = 1 + 2 * rank
    lines = [f"define void @{name}(ptr %args, i64 %begin, i64 %end) {{", "entry:"]
    ptrs, strides = [], []
    for m, base in (("a", 0), ("b", per), ("o", 2 * per)):
        ptrs.append(_ptr(lines, f"p{m}", base))
        strides.append([_word(lines, f"s{m}{ax}", base + 1 + rank + ax) for ax in range(rank)])
    inner = _word(lines, "n1", 2 * per + 2) if rank == 2 else None
    lines += ["  %go = icmp slt i64 %begin, %end", "  br i1 %go, label %outer, label %exit",
              "outer:", "  %t = phi i64 [%begin, %entry], [%t.next, %outer.end]"]
    if rank == 1:
        lines.append("  br label %body")
        lines.append("body:")
        idx = {m: f"%off{m}" for m in "abo"}
        for m, s in zip("abo", strides):
            lines.append(f"  %off{m} = mul i64 %t, {s[0]}")
    else:
        lines += [f"  %has = icmp sgt i64 {inner}, 0",
                  "  br i1 %has, label %body, label %outer.end", "body:",
                  "  %j = phi i64 [0, %outer], [%j.next, %body]"]
        idx = {}
        for m, s in zip("abo", strides):
            lines.append(f"  %r{m} = mul i64 %t, {s[0]}")
            lines.append(f"  %c{m} = mul i64 %j, {s[1]}")
            lines.append(f"  %off{m} = add i64 %r{m}, %c{m}")
            idx[m] = f"%off{m}"
    for m, p in zip("ab", ptrs):
        lines.append(f"  %g{m} = getelementptr {ty}, ptr {p}, i64 {idx[m]}")
        lines.append(f"  %v{m} = load {ty}, ptr %g{m}")
    lines.append(f"  %r = {op} {ty} %va, %vb")
    lines.append(f"  %gout = getelementptr {ty}, ptr {ptrs[2]}, i64 {idx['o']}")
    lines.append(f"  store {ty} %r, ptr %gout")
    if rank == 2:
        lines += ["  %j.next = add i64 %j, 1", f"  %jc = icmp slt i64 %j.next, {inner}",
                  "  br i1 %jc, label %body, label %outer.end"]
    else:
        lines.append("  br label %outer.end")
    lines += ["outer.end:", "  %t.next = add i64 %t, 1", "  %tc = icmp slt i64 %t.next, %end",
              "  br i1 %tc, label %outer, label %exit", "exit:", "  ret void", "}", ""]
    lines += [f"define i64 @{name}__trips(ptr %args) {{", "entry:"]
    trips = _word(lines, "n0", 2 * per + 1)
    lines += [f"  ret i64 {trips}", "}", ""]
    return "\n".join(lines)


def iota(name: str) -> str:
    """LLVM IR for ``out[i] = float(i)`` on a rank-1 f32 buffer, parallel over i."""
    lines = [f"define void @{name}(ptr %args, i64 %begin, i64 %end) {{", "entry:"]
    p = _ptr(lines, "p", 0)
    s = _word(lines, "s", 2)
    lines += ["  %go = icmp slt i64 %begin, %end", "  br i1 %go, label %loop, label %exit",
              "loop:", "  %t = phi i64 [%begin, %entry], [%t.next, %loop]",
              f"  %off = mul i64 %t, {s}", f"  %g = getelementptr float, ptr {p}, i64 %off",
              "  %v = sitofp i64 %t to float", "  store float %v, ptr %g",
              "  %t.next = add i64 %t, 1", "  %c = icmp slt i64 %t.next, %end",
              "  br i1 %c, label %loop, label %exit", "exit:", "  ret void", "}", "",
              f"define i64 @{name}__trips(ptr %args) {{", "entry:"]
    n = _word(lines, "n", 1)
    lines += [f"  ret i64 {n}", "}", ""]
    return "\n".join(lines)


def total(name: str) -> str:
    """LLVM IR for ``out[] = sum(a)`` (rank-1 f32 in, 0-d f32 out), no parallel loop."""
    lines = [f"define void @{name}(ptr %args, i64 %begin, i64 %end) {{", "entry:"]
    p = _ptr(lines, "p", 0)
    n = _word(lines, "n", 1)
    s = _word(lines, "s", 2)
    o = _ptr(lines, "o", 3)
    lines += [f"  %go = icmp sgt i64 {n}, 0", "  br i1 %go, label %loop, label %exit",
              "loop:", "  %i = phi i64 [0, %entry], [%i.next, %loop]",
              "  %acc = phi float [0.0, %entry], [%acc.next, %loop]",
              f"  %off = mul i64 %i, {s}", f"  %g = getelementptr float, ptr {p}, i64 %off",
              "  %v = load float, ptr %g", "  %acc.next = fadd float %acc, %v",
              "  %i.next = add i64 %i, 1", f"  %c = icmp slt i64 %i.next, {n}",
              "  br i1 %c, label %loop, label %exit", "exit:",
              "  %res = phi float [0.0, %entry], [%acc.next, %loop]",
              f"  store float %res, ptr {o}", "  ret void", "}", "",
              f"define i64 @{name}__trips(ptr %args) {{", "entry:", "  ret i64 1", "}", ""]
    return "\n".join(lines)


def _memref(dtype: str, rank: int, strided: bool) -> str:
    dims = "?x" * rank
    layout = ", strided<[" + ", ".join("?" * 1 for _ in range(rank)) + "]>" if strided else ""
    return f"memref<{dims}{dtype}{layout}>"


def binary_ir(name: str, fn: str, dtype: str, rank: int, strided: bool = False) -> str:
    """The loop-stage kernel that ``binary`` implements (signature and loops)."""
    t = _memref(dtype, rank, strided)
    lines = [f"kernel @{name}(%a: {t}, %b: {t}, %out: {t}) {{",
             "  %c0 = loop.const {value = 0} : index", "  %c1 = loop.const {value = 1} : index",
             "  %n0 = loop.dim %out {axis = 0} : index"]
    if rank == 1:
        lines += ["  loop.parallel %c0, %n0, %c1 (%i: index) {",
                  f"    %x = loop.load %a, %i : {dtype}", f"    %y = loop.load %b, %i : {dtype}",
                  f"    %z = loop.{fn} %x, %y : {dtype}", "    loop.store %z, %out, %i", "  }"]
    else:
        lines += ["  %n1 = loop.dim %out {axis = 1} : index",
                  "  loop.parallel %c0, %n0, %c1 (%i: index) {",
                  "    loop.for %c0, %n1, %c1 (%j: index) {",
                  f"      %x = loop.load %a, %i, %j : {dtype}",
                  f"      %y = loop.load %b, %i, %j : {dtype}",
                  f"      %z = loop.{fn} %x, %y : {dtype}", "      loop.store %z, %out, %i, %j",
                  "    }", "  }"]
    return "\n".join(lines + ["}"])


def iota_ir(name: str) -> str:
    return "\n".join([
        f"kernel @{name}(%out: memref<?xf32>) {{",
        "  %c0 = loop.const {value = 0} : index", "  %c1 = loop.const {value = 1} : index",
        "  %n = loop.dim %out {axis = 0} : index",
        "  loop.parallel %c0, %n, %c1 (%i: index) {",
        "    %v = loop.cast %i {dtype = f32} : f32", "    loop.store %v, %out, %i", "  }", "}"])


def total_ir(name: str) -> str:
    return "\n".join([
        f"kernel @{name}(%a: memref<?xf32>, %out: memref<f32>) {{",
        "  %c0 = loop.const {value = 0} : index", "  %c1 = loop.const {value = 1} : index",
        "  %z = loop.const {value = 0.0} : f32", "  %n = loop.dim %a {axis = 0} : index",
        "  %s = loop.for %c0, %n, %c1, %z : f32 (%i: index, %acc: f32) {",
        "    %v = loop.load %a, %i : f32", "    %w = loop.add %acc, %v : f32",
        "    loop.yield %w", "  }", "  loop.store %s, %out", "}"])


HAND_LLVM = {
    "add1": binary("add1", "add", "f32", 1),
    "mul1": binary("mul1", "mul", "f32", 1),
    "add2": binary("add2", "add", "f32", 2),
    "mul2": binary("mul2", "mul", "f32", 2),
    "sadd2": binary("sadd2", "add", "f32", 2),
    "iadd2": binary("iadd2", "add", "i64", 2),
    "dadd1": binary("dadd1", "add", "f64", 1),
    "iota": iota("iota"),
    "total": total("total"),
}


class HandEmitter:
    """Stands in for ``emit_module``: the LLVM IR of each kernel, looked up by name."""

    def __init__(self, llvm: dict[str, str] = HAND_LLVM):
        self.llvm = llvm
        self.calls = 0

    def __call__(self, module: Module) -> str:
        self.calls += 1
        names = [g.name for g in module.graphs if g.kind == "kernel"]
        return "\n".join(self.llvm[n] for n in names)


def module(*texts: str) -> Module:
    return parse("\n\n".join(texts))
