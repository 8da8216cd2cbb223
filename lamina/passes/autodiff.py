"""``autodiff``: append the reverse sweep to a prim-level func (after ``decompose``, before
``fuse``).

For a func whose first result is the loss, the new func computes the same
results and then the gradient of the loss with respect to the arguments ``wrt``:
the cotangent of the loss is seeded with 1 (or with an extra last argument
``seed`` of the loss's type when ``seed_arg`` is set, like
``backward(gradient=...)``, so the first result need not be a scalar), then the
ops are walked in reverse order (the block is topologically sorted), each
applying its rule from ``vjp_rules.VJP`` and contributions to one value adding up
with ``prim.add``. The func returns ``(results..., grads...)`` (only the grads
without ``keep_outputs``).

Only values that depend on a ``wrt`` argument and are floating point carry
cotangents. Zero constants returned by rules (``floor``, ``sign``, ...) are
symbolic zeros: dropped rather than added. An argument the loss does not depend
on gets zeros of its shape. A gradient that is a func argument or a value
returned before it is returned through a copy group, so results stay fresh
buffers. The forward ops are shared with the backward ones; ``simplify`` then
removes what is unused and ``fuse`` groups both sweeps together.
"""

from __future__ import annotations

from dataclasses import dataclass

from lamina.ir import Block, Builder, Graph, IRError, Module, Op, TensorType, Value
from lamina.ir.core import Return
from lamina.ir.dialects.prim import Fusion
from lamina.passes.manager import Pass, register_pass
from lamina.passes.rewrite import clone_op, copy_group, returned
from lamina.passes.vjp_rules import VJP, IREmitter


def _is_copy_group(op: Op) -> bool:
    body = op.regions[0]
    return len(body.ops) == 1 and body.ops[0].operands == [body.args[0]]


def _is_zero(v: Value) -> bool:
    op = v.owner
    return isinstance(op, Op) and op.name == "prim.const" and op.attrs["value"] == 0


def _check(g: Graph, wrt: tuple[int, ...], seed_arg: bool) -> Value:
    """The loss; IRError for anything autodiff cannot differentiate."""
    ret = returned(g)
    if ret is None or not ret.operands:
        raise IRError(f"autodiff: @{g.name} returns nothing; its first result is the loss")
    loss = ret.operands[0]
    t = loss.type
    if not isinstance(t, TensorType) or not t.dtype.is_float:
        raise IRError(f"autodiff: the loss (first result of @{g.name}) must be a floating "
                      f"tensor, got {t}")
    if not seed_arg and t.rank != 0:
        raise IRError(f"autodiff: the loss (first result of @{g.name}) must be a scalar, got "
                      f"{t}; pass a seed cotangent (seed_arg) for non-scalar results")
    if len(set(wrt)) != len(wrt):
        raise IRError(f"autodiff: repeated argument indices {list(wrt)}")
    for i in wrt:
        if not 0 <= i < len(g.args):
            raise IRError(f"autodiff: argument index {i} out of range: @{g.name} has "
                          f"{len(g.args)} arguments")
        at = g.args[i].type
        if not isinstance(at, TensorType) or not at.dtype.is_float:
            raise IRError(f"autodiff: argument {i} of @{g.name} has type {at}; only floating "
                          "arguments can be differentiated")
    for op in g.ops[:-1]:
        if op.regions and not (isinstance(op, Fusion) and _is_copy_group(op)):
            raise IRError(f"autodiff: {op.where()} in @{g.name}: run autodiff before fuse")
        if not op.name.startswith("prim."):
            raise IRError(f"autodiff: {op.where()} in @{g.name} is not a primitive; run "
                          "decompose first")
    return loss


def differentiate(g: Graph, wrt: tuple[int, ...] = (0,), keep_outputs: bool = True,
                  seed_arg: bool = False) -> Graph:
    """A new func: ``g``'s results (if ``keep_outputs``), then d(loss)/d(args[i]) for i in wrt."""
    loss = _check(g, wrt, seed_arg)
    arg_types = [a.type for a in g.args] + ([loss.type] if seed_arg else [])
    hints = [a.hint for a in g.args] + (["seed"] if seed_arg else [])
    ng = Graph(g.name, arg_types, hints, g.kind)
    ng.attrs = dict(g.attrs)
    vmap: dict[Value, Value] = dict(zip(g.args, ng.args))
    forward = [clone_op(op, vmap, ng.body) for op in g.ops[:-1]]
    results = [vmap[v] for v in returned(g).operands]  # type: ignore[union-attr]

    active = {ng.args[i] for i in wrt}
    for op in forward:
        if any(v in active for v in op.operands):
            active.update(r for r in op.results if r.type.dtype.is_float)

    b = Builder(ng.body)
    e = IREmitter(b)
    ct: dict[Value, Value] = {}
    if results[0] in active:
        ct[results[0]] = ng.args[-1] if seed_arg else b(
            "prim.const", value=1.0, shape=(), dtype=loss.type.dtype)
    for op in reversed(forward):
        cts = [ct.get(r) for r in op.results]
        if all(c is None for c in cts) or not any(v in active for v in op.operands):
            continue
        b.loc = op.loc
        if isinstance(op, Fusion):  # a copy group (checked): the identity
            in_cts: list[Value | None] = list(cts)
        else:
            rule = VJP.get(op.name)
            if rule is None:
                raise IRError(f"autodiff: {op.where()}: no VJP rule for {op.name}")
            in_cts = rule(e, op.attrs, op.operands, op.results, cts,
                          wanted=[v in active for v in op.operands])
        for v, c in zip(op.operands, in_cts):
            if c is None or v not in active or _is_zero(c):
                continue
            if c.type != v.type:
                raise IRError(f"autodiff: the VJP rule of {op.where()} gives a cotangent of "
                              f"type {c.type} for an operand of type {v.type}")
            ct[v] = b("prim.add", ct[v], c) if v in ct else c

    b.loc = None
    outs = list(results) if keep_outputs else []
    for i in wrt:
        arg = ng.args[i]
        grad = ct.get(arg)
        if grad is None:
            t = arg.type
            grad = b("prim.const", value=0.0, shape=t.shape, dtype=t.dtype)
        if isinstance(grad.owner, Block) or any(grad is o for o in outs):
            grad = copy_group(b, grad)
        outs.append(grad)
    ng.body.append(Return(outs, []))
    return ng


@register_pass
@dataclass(frozen=True)
class Autodiff(Pass):
    """Append the gradients of each func's first result (see the module docstring)."""

    name = "autodiff"
    wrt: tuple[int, ...] = (0,)
    keep_outputs: bool = True
    seed_arg: bool = False

    def run(self, module: Module) -> Module:
        return Module([differentiate(g, tuple(self.wrt), self.keep_outputs, self.seed_arg)
                       if g.kind == "func" else g for g in module.graphs])
