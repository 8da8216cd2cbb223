"""The NVPTX target: optimised LLVM IR -> PTX text (llvmlite), PTX -> cubin (``ptxas``).

libdevice is not shipped with llvmlite, so kernels use the polynomial math of
``backends/llvm/mathlib`` exactly as on the CPU; nothing here needs a GPU. All
LLVM calls share the CPU backend's lock (one global LLVM context per process).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile

import llvmlite.binding as llvm

from lamina.backends.llvm.target import _LOCK

TRIPLE = "nvptx64-nvidia-cuda"
DEFAULT_ARCH = "sm_90"
# PTX ISA 8.0 is understood by every sm_80/sm_90 driver of CUDA 12 and later.
DEFAULT_PTX = "+ptx80"


def _check_arch(arch: str) -> str:
    if not arch.startswith("sm_") or not arch[3:].rstrip("a").isdigit():
        raise ValueError(f"nvptx: arch must look like 'sm_90' or 'sm_80', got {arch!r}")
    return arch


@functools.cache
def _init() -> None:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()


@functools.cache
def _machine(arch: str) -> llvm.TargetMachine:
    _init()
    target = llvm.Target.from_triple(TRIPLE)
    return target.create_target_machine(cpu=arch, features=DEFAULT_PTX, opt=3)


def optimize(llvm_ir: str, arch: str = DEFAULT_ARCH) -> llvm.ModuleRef:
    """Parse, verify and O3-optimise ``llvm_ir`` for ``arch``."""
    arch = _check_arch(arch)
    with _LOCK:
        tm = _machine(arch)
        try:
            mod = llvm.parse_assembly(llvm_ir)
            mod.verify()
        except RuntimeError as e:
            raise RuntimeError(f"nvptx backend: generated LLVM IR is invalid: {e}") from None
        mod.triple = TRIPLE
        mod.data_layout = str(tm.target_data)
        pto = llvm.create_pipeline_tuning_options(3)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        return mod


def compile_ptx(llvm_ir: str, arch: str = DEFAULT_ARCH) -> str:
    """PTX assembly text of ``llvm_ir`` for ``arch`` (e.g. ``"sm_90"``)."""
    with _LOCK:
        mod = optimize(llvm_ir, arch)
        return _machine(arch).emit_assembly(mod)


def ptxas_path() -> str | None:
    """The ``ptxas`` executable (``LAMINA_PTXAS`` overrides PATH), or None when absent."""
    return os.environ.get("LAMINA_PTXAS") or shutil.which("ptxas")


class PtxasError(RuntimeError):
    """ptxas rejected generated PTX (a backend bug): carries ptxas's own message."""


def assemble_cubin(ptx: str, arch: str = DEFAULT_ARCH) -> bytes:
    """Assemble ``ptx`` into a cubin for ``arch`` with ptxas; raises when ptxas is missing."""
    exe = ptxas_path()
    if exe is None:
        raise RuntimeError("nvptx: ptxas was not found (install the CUDA toolkit or set "
                           "LAMINA_PTXAS); load the PTX text with the driver instead")
    arch = _check_arch(arch)
    with tempfile.TemporaryDirectory(prefix="lamina-ptx-") as d:
        src, out = os.path.join(d, "k.ptx"), os.path.join(d, "k.cubin")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([exe, f"-arch={arch}", "-O3", src, "-o", out],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise PtxasError(f"ptxas -arch={arch} failed (exit {r.returncode}):\n"
                             f"{r.stderr.strip() or r.stdout.strip()}")
        with open(out, "rb") as f:
            return f.read()
