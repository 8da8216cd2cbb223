"""``loss.backward()`` and ``autograd.grad`` inside ``lamina.compile``: gradients through the
autodiff IR pass, into the same graph.

No eager tape runs in a trace. The slice of the graph recorded so far that
leads from the differentiated values back to the leaves (values the trace
marked as uses of a leaf tensor, or the requested inputs) becomes a small
function of its cut points; ``decompose`` and the ``autodiff`` pass turn it
into primitives computing the gradients, which are inlined into the trace
(the forward primitives duplicate the traced forward ops; ``cse`` merges them
once the whole step is decomposed). ``.grad`` then follows PyTorch's rules:
the first gradient is stored, later ones are added (in place into a concrete
``.grad``, as eager does).
"""

from __future__ import annotations

from typing import Any, Sequence

from lamina.frontend.tensor import Tensor
from lamina.frontend.trace import Trace
from lamina.ir import Block, Builder, Graph, Op, Value
from lamina.ir.core import Return
from lamina.ir.dialects.prim import Fusion


def _slice(tr: Trace, roots: Sequence[Value], wrt: set[Value]) -> tuple[list[Op], list[Value]]:
    """The traced ops between the cut points and ``roots`` (in order), and the cut points."""
    ops: set[int] = set()
    cuts: list[Value] = []
    seen: set[Value] = set()
    stack = list(roots)
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        owner = v.owner
        if v in wrt or isinstance(owner, Block) or v not in tr.requires_grad:
            cuts.append(v)
            continue
        if id(owner) not in ops:
            ops.add(id(owner))
            stack.extend(owner.operands)
    order = [op for op in tr.graph.body.ops if id(op) in ops]
    return order, cuts


def _copied(v: Value) -> Value:
    """The source of a copy group (autodiff returns arguments through one)."""
    op = v.owner
    if isinstance(op, Fusion):
        body = op.regions[0]
        if len(body.ops) == 1 and body.ops[0].operands == [body.args[0]]:
            return op.operands[0]
    return v


def gradients(tr: Trace, outputs: Sequence[Tensor], seeds: Sequence[Tensor | None],
              wrt: list[Value]) -> list[Value | None]:
    """d(sum_i <outputs[i], seeds[i]>)/d(wrt) as values of the trace (None: not reached)."""
    from lamina.passes.autodiff import differentiate
    from lamina.passes.decompose import decompose_graph
    from lamina.passes.rewrite import clone_op

    roots = [tr.value_of(o) for o in outputs]
    seed_vals = [None if s is None else tr.value_of(s) for s in seeds]
    order, cuts = _slice(tr, roots, set(wrt))
    cut_args = list(dict.fromkeys(cuts + [s for s in seed_vals if s is not None]))
    g = Graph("step_backward", [v.type for v in cut_args], [None] * len(cut_args))
    vmap: dict[Value, Value] = dict(zip(cut_args, g.args))
    for op in order:
        clone_op(op, vmap, g.body)
    b = Builder(g.body)
    total: Value | None = None
    for r, s in zip(roots, seed_vals):
        v = vmap[r]
        if s is not None:
            v = b("tensor.mul", v, vmap[s])
        rank = len(v.type.shape)
        if rank:
            v = b("tensor.sum", v, dims=tuple(range(rank)), keepdim=False)
        total = v if total is None else b("tensor.add", total, v)
    g.body.append(Return([total], []))
    index = {v: i for i, v in enumerate(cut_args)}
    reached = [w for w in wrt if w in index]
    prim = decompose_graph(g)
    dg = differentiate(prim, tuple(index[w] for w in reached), keep_outputs=False)
    back = {a: v for a, v in zip(dg.args, cut_args)}
    grads: list[Value] = []
    for op in dg.ops:
        if isinstance(op, Return):
            grads = [back[_copied(v)] for v in op.operands]
        elif _copied(op.results[0]) is op.results[0]:
            clone_op(op, back, tr.graph.body)
    got = dict(zip(reached, grads))
    return [got.get(w) for w in wrt]


