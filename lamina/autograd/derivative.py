"""The backward of one recorded op, from the shared VJP rules of the primitives.

For a node, the op's ``build`` is stated over its saved arguments' static types
(numbers as 0-d arguments of the op's scalar dtype) and decomposed to prims.
The VJP rules of ``lamina.passes.vjp_rules`` are applied to that prim graph in
reverse through the ``IREmitter``, giving a *backward program*: a straight
list of prims from (saved args, saved outputs, output cotangents) to the input
cotangents that are needed. ``simplify`` then removes what is not needed (the
forward values no rule reads, the cotangents of inputs that need none) and
merges the rest. The program is cached by the op's structure, static types,
the needed inputs and whether the saved outputs are usable; running it is one
``TensorEmitter`` call per prim: views, or one cached kernel with ``?`` sizes.

Why not apply the rules straight to tensors: a rule yields every input's
cotangent and reads forward intermediates; building it as IR first lets dead
code elimination skip the unneeded ones (the weight-only gradient of ``x @ w``
does no ``g @ w.T``), and makes the per-backward Python work a list walk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from types import FunctionType
from typing import Any, Sequence

from lamina.frontend import dispatch, ops
from lamina.frontend import dtypes as dt
from lamina.frontend.prim_eager import TensorEmitter
from lamina.frontend.tensor import Tensor, storage_version
from lamina.ir import Block, Builder, Graph, Module, Op, TensorType, Value, verify
from lamina.ir.core import Return
from lamina.ir.types import ScalarType

SECOND_BACKWARD = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")

_MAX_PROGRAMS = 4096


@dataclass(frozen=True)
class Step:
    """``env[out] = prim(name, *env[ins], **attrs)``, then drop ``env[free]``."""

    name: str
    attrs: dict
    ins: tuple[int, ...]
    out: int
    free: tuple[int, ...]


@dataclass(frozen=True)
class BackwardProgram:
    """Slots: saved args, then saved outputs (if used), then output cotangents, then steps."""

    n_args: int
    n_outs: int
    uses_outputs: bool
    n_slots: int
    steps: tuple[Step, ...]
    results: tuple[int | None, ...]  # per arg: the slot of its cotangent
    reads_args: frozenset[int]  # args whose values the program reads
    reads_outputs: bool
    fresh: tuple[bool, ...]  # per arg: its cotangent is a new buffer no other result shares
    text: str  # the backward prim graph (for dumps and tests)


_programs: dict[tuple, BackwardProgram] = {}


# -- the forward graph of a node ---------------------------------------------------------------
def arg_type(a: Any, scalar_dtype: Any) -> TensorType:
    if isinstance(a, Tensor):
        return TensorType(tuple(a.shape), a.dtype.ir)
    if scalar_dtype is None:
        raise RuntimeError(f"autograd: a number argument {a!r} without a scalar dtype")
    return TensorType((), scalar_dtype.ir)


def forward_graph(node: Any) -> Graph:
    """The node's op in the tensor dialect over its saved arguments' static types."""
    types = [arg_type(a, node.scalar_dtype) for a in node.args]
    return dispatch.build_graph("forward", node.build, types).graphs[0]


def structure(g: Graph) -> tuple:
    """A hashable description of a tensor graph: arg types, ops, operands, attributes."""
    ids: dict[Value, int] = {v: i for i, v in enumerate(g.args)}
    parts: list[Any] = [tuple(a.type for a in g.args)]
    for op in g.ops:
        parts.append((op.name, tuple(ids[v] for v in op.operands), _attrs_key(op.attrs)))
        for r in op.results:
            ids[r] = len(ids)
    return tuple(parts)


def _attrs_key(attrs: dict) -> tuple:
    return tuple(sorted((k, _attr_key(v)) for k, v in attrs.items()))


def _attr_key(v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(_attr_key(x) for x in v)
    if isinstance(v, float):
        return ("f", struct.pack("<d", v))
    return (type(v).__name__, v)


# -- building the program ------------------------------------------------------------------------
def _flatten(block: Block, alias: dict[Value, Value], out: list[Op]) -> None:
    """The block's prims in order, fusion groups inlined (``alias`` maps their values)."""
    for op in block.ops:
        if isinstance(op, Return) or op.name == "prim.yield":
            continue
        if op.name == "prim.fusion":
            body = op.regions[0]
            for a, v in zip(body.args, op.operands):
                alias[a] = alias.get(v, v)
            _flatten(body, alias, out)
            for r, v in zip(op.results, body.ops[-1].operands):
                alias[r] = alias.get(v, v)
            continue
        out.append(op)


