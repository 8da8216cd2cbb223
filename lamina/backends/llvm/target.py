"""The host CPU as an LLVM target: optimise LLVM IR, emit object code, load it into the process.

One ``TargetMachine`` per process (host CPU name and features, opt level 3, the
JIT code model so object code can be loaded in-process by MCJIT). Every call
into LLVM holds one lock: llvmlite shares LLVM's global context, which is not
safe to use from two threads at once.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

_LOCK = threading.RLock()


@dataclass(frozen=True)
class TargetInfo:
    """What the generated code is specialised for; part of every kernel cache key."""

    triple: str
    cpu: str
    features: str
    llvm_version: str


@functools.cache
def _init() -> None:
    # llvm.initialize() raises in llvmlite 0.50: only the native target is needed.
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.cache
def host_target() -> TargetInfo:
    """The host CPU (triple, CPU name, feature string, LLVM version), computed once."""
    with _LOCK:
        _init()
        return TargetInfo(
            triple=llvm.get_process_triple(),
            cpu=llvm.get_host_cpu_name(),
            features=llvm.get_host_cpu_features().flatten(),
            llvm_version=".".join(map(str, llvm.llvm_version_info)),
        )


def _new_machine() -> llvm.TargetMachine:
    info = host_target()
    target = llvm.Target.from_triple(info.triple)
    # 'jitdefault' is the large code model on 64-bit hosts: MCJIT may place sections
    # more than 2 GiB apart, which the small model's 32-bit relocations cannot reach.
    return target.create_target_machine(
        cpu=info.cpu, features=info.features, opt=3, reloc="default",
        codemodel="jitdefault", jit=True,
    )


@functools.cache
def _machine() -> llvm.TargetMachine:
    return _new_machine()


def optimize(llvm_ir: str) -> llvm.ModuleRef:
    """Parse and verify ``llvm_ir``, then run the O3 pipeline (loop and SLP vectorizers on)."""
    with _LOCK:
        tm = _machine()
        try:
            mod = llvm.parse_assembly(llvm_ir)
            mod.verify()
        except RuntimeError as e:
            raise RuntimeError(f"llvm backend: generated LLVM IR is invalid: {e}") from None
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        pto = llvm.create_pipeline_tuning_options(3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pto.loop_unrolling = True
        pto.loop_interleaving = True
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        return mod


def compile_object(llvm_ir: str) -> bytes:
    """Optimise ``llvm_ir`` and emit host object code."""
    with _LOCK:
        return _machine().emit_object(optimize(llvm_ir))


def assemble_text(llvm_ir: str) -> str:
    """The optimised LLVM IR as text (the "llvm" stage dump)."""
    with _LOCK:
        return str(optimize(llvm_ir))


def native_asm(llvm_ir: str) -> str:
    """The host assembly of the optimised ``llvm_ir``, for inspection."""
    with _LOCK:
        return _machine().emit_assembly(optimize(llvm_ir))


class JITLibrary:
    """Object code loaded into this process; its code lives as long as this object.

    Each library gets its own MCJIT engine (about 0.6 ms), so two objects that
    define the same symbol never shadow each other.
    """

    def __init__(self, engine: llvm.ExecutionEngine, obj: bytes):
        self._engine = engine
        self._obj = obj
        self._addresses: dict[str, int] = {}

    @classmethod
    def load(cls, obj: bytes) -> JITLibrary:
        """Load object code (from ``compile_object``) and resolve its relocations."""
        with _LOCK:
            _init()
            # The engine takes ownership of its TargetMachine, so it gets a fresh one.
            engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_machine())
            engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            engine.finalize_object()
            return cls(engine, obj)

    def address(self, symbol: str) -> int:
        """The address of ``symbol``; raises KeyError when the object does not define it."""
        addr = self._addresses.get(symbol)
        if addr is None:
            with _LOCK:
                addr = self._engine.get_function_address(symbol)
            if not addr:
                raise KeyError(f"symbol {symbol!r} is not defined by this object code")
            self._addresses[symbol] = addr
        return addr
