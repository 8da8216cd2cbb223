"""``lamina compile``: ahead-of-time compile FILE.py:NAME into a ``.so`` or ``.o`` plus a ``.h``.

The library holds the kernels, a generated driver function with a plain C ABI
(``backends/llvm/driver.py``) and the weights as read-only constants, so it runs
without Python or Lamina. A ``.so`` is linked by the system C compiler
(``$CC``, default ``cc``); a ``.o`` needs no compiler here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lamina.tools.loader import UsageError

CROSS_CC = {"aarch64": ("aarch64-linux-gnu-gcc", "clang --target=aarch64-linux-gnu")}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("compile", help="compile FILE.py:NAME to a .so/.o and a C header",
                       description="Compile FILE.py:NAME for fixed input shapes into a shared "
                       "library (.so) or object file (.o) with a generated C header (.h). "
                       "Weights are embedded as constants.")
    p.add_argument("target", metavar="FILE.py:NAME")
    p.add_argument("--input", action="append", default=[], metavar="SPEC",
                   help="an input like 1x64xf32 (repeat per argument); default: the file's "
                   "example_inputs()")
    p.add_argument("-o", "--output", required=True, help="OUT.so or OUT.o (OUT.h is written "
                   "beside it), or OUT.ptx with --target cuda")
    p.add_argument("--target", dest="arch", choices=("cpu", "aarch64", "cuda"), default="cpu",
                   help="cpu: this machine (default); aarch64: aarch64-unknown-linux-gnu; "
                   "cuda: PTX text of every kernel (no GPU needed)")
    p.add_argument("--gpu-arch", default="sm_90", help="PTX target with --target cuda "
                   "(default sm_90)")
    p.add_argument("--symbol", help="the C function's name (default: NAME as an identifier)")
    p.set_defaults(run=run)


def _compiler(arch: str) -> list[str]:
    if arch == "cpu":
        cc = os.environ.get("CC", "cc").split()
        if shutil.which(cc[0]) is None:
            raise UsageError(f"no C compiler found ({cc[0]!r}) to link a .so: install one "
                             "(apt-get install gcc) or set CC, or write a .o with -o OUT.o")
        return cc
    for cand in CROSS_CC[arch]:
        cc = cand.split()
        if shutil.which(cc[0]) is not None:
            return cc
    raise UsageError(f"no C compiler for {arch} ({' or '.join(CROSS_CC[arch])}) to link a .so; "
                     "write an object file with -o OUT.o instead")


def compile_target(target_text: str, specs: list[str], arch: str = "cpu",
                   symbol: str | None = None) -> tuple[bytes, Any, str]:
    """(object code, driver signature, header text) for FILE.py:NAME."""
    from lamina.backends.llvm.driver import build_object, header_text
    from lamina.frontend.compile import CompiledFunction, _contiguous_array
    from lamina.passes.pipeline import lower
    from lamina.tools.loader import load_target

    target = load_target(target_text)
    inputs = target.example_inputs(specs)
    cf = CompiledFunction(target.fn, symbol or target.name)
    if symbol is not None and cf.name != symbol:
        raise UsageError(f"--symbol {symbol!r} is not a C identifier")
    module, captured, _ = cf._trace(tuple(inputs))
    stages = lower(module)
    weights = [_contiguous_array(t) for t in captured]
    obj, sig = build_object(stages.loop, cf.name, weights, cf.name, arch)
    shapes = ", ".join("x".join(map(str, p.shape)) + f" {p.dtype}" for p in sig.inputs)
    note = f"lamina compile {Path(target_text).name} --target {arch} (inputs: {shapes})"
    return obj, sig, header_text(sig, note)


def compile_ptx(target_text: str, specs: list[str], gpu_arch: str) -> str:
    """The PTX of every kernel of FILE.py:NAME (kernels only: the host drives them)."""
    from lamina.frontend.compile import CompiledFunction
    from lamina.tools.loader import load_target

    target = load_target(target_text)
    cf = CompiledFunction(target.fn, target.name)
    return cf.lower(*target.example_inputs(specs), target="cuda", arch=gpu_arch).as_text("ptx")


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if args.arch == "cuda":
        if out.suffix != ".ptx":
            raise UsageError(f"cannot write {out.name}: with --target cuda the output must end "
                             "in .ptx")
        out.write_text(compile_ptx(args.target, args.input, args.gpu_arch))
        print(f"wrote {out}: PTX for {args.gpu_arch}")
        return 0
    if out.suffix not in (".so", ".o"):
        raise UsageError(f"cannot write {out.name}: the output must end in .so or .o")
    cc = _compiler(args.arch) if out.suffix == ".so" else None
    obj, sig, header = compile_target(args.target, args.input, args.arch, args.symbol)
    header_path = out.with_suffix(".h")
    if cc is None:
        out.write_bytes(obj)
    else:
        with tempfile.TemporaryDirectory(prefix="lamina-aot-") as tmp:
            o = Path(tmp) / "model.o"
            o.write_bytes(obj)
            res = subprocess.run([*cc, "-shared", f"-Wl,-soname,{out.name}", "-o", str(out),
                                  str(o), "-lm"],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise UsageError(f"linking {out} with {' '.join(cc)} failed: "
                                 f"{res.stderr.strip().splitlines()[-1] if res.stderr else ''}")
    header_path.write_text(header)
    print(f"wrote {out} and {header_path}: {sig.c_prototype()}")
    return 0