def _prim_graph(g: Graph) -> tuple[Graph, list[Op], dict[Value, Value]]:
    from lamina.passes.decompose import decompose_graph
    from lamina.passes.simplify import simplify_module

    pg = simplify_module(Module([decompose_graph(g)])).graphs[0]
    alias: dict[Value, Value] = {}
    flat: list[Op] = []
    _flatten(pg.body, alias, flat)
    return pg, flat, alias


def build_program(g: Graph, needs: Sequence[bool], use_outputs: bool,
                  what: str) -> BackwardProgram:
    """The backward program of tensor graph ``g`` (see the module docstring)."""
    from lamina.passes.simplify import simplify_module
    from lamina.passes.vjp_rules import VJP, IREmitter

    pg, flat, alias = _prim_graph(g)
    res = lambda v: alias.get(v, v)  # noqa: E731
    ret = [res(v) for v in pg.returned]
    n, k = len(pg.args), len(ret)
    types = [a.type for a in pg.args] + ([v.type for v in ret] if use_outputs else []) + \
        [v.type for v in ret]
    bg = Graph("backward", types)
    b = Builder(bg.body)
    e = IREmitter(b)
    vmap: dict[Value, Value] = dict(zip(pg.args, bg.args[:n]))
    cot_args = bg.args[len(types) - k:]
    saved: dict[Value, Value] = {}
    if use_outputs:
        saved = {v: a for v, a in zip(ret, bg.args[n:n + k]) if isinstance(v.owner, Op)}
    for op in flat:
        r = op.results[0]
        if r in saved:
            vmap[r] = saved[r]
            continue
        vmap[r] = b(op.name, *(vmap[res(v)] for v in op.operands), **op.attrs)

    # which forward values depend on an input whose cotangent is needed
    live = {a for a, need in zip(pg.args, needs) if need}
    for op in flat:
        if any(res(v) in live for v in op.operands):
            live.add(op.results[0])
    ct: dict[Value, Value] = {}

    def add(v: Value, c: Value) -> None:
        if v.type.dtype.is_float:
            ct[v] = c if v not in ct else e.prim("prim.add", ct[v], c)

    for v, c in zip(ret, cot_args):
        add(v, c)
    for op in reversed(flat):
        r = op.results[0]
        c = ct.pop(r, None)
        if c is None:
            continue
        rule = VJP.get(op.name)
        if rule is None:
            raise NotImplementedError(f"autograd: no VJP rule for {op.name} (needed to "
                                      f"differentiate {what})")
        ins = [res(v) for v in op.operands]
        cts = rule(e, dict(op.attrs), [vmap[v] for v in ins], [vmap[r]], [c],
                   wanted=[v in live for v in ins])
        for v, ci in zip(ins, cts):
            if ci is not None:
                add(v, ci)
    outs: list[Value] = []
    position: list[int | None] = []
    for i, a in enumerate(pg.args):
        c = ct.get(a) if needs[i] else None
        position.append(None if c is None else len(outs))
        if c is not None:
            outs.append(c)
    bg.body.append(Return(outs, []))
    module = simplify_module(Module([bg]))
    verify(module)
    return _to_program(module.graphs[0], n, k, use_outputs, position)


def _to_program(bg: Graph, n: int, k: int, use_outputs: bool,
                position: list[int | None]) -> BackwardProgram:
    alias: dict[Value, Value] = {}
    flat: list[Op] = []
    _flatten(bg.body, alias, flat)
    slot: dict[Value, int] = {a: i for i, a in enumerate(bg.args)}
    raw: list[tuple[str, dict, tuple[int, ...], int]] = []
    for op in flat:
        ins = tuple(slot[alias.get(v, v)] for v in op.operands)
        slot[op.results[0]] = len(slot)
        raw.append((op.name, dict(op.attrs), ins, slot[op.results[0]]))
    returned = [slot[alias.get(v, v)] for v in bg.returned]
    results = tuple(None if p is None else returned[p] for p in position)
    keep = set(returned)
    last: dict[int, int] = {}
    for i, (_, _, ins, _) in enumerate(raw):
        for s in ins:
            last[s] = i
    steps = tuple(
        Step(name, attrs, ins, out, tuple(sorted({s for s in ins if last[s] == i} - keep)))
        for i, (name, attrs, ins, out) in enumerate(raw))
    used = set(last) | keep
    n_outs = k if use_outputs else 0
    # a view's operand shares its storage with the view: never handed out as exclusive
    viewed = {i for name, _, ins, _ in raw if name in _VIEWS for i in ins}
    made = {out for name, _, _, out in raw if name not in _VIEWS} - viewed
    fresh = tuple(r is not None and r in made and results.count(r) == 1 for r in results)
    return BackwardProgram(
        n_args=n, n_outs=k, uses_outputs=use_outputs, n_slots=len(slot), steps=steps,
        results=results, reads_args=frozenset(i for i in range(n) if i in used),
        reads_outputs=any(n + j in used for j in range(n_outs)), fresh=fresh, text=str(bg))


