"""``lamina.export``: a traced program as data (IR text + weights + signature), no Python code.

``lamina.export(fn_or_module, example_inputs)`` traces once, like ``lamina.compile``,
and keeps the tensor-stage IR, the tensors the function read (weights) and the
input/output signature. ``ExportedProgram.save(path)`` writes one ``.npz``-format
file (a zip of ``.npy`` arrays plus the IR text and a JSON header; no pickle),
and ``lamina.load_exported(path)`` gives back a callable in any process that has
Lamina, without the original code: it re-lowers the IR for the loading machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

FORMAT = "lamina-exported-program"
VERSION = 1


@dataclass(frozen=True)
class TensorSpec:
    """Static shape and dtype name of one input or output."""

    shape: tuple[int, ...]
    dtype: str

    def describe(self) -> str:
        return f"{list(self.shape)} {self.dtype}"


@dataclass
class ExportedProgram:
    """A program that runs without its source: call it with tensors of the exported shapes."""

    name: str
    ir: str  # the tensor-stage module, as text
    weights: list[np.ndarray]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    out_tree: str = "tensor"  # "tensor", "tuple" or "list"
    _program: Any = field(default=None, repr=False, compare=False)

    def _compiled(self) -> Any:
        if self._program is None:
            from lamina.ir import parse
            from lamina.passes.pipeline import lower
            from lamina.runtime import compile_program

            stages = lower(parse(self.ir))
            self._program = compile_program(stages.loop, self.name)
        return self._program

    def __call__(self, *args: Any) -> Any:
        from lamina.frontend import dtypes as dt
        from lamina.frontend.compile import _contiguous_array
        from lamina.frontend.tensor import Tensor

        if len(args) != len(self.inputs):
            raise TypeError(f"exported program {self.name!r} takes {len(self.inputs)} tensors, "
                            f"got {len(args)}")
        for i, (a, spec) in enumerate(zip(args, self.inputs)):
            if not isinstance(a, Tensor):
                raise TypeError(f"exported program {self.name!r}: argument {i} must be a "
                                f"tensor, got {type(a).__name__}")
            got = TensorSpec(tuple(a.shape), a.dtype.name)
            if got != spec:
                raise ValueError(f"exported program {self.name!r}: argument {i} is "
                                 f"{got.describe()}, but it was exported for {spec.describe()}")
        arrays = [_contiguous_array(a) for a in args] + list(self.weights)
        outs = [Tensor._wrap(o, dt._NAMES[s.dtype])
                for o, s in zip(self._compiled()(*arrays), self.outputs)]
        if self.out_tree == "tensor":
            return outs[0]
        return tuple(outs) if self.out_tree == "tuple" else outs

    def save(self, path: str | Path) -> None:
        """Write the program to one file (numpy ``.npz`` format, readable without pickle)."""
        meta = {"format": FORMAT, "version": VERSION, "name": self.name,
                "out_tree": self.out_tree,
                "inputs": [[list(s.shape), s.dtype] for s in self.inputs],
                "outputs": [[list(s.shape), s.dtype] for s in self.outputs],
                "weights": len(self.weights)}
        arrays = {"__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8),
                  "__ir__": np.frombuffer(self.ir.encode(), np.uint8)}
        arrays.update({f"w{i}": np.ascontiguousarray(w) for i, w in enumerate(self.weights)})
        with open(path, "wb") as f:
            np.savez(f, **arrays)


def export(fn_or_module: Callable[..., Any], example_inputs: Any) -> ExportedProgram:
    """Trace ``fn_or_module`` on ``example_inputs`` (a tensor or a sequence of tensors)."""
    from lamina.frontend.compile import CompiledFunction, _contiguous_array
    from lamina.frontend.tensor import Tensor
    from lamina.ir.printer import print_module

    inputs = [example_inputs] if isinstance(example_inputs, Tensor) else list(example_inputs)
    name = getattr(fn_or_module, "__name__", None) or type(fn_or_module).__name__
    cf = CompiledFunction(fn_or_module, name)
    module, captured, tree = cf._trace(tuple(inputs))
    from lamina.frontend import dtypes as dt

    outs = [TensorSpec(tuple(t.shape), dt.from_ir(t.dtype).name)
            for t in module.graphs[0].result_types]
    return ExportedProgram(
        name=cf.name, ir=print_module(module),
        weights=[_contiguous_array(t).copy() for t in captured],
        inputs=[TensorSpec(tuple(a.shape), a.dtype.name) for a in inputs], outputs=outs,
        out_tree="tensor" if tree is None else ("tuple" if tree is tuple else "list"))


def load_exported(path: str | Path) -> ExportedProgram:
    """Read a file written by ``ExportedProgram.save``."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"load_exported: {path} is not an exported Lamina program: {e}") from None
    with z:
        if "__meta__" not in z.files or "__ir__" not in z.files:
            raise ValueError(f"load_exported: {path} is not an exported Lamina program")
        meta = json.loads(z["__meta__"].tobytes().decode())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"load_exported: {path} has format {meta.get('format')!r} version "
                             f"{meta.get('version')!r}; this Lamina reads {FORMAT} {VERSION}")
        return ExportedProgram(
            name=meta["name"], ir=z["__ir__"].tobytes().decode(),
            weights=[z[f"w{i}"] for i in range(meta["weights"])],
            inputs=[TensorSpec(tuple(s), d) for s, d in meta["inputs"]],
            outputs=[TensorSpec(tuple(s), d) for s, d in meta["outputs"]],
            out_tree=meta["out_tree"])