def _check_outputs(outputs: Sequence[Tensor], retain_graph: Any, create_graph: bool,
                   what: str) -> None:
    if create_graph:
        raise NotImplementedError(f"lamina.compile: {what}(create_graph=True) (higher-order "
                                  "gradients) cannot be traced; compute them outside the "
                                  "compiled step or with lamina.grad")
    if retain_graph:
        raise NotImplementedError(f"lamina.compile: {what}(retain_graph=True) cannot be "
                                  "traced: a compiled step differentiates each graph once; "
                                  "sum the losses and call backward once")
    for i, o in enumerate(outputs):
        if not o.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not "
                               "have a grad_fn")


def check_seeds(outputs: Sequence[Tensor], seeds: Sequence[Any]) -> list[Tensor | None]:
    """The seed cotangents (None: an implicit 1 for a one-element output)."""
    out: list[Tensor | None] = []
    for o, s in zip(outputs, seeds):
        if s is None and o.numel() != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        if s is not None and tuple(s.shape) != tuple(o.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output has a shape of {s.shape} and "
                               f"output has a shape of {o.shape}.")
        out.append(s)
    return out


def backward(tr: Trace, outputs: Sequence[Tensor], seeds: Sequence[Tensor | None],
             retain_graph: Any, create_graph: bool, inputs: Sequence[Tensor] | None) -> None:
    """``torch.autograd.backward`` inside a trace: accumulate into the leaves' ``.grad``."""
    from lamina.autograd import grad_mode
    from lamina.frontend import ops
    from lamina.frontend.inplace import add_

    _check_outputs(outputs, retain_graph, create_graph, "backward")
    leaves = dict(tr.leaf_of)
    if inputs is not None:
        wanted = set()
        for t in inputs:
            if not t.is_leaf:
                raise NotImplementedError("lamina.compile: backward(inputs=...) with a non-leaf "
                                          "tensor cannot be traced")
            wanted.add(id(t))
        leaves = {v: t for v, t in leaves.items() if id(t) in wanted}
    wrt = list(leaves)
    grads = gradients(tr, outputs, seeds, wrt)
    per_leaf: dict[int, tuple[Tensor, Value]] = {}
    b = tr.builder
    for v, gv in zip(wrt, grads):
        if gv is None:
            continue
        t = leaves[v]
        if id(t) in per_leaf:
            gv = b("tensor.add", per_leaf[id(t)][1], gv)
        per_leaf[id(t)] = (t, gv)
    for t, gv in per_leaf.values():
        if t._ag.hooks:
            raise NotImplementedError("lamina.compile: gradient hooks on a leaf "
                                      f"(shape {list(t.shape)}) cannot be traced")
        if gv.type.dtype != t.dtype.ir or tuple(gv.type.shape) != tuple(t.shape):
            raise RuntimeError(f"lamina.compile: gradient of type {gv.type} for a leaf of "
                               f"shape {list(t.shape)} ({t.dtype.name})")
        tr.note_leaf(t)
        g = tr.wrap(gv, False)
        old = t._ag.grad
        tr.grad_read(t)
        tr.grad_set(t)
        with grad_mode.no_grad():
            if old is None:
                t._ag.grad = g
            elif old._a is None:
                t._ag.grad = ops.add(old, g)
            else:
                add_(old, g)


def grad(tr: Trace, outputs: Sequence[Tensor], inputs: Sequence[Tensor],
         seeds: Sequence[Tensor | None], retain_graph: Any, create_graph: bool,
         allow_unused: bool, materialize: bool) -> tuple[Tensor | None, ...]:
    """``torch.autograd.grad`` inside a trace."""
    from lamina.frontend import ops

    _check_outputs(outputs, retain_graph, create_graph, "grad")
    wrt = [tr.value_of(t) for t in inputs]
    grads = gradients(tr, outputs, seeds, wrt)
    out: list[Tensor | None] = []
    for t, gv in zip(inputs, grads):
        if gv is None:
            if not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been "
                                   "used in the graph. Set allow_unused=True if this is the "
                                   "desired behavior.")
            out.append(ops.zeros(t.shape, dtype=t.dtype) if materialize else None)
        else:
            out.append(tr.wrap(gv, False))
    return tuple(out)


__all__ = ["backward", "grad", "gradients"]