# prims the TensorEmitter runs as views of their operand (their results share storage)
_VIEWS = frozenset({"prim.reshape", "prim.permute", "prim.broadcast", "prim.slice",
                    "prim.iota"})


class Grads(list):
    """A node's input cotangents; ``fresh[i]``: the i-th is a new buffer only it holds
    (the engine may then store it as a leaf's ``.grad`` without a copy)."""

    fresh: tuple[bool, ...] = ()


def program_for(node: Any, needs: Sequence[bool], use_outputs: bool) -> BackwardProgram:
    """The cached backward program of ``node`` for these needed inputs.

    The exact key is the structure of the op's tensor graph, which costs building
    it; a key made from the ``build`` function itself (its code and the values it
    closed over, when they are plain data) finds the same program without that,
    and falls back to the exact key the first time or when it cannot be made.
    """
    fast = _function_key(node.build)
    if fast is not None:
        sig = tuple((a._shape, a._dtype) if isinstance(a, Tensor) else node.scalar_dtype
                    for a in node.args)
        fast = (node.op, fast, sig, tuple(needs), use_outputs)
        prog = _programs.get(fast)
        if prog is not None:
            return prog
    g = forward_graph(node)
    key = (structure(g), tuple(needs), use_outputs)
    prog = _programs.get(key)
    if prog is None:
        _check_outputs(node, g)
        prog = build_program(g, needs, use_outputs, f"{node.name()} ({node.op})")
        if len(_programs) >= _MAX_PROGRAMS:
            _programs.clear()
        _programs[key] = prog
    if fast is not None:
        _programs[fast] = prog
    return prog


class _Unkeyable(Exception):
    pass


def _function_key(fn: Any) -> tuple | None:
    """What determines the graph ``fn`` builds: its code, defaults and closure values,
    recursively; None when a value is not plain data (then only the graph tells)."""
    try:
        return _fn_key(fn, 0)
    except _Unkeyable:
        return None


def _fn_key(fn: Any, depth: int) -> tuple:
    code = getattr(fn, "__code__", None)
    if code is None or hasattr(fn, "__self__") or depth > 8:
        raise _Unkeyable
    cells = fn.__closure__ or ()
    try:
        values = tuple(_value_key(c.cell_contents, depth) for c in cells)
    except ValueError:  # an empty cell
        raise _Unkeyable from None
    return (code, values, _value_key(fn.__defaults__, depth),
            _value_key(fn.__kwdefaults__, depth))


_PLAIN = (type(None), bool, int, str, ScalarType, TensorType, dt.dtype)


def _value_key(v: Any, depth: int) -> Any:
    if isinstance(v, _PLAIN):
        return (type(v), v)
    if isinstance(v, float):
        return ("f", struct.pack("<d", v))
    if isinstance(v, (tuple, list)):
        return (type(v), tuple(_value_key(x, depth) for x in v))
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise _Unkeyable
        return ("d", tuple(sorted((k, _value_key(x, depth)) for k, x in v.items())))
    if isinstance(v, FunctionType):
        return _fn_key(v, depth + 1)
    raise _Unkeyable


def _check_outputs(node: Any, g: Graph) -> None:
    got = [(tuple(t.shape), t.dtype) for t in g.result_types]
    want = [(shape, d.ir) for shape, d in node.out_types]
    if got != want:
        raise RuntimeError(f"autograd: the recorded meaning of {node.op} gives "
                           f"{[str(t) for t in g.result_types]} but the op returned "
                           f"{[(list(s), d.name) for s, d in node.out_types]}")


