"""Loading what a command works on: ``FILE.py:NAME`` targets and ``--input`` specs.

Every user mistake here (missing file, unknown name, bad spec) raises ``UsageError``
with a one-line message; ``cli.main`` prints it and exits non-zero, never with a
traceback.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line by the CLI."""


# Spec dtype suffixes and the lamina dtype names they mean.
DTYPES = {"f16": "float16", "bf16": "bfloat16", "f32": "float32", "f64": "float64",
          "i8": "int8", "i32": "int32", "i64": "int64", "bool": "bool", "i1": "bool"}
_SPEC = re.compile(r"^(?:(\d+(?:x\d+)*)x)?([a-z0-9]+)$")


@dataclass(frozen=True)
class InputSpec:
    """One ``--input``: a static shape and a dtype name (``64x784xf32``)."""

    shape: tuple[int, ...]
    dtype: str  # lamina dtype name

    def __str__(self) -> str:
        short = {v: k for k, v in DTYPES.items() if k != "i1"}[self.dtype]
        return "x".join([*map(str, self.shape), short])


def parse_spec(text: str) -> InputSpec:
    """``"64x784xf32"`` -> InputSpec((64, 784), "float32"); ``"f32"`` is a 0-d tensor."""
    m = _SPEC.match(text.strip())
    if m is None or m.group(2) not in DTYPES:
        raise UsageError(f"bad input spec {text!r}: expected sizes and a dtype like 64x784xf32 "
                         f"(dtypes: {', '.join(DTYPES)})")
    shape = tuple(int(s) for s in m.group(1).split("x")) if m.group(1) else ()
    return InputSpec(shape, DTYPES[m.group(2)])


def make_input(spec: InputSpec, seed: int = 0) -> Any:
    """A seeded random lamina tensor for ``spec`` (normal floats, small integers, bools)."""
    import lamina
    from lamina.frontend import dtypes as dt

    rng = np.random.default_rng(seed)
    d = dt._NAMES[spec.dtype]
    if d.is_floating_point:
        a = rng.standard_normal(spec.shape).astype(np.float32)
        return lamina.from_numpy(a).to(d)
    if d.name == "bool":
        return lamina.from_numpy(rng.random(spec.shape) < 0.5)
    return lamina.from_numpy(rng.integers(0, 10, spec.shape).astype(d.numpy))


@dataclass
class Target:
    """A loaded ``FILE.py:NAME``: the callable to trace, its name and the file's module."""

    fn: Callable[..., Any]
    name: str
    module: Any  # the user's file, imported
    is_module: bool  # an nn.Module (its parameters become weights)

    def example_inputs(self, specs: list[str]) -> list[Any]:
        """Tensors from ``--input`` specs, else from the file's ``example_inputs()``."""
        if specs:
            return [make_input(parse_spec(s), seed=i) for i, s in enumerate(specs)]
        maker = getattr(self.module, "example_inputs", None)
        if maker is None:
            raise UsageError(f"{self.name}: give --input specs (e.g. --input 64x784xf32) or "
                             "define example_inputs() in the file")
        try:
            out = maker()
        except Exception as e:  # the user's code failed: say where, in one line
            raise UsageError(f"example_inputs() failed: {type(e).__name__}: {e}") from None
        return list(out) if isinstance(out, (tuple, list)) else [out]


def import_file(path: str) -> Any:
    """Import a Python file as a fresh module (its directory goes on sys.path)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no such file: {path}")
    name = "_lamina_user_" + re.sub(r"\W", "_", p.stem)
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(p.resolve().parent))
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        raise UsageError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    return mod


def load_target(text: str) -> Target:
    """``FILE.py:NAME`` -> the function, nn.Module instance or nn.Module class (built)."""
    path, sep, name = text.rpartition(":")
    if not sep or not path or not name:
        raise UsageError(f"expected FILE.py:NAME, got {text!r}")
    mod = import_file(path)
    obj = getattr(mod, name, None)
    if obj is None:
        public = sorted(k for k, v in vars(mod).items() if callable(v) and not k.startswith("_")
                        and getattr(v, "__module__", None) == mod.__name__)
        raise UsageError(f"{path} defines no {name!r} (candidates: {', '.join(public) or 'none'})")
    import lamina
    from lamina.nn import Module

    if isinstance(obj, type) and issubclass(obj, Module):
        lamina.manual_seed(0)  # the same weights on every run
        try:
            obj = obj()
        except Exception as e:
            raise UsageError(f"{name}() failed: {type(e).__name__}: {e}") from None
    if isinstance(obj, Module):
        obj.eval()
        return Target(obj, name, mod, True)
    if not callable(obj):
        raise UsageError(f"{path}:{name} is a {type(obj).__name__}, not a function or nn.Module")
    return Target(obj, name, mod, False)
