"""LLVM IR as text: types, constants and an instruction writer shared by emit and mathlib.

We write LLVM IR text rather than use ``llvmlite.ir``: the text is what the
"llvm" stage dump shows, it is cheap to build, and LLVM's parser verifies it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_BITS = {"half": 16, "float": 32, "double": 64, "i1": 1, "i8": 8, "i16": 16, "i32": 32,
         "i64": 64}
_MANGLE = {"half": "f16", "float": "f32", "double": "f64"}


@dataclass(frozen=True)
class LType:
    """An LLVM first-class type: a scalar ``elem`` or a vector ``<width x elem>``."""

    elem: str
    width: int = 0

    def __str__(self) -> str:
        return self.elem if self.width == 0 else f"<{self.width} x {self.elem}>"

    @property
    def is_float(self) -> bool:
        return self.elem in ("half", "float", "double")

    @property
    def bits(self) -> int:
        return _BITS[self.elem]

    def like(self, elem: str) -> LType:
        """The type with the same shape (scalar or vector width) and element ``elem``."""
        return LType(elem, self.width)

    @property
    def mangled(self) -> str:
        """The suffix of overloaded intrinsics: ``f32``, ``v8f32``, ``i64``."""
        e = _MANGLE.get(self.elem, self.elem)
        return e if self.width == 0 else f"v{self.width}{e}"


def float_literal(elem: str, value: float) -> str:
    """An exact LLVM literal for ``value`` rounded to ``elem`` (half, float or double)."""
    import numpy as np

    if elem == "half":
        bits = int(np.array(value, dtype=np.float16).view(np.uint16))
        return f"0xH{bits:04X}"
    if elem == "float":
        value = float(np.float32(value))
    (bits,) = struct.unpack("<Q", struct.pack("<d", value))
    return f"0x{bits:016X}"


def int_literal(elem: str, value: int) -> str:
    """An integer literal wrapped to the signed range of ``elem``."""
    if elem == "i1":
        return "true" if value & 1 else "false"
    bits = _BITS[elem]
    value &= (1 << bits) - 1
    if value >= 1 << (bits - 1):
        value -= 1 << bits
    return str(value)


def const(t: LType, value: float | int | bool) -> str:
    """A constant operand of type ``t`` (splatted for vectors)."""
    if t.is_float:
        s = float_literal(t.elem, float(value))
    else:
        s = int_literal(t.elem, int(value))
    return s if t.width == 0 else f"splat ({t.elem} {s})"


class ModuleText:
    """The functions, declarations and helper definitions of one LLVM module."""

    def __init__(self) -> None:
        self.declarations: dict[str, str] = {}
        self.definitions: dict[str, str] = {}
        self.functions: list[str] = []

    def declare(self, name: str, line: str) -> None:
        self.declarations.setdefault(name, line)

    def has(self, name: str) -> bool:
        return name in self.definitions

    def define(self, name: str, text: str) -> None:
        self.definitions.setdefault(name, text)

    def text(self) -> str:
        parts = list(self.declarations.values())
        parts += list(self.definitions.values()) + self.functions
        return "\n\n".join(parts) + "\n"


class FnBuilder:
    """Writes the instructions of one function; values are operand strings like ``%v3``."""

    def __init__(self, module: ModuleText):
        self.module = module
        self.lines: list[str] = []
        self.current = "entry"
        self._n = 0

    def fresh(self, prefix: str = "v") -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def emit(self, text: str, prefix: str = "v") -> str:
        """Append ``%name = text`` and return ``%name``."""
        name = "%" + self.fresh(prefix)
        self.lines.append(f"  {name} = {text}")
        return name

    def do(self, text: str) -> None:
        """Append an instruction without a result."""
        self.lines.append(f"  {text}")

    def new_block(self, prefix: str) -> str:
        return self.fresh(prefix)

    def start(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.current = label

    def br(self, label: str) -> None:
        self.do(f"br label %{label}")

    def cond_br(self, cond: str, then: str, other: str) -> None:
        self.do(f"br i1 {cond}, label %{then}, label %{other}")

    # -- instructions ------------------------------------------------------
    def bin(self, op: str, t: LType, a: str, b: str, flags: str = "") -> str:
        return self.emit(f"{op} {flags + ' ' if flags else ''}{t} {a}, {b}")

    def fneg(self, t: LType, a: str) -> str:
        return self.emit(f"fneg {t} {a}")

    def cmp(self, pred: str, t: LType, a: str, b: str) -> str:
        """``fcmp``/``icmp`` with predicate ``pred`` (an i1 or vector-of-i1 result)."""
        kind = "fcmp" if t.is_float else "icmp"
        return self.emit(f"{kind} {pred} {t} {a}, {b}")

    def select(self, cond: str, t: LType, a: str, b: str) -> str:
        return self.emit(f"select {t.like('i1')} {cond}, {t} {a}, {t} {b}")

    def conv(self, op: str, a: str, src: LType, dst: LType) -> str:
        return self.emit(f"{op} {src} {a} to {dst}")

    def intrinsic(self, name: str, ret: LType, args: list[tuple[LType, str]],
                  overload: list[LType] | None = None, flags: str = "") -> str:
        """Call ``llvm.<name>.<mangled overload types>`` and declare it once per module."""
        types = overload if overload is not None else [ret]
        full = "llvm." + name + "".join("." + t.mangled for t in types)
        params = ", ".join(str(t) for t, _ in args)
        self.module.declare(full, f"declare {ret} @{full}({params})")
        call_args = ", ".join(f"{t} {v}" for t, v in args)
        return self.emit(f"call {flags + ' ' if flags else ''}{ret} @{full}({call_args})")

    def call(self, ret: LType, name: str, args: list[tuple[LType, str]]) -> str:
        call_args = ", ".join(f"{t} {v}" for t, v in args)
        return self.emit(f"call {ret} @{name}({call_args})")