# -- running it ------------------------------------------------------------------------------------
def _outputs_intact(node: Any) -> bool:
    outs = node.outs
    return outs is not None and all(storage_version(a) == v
                                    for a, v in zip(outs, node.out_versions))


def check_version(t: Tensor, saved: int, node: Any, index: int) -> None:
    """PyTorch's error for a saved tensor written in place after it was saved (``node``
    names the backward that needs it: a node or a string)."""
    now = t._version
    if now != saved:
        node_name = node if isinstance(node, str) else node.name()
        from lamina.autograd.graph import describe

        producer = t.grad_fn
        which = "" if producer is None else \
            f", which is output {t.output_nr} of {producer.name()},"
        raise RuntimeError(
            f"one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: {describe(t)}{which} is at version {now}; expected version "
            f"{saved} instead. Hint: the tensor is input {index} of {node_name}; clone it "
            f"before modifying it in place.")


def apply_node(node: Any, grads: list[Tensor | None], needs: Sequence[bool],
               create_graph: bool) -> list[Tensor | None]:
    """Input cotangents of an OpNode (run in the grad mode the engine chose), on the GPU
    of its tensors when they live on one (constants and zeros of the rules too)."""
    dev = next((a._a.device for a in node.args if isinstance(a, Tensor) and a.is_cuda), None)
    if dev is None:
        return _apply_node(node, grads, needs, create_graph)
    from lamina.frontend import dispatch

    with dispatch.on_device(dev):
        return _apply_node(node, grads, needs, create_graph)


def _apply_node(node: Any, grads: list[Tensor | None], needs: Sequence[bool],
                create_graph: bool) -> list[Tensor | None]:
    if node.released:
        raise RuntimeError(SECOND_BACKWARD)
    prog = program_for(node, needs, _outputs_intact(node))
    args = node.args
    for i in prog.reads_args:
        a = args[i]
        if isinstance(a, Tensor):
            check_version(a, node.versions[i], node, i)
    env: list[Any] = [None] * prog.n_slots
    from lamina.frontend import dispatch

    dev = dispatch.current_device()  # numbers of a node on the GPU become GPU scalars
    where = None if dev is None else f"cuda:{dev.index}"
    for i in prog.reads_args:
        a = args[i]
        env[i] = a if isinstance(a, Tensor) else ops.tensor(a, dtype=node.scalar_dtype,
                                                            device=where)
    n, k = prog.n_args, prog.n_outs
    if prog.reads_outputs:
        from lamina.autograd.graph import set_history

        for j, (a, (_, dtype)) in enumerate(zip(node.outs, node.out_types)):
            t = Tensor._wrap(a, dtype)
            if create_graph:
                set_history(t, node, j)
            env[n + j] = t
    base = n + (k if prog.uses_outputs else 0)
    for j, g in enumerate(grads):
        if g is None:
            shape, dtype = node.out_types[j]
            g = ops.zeros(shape, dtype=dtype)
        env[base + j] = g
    run_steps(prog, env)
    out = Grads()
    fresh = list(prog.fresh)
    for i, s in enumerate(prog.results):
        g = None if s is None else env[s]
        if g is None and needs[i]:
            # the op does not depend on this input (fill_, zero_): PyTorch's gradient is 0
            g = ops.zeros(tuple(args[i].shape), dtype=args[i].dtype)
            fresh[i] = True
        out.append(g)
    out.fresh = tuple(fresh)
    return out


def run_steps(prog: BackwardProgram, env: list[Any]) -> None:
    e = TensorEmitter()
    for s in prog.steps:
        env[s.out] = e.prim(s.name, *(env[i] for i in s.ins), **s.attrs)
        for f in s.free:
            env[f] = None


# -- names ---------------------------------------------------------------------------------------
_TORCH_NAMES = {"copy": "Clone", "cast": "ToCopy", "reshape": "View", "matmul": "Mm",
                "logistic": "Sigmoid", "full": "Fill", "dot_general": "DotGeneral"}


def node_name(node: Any) -> str:
    """PyTorch-style ``MulBackward0`` from the op's last tensor op."""
    op = node.op
    if node.args is not None:
        try:
            ops_ = [o for o in forward_graph(node).ops if not isinstance(o, Return)]
            if ops_:
                op = ops_[-1].name
        except Exception:  # noqa: BLE001 - a name must never fail
            pass
    base = op.split(".", 1)[-1]
    base = _TORCH_NAMES.get(base, "".join(p.capitalize() for p in base.split("_")))
    return f"{base}Backward0"
