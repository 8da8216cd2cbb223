"""The backward engine: ``backward`` and ``grad`` over the recorded graph.

Nodes run in dependency order (a node after every node that feeds it a
gradient; among ready nodes the most recently recorded first, like PyTorch),
each once with the sum of the gradients of each of its outputs. Without
``create_graph`` the computation runs with grad mode off; with it, every op of
the backward is recorded too, so gradients can be differentiated again.
"""

from __future__ import annotations

import heapq
from typing import Any, Sequence

from lamina.autograd import grad_mode
from lamina.autograd.derivative import SECOND_BACKWARD
from lamina.autograd.graph import (
    STALE,
    AccumulateGrad,
    Edge,
    Node,
    existing_accumulator,
    gradient_edge,
    is_stale,
)
from lamina.frontend import ops
from lamina.frontend.tensor import Tensor


def _as_tuple(x: Any) -> tuple:
    if x is None:
        return ()
    if isinstance(x, Tensor):
        return (x,)
    return tuple(x)


def _seed_grads(outputs: tuple[Tensor, ...], grads: tuple[Any, ...], what: str
                ) -> list[Tensor]:
    if len(grads) != len(outputs):
        raise RuntimeError(f"{what}: got {len(grads)} gradients for {len(outputs)} outputs")
    seeds = []
    for i, (out, g) in enumerate(zip(outputs, grads)):
        if not isinstance(out, Tensor):
            raise TypeError(f"{what}: expected Tensors as outputs, got {type(out).__name__}")
        if out._a is None:
            raise RuntimeError(f"{what}: cannot run the eager autograd tape on a tensor traced "
                               "by lamina.compile (the autodiff pass differentiates traces)")
        if not out.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have "
                               "a grad_fn")
        if is_stale(out):
            raise RuntimeError(STALE)
        if g is None:
            if out.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = ops.ones(out.shape, dtype=out.dtype, device=out.device)
        elif not isinstance(g, Tensor):
            g = ops.full(out.shape, g, dtype=out.dtype, device=out.device)
        elif tuple(g.shape) != tuple(out.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} "
                               f"and output[{i}] has a shape of {out.shape}.")
        elif g.dtype is not out.dtype:
            g = ops.cast(g, out.dtype)
        seeds.append(g)
    return seeds


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False, grad_variables: Any = None,
             inputs: Any = None) -> None:
    """Accumulate d(tensors)/d(leaf) into each leaf's ``.grad`` (``torch.autograd.backward``)."""
    outputs = _as_tuple(tensors)
    if grad_tensors is None:
        grad_tensors = grad_variables
    grads = _as_tuple(grad_tensors) if grad_tensors is not None else (None,) * len(outputs)
    if isinstance(grad_tensors, Tensor):
        grads = (grad_tensors,)
    tr = _tracing(outputs)
    if tr is not None:  # inside lamina.compile: gradients through the autodiff pass
        from lamina.frontend import step_backward

        targets = _as_tuple(inputs) or None
        step_backward.backward(tr, outputs, step_backward.check_seeds(outputs, grads),
                               retain_graph, create_graph, targets)
        return
    seeds = _seed_grads(outputs, grads, "backward")
    if retain_graph is None:
        retain_graph = create_graph
    targets = _as_tuple(inputs) or None
    if inputs is not None and not targets:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    run(outputs, seeds, retain_graph, create_graph, targets, accumulate=True)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, only_inputs: bool = True, allow_unused: bool | None = None,
         is_grads_batched: bool = False, materialize_grads: bool = False
         ) -> tuple[Tensor | None, ...]:
    """The gradients of ``outputs`` with respect to ``inputs`` (``torch.autograd.grad``);
    nothing is accumulated into ``.grad``."""
    if is_grads_batched:
        raise NotImplementedError("grad(is_grads_batched=True) is not supported")
    outs = _as_tuple(outputs)
    ins = _as_tuple(inputs)
    if not ins:
        raise RuntimeError("grad requires non-empty inputs.")
    if allow_unused is None:
        allow_unused = materialize_grads
    elif materialize_grads and not allow_unused:
        raise ValueError("Expected allow_unused to be True or not passed when "
                         "materialize_grads=True, but got: allow_unused=False.")
    gouts = _as_tuple(grad_outputs) if grad_outputs is not None else (None,) * len(outs)
    if isinstance(grad_outputs, Tensor):
        gouts = (grad_outputs,)
    tr = _tracing(outs)
    if tr is not None:
        from lamina.frontend import step_backward

        return step_backward.grad(tr, outs, ins, step_backward.check_seeds(outs, gouts),
                                  retain_graph, create_graph, bool(allow_unused),
                                  materialize_grads)
    seeds = _seed_grads(outs, gouts, "grad")
    for t in ins:
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: inputs must be Tensors, got {type(t).__name__}")
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    result = run(outs, seeds, retain_graph, create_graph, ins, accumulate=False)
    out: list[Tensor | None] = []
    for t, g in zip(ins, result):
        if g is None:
            if not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been "
                                   "used in the graph. Set allow_unused=True if this is the "
                                   "desired behavior.")
            if materialize_grads:
                g = ops.zeros(t.shape, dtype=t.dtype, device=t.device)
        out.append(g)
    return tuple(out)


def _tracing(outputs: Sequence[Any]) -> Any:
    """The active ``lamina.compile`` trace when ``outputs`` are its symbolic tensors."""
    from lamina.frontend import trace

    tr = trace.current()
    if tr is None or not any(isinstance(o, Tensor) and o._a is None for o in outputs):
        return None
    return tr


# -- the walk --------------------------------------------------------------------------------------
def _target_edge(t: Tensor) -> tuple[Node, int] | None:
    """Where the gradient of input ``t`` is captured (None if no graph reaches it)."""
    ag = t._ag
    if ag.grad_fn is not None:
        return (ag.grad_fn, ag.output_nr)
    acc = existing_accumulator(t)
    return None if acc is None else (acc, 0)


def run(outputs: Sequence[Tensor], seeds: Sequence[Tensor], retain_graph: bool,
        create_graph: bool, inputs: Sequence[Tensor] | None, accumulate: bool
        ) -> list[Tensor | None]:
    """Run the graph from ``outputs``; returns the gradients of ``inputs`` (if given)."""
    roots: list[tuple[Edge, Tensor]] = [(gradient_edge(o), g) for o, g in zip(outputs, seeds)]
    fresh_seeds = [False] * len(roots)  # the caller may hold them
    nodes, deps = _discover([e[0] for e, _ in roots])
    captures: dict[tuple[int, int], list[int]] = {}
    if inputs is not None:
        for i, t in enumerate(inputs):
            edge = _target_edge(t)
            if edge is not None and edge[0] in nodes:
                captures.setdefault((id(edge[0]), edge[1]), []).append(i)
    targets = {k[0] for k in captures}
    needed = _needed(nodes, targets, accumulate) if inputs is not None else None
    # nodes that get gradients: those that run, and the inputs' own nodes (captured there)
    receivers = None if needed is None else needed | {n for n in nodes if id(n) in targets}
    captured: list[Tensor | None] = [None] * (len(inputs) if inputs is not None else 0)

    buffers: dict[Node, list[Tensor | None]] = {}
    # Gradients only this run holds (new buffers, sent once, seen by no hook): a leaf may
    # keep one as its .grad without a copy. Keyed by id; the dict keeps them alive.
    owned: dict[int, Tensor] = {}
    sent: set[int] = set()

    def send(node: Node, nr: int, g: Tensor, fresh: bool = False) -> None:
        if id(g) in sent:
            owned.pop(id(g), None)  # the same tensor goes to two places
        else:
            sent.add(id(g))
            if fresh:
                owned[id(g)] = g
        buf = buffers.get(node)
        if buf is None:
            buf = buffers[node] = [None] * _n_outputs(node)
        if buf[nr] is None:
            buf[nr] = g
            return
        total = ops.add(buf[nr], g)
        owned.pop(id(buf[nr]), None)
        owned.pop(id(g), None)
        buf[nr] = total
        owned[id(total)] = total

    prev = (grad_mode._state.enabled, grad_mode._state.inference)
    grad_mode._state.enabled, grad_mode._state.inference = create_graph, False
    try:
        for ((node, nr), g), made in zip(roots, fresh_seeds):
            send(node, nr, g, made)
        ready = [(-n.seq, id(n), n) for n in nodes if deps[n] == 0]
        heapq.heapify(ready)
        while ready:
            _, _, node = heapq.heappop(ready)
            grads = buffers.pop(node, None)
            run_it = needed is None or node in needed
            if grads is not None and (run_it or id(node) in targets):
                grads = _pre_hooks(node, grads, accumulate, owned)
                for nr, g in enumerate(grads):
                    for i in captures.get((id(node), nr), ()):
                        captured[i] = g
                        owned.pop(id(g), None)
                if run_it:
                    _execute(node, grads, receivers, retain_graph, create_graph, accumulate,
                             send, owned)
            for e in node.next_edges:
                if e is not None:
                    child = e[0]
                    deps[child] -= 1
                    if deps[child] == 0:
                        heapq.heappush(ready, (-child.seq, id(child), child))
    finally:
        grad_mode._state.enabled, grad_mode._state.inference = prev
    if inputs is not None and accumulate:
        for t, g in zip(inputs, captured):
            if g is not None and t._ag.grad_fn is not None:
                _accumulate(t, g, create_graph)  # a non-leaf input of backward(inputs=...)
    return captured


def _n_outputs(node: Node) -> int:
    types = getattr(node, "out_types", None)
    return 1 if types is None else len(types)


def _discover(roots: list[Node]) -> tuple[set[Node], dict[Node, int]]:
    nodes: set[Node] = set()
    deps: dict[Node, int] = {}
    stack = list(roots)
    for r in roots:
        deps.setdefault(r, 0)
    while stack:
        node = stack.pop()
        if node in nodes:
            continue
        nodes.add(node)
        for e in node.next_edges:
            if e is not None:
                child = e[0]
                deps[child] = deps.get(child, 0) + 1
                if child not in nodes:
                    stack.append(child)
    return nodes, deps


def _needed(nodes: set[Node], targets: set[int], accumulate: bool) -> set[Node]:
    """Nodes on a path to a target; a target's own node runs only if it leads to another
    target (or, for ``backward(inputs=...)`` on a leaf, to accumulate)."""
    memo: dict[Node, bool] = {}

    def leads(node: Node) -> bool:
        # iterative post-order: graphs can be deep (long chains of ops)
        stack = [(node, False)]
        while stack:
            n, done = stack.pop()
            if n in memo:
                continue
            kids = [e[0] for e in n.next_edges if e is not None]
            if not done:
                stack.append((n, True))
                stack.extend((k, False) for k in kids if k not in memo)
                continue
            memo[n] = any(id(k) in targets or memo[k] for k in kids)
        return memo[node]

    out = set()
    for n in nodes:
        if leads(n) or (accumulate and id(n) in targets and isinstance(n, AccumulateGrad)):
            out.add(n)
    return out


def _pre_hooks(node: Node, grads: list[Tensor | None], accumulate: bool,
               owned: dict[int, Tensor]) -> list[Tensor | None]:
    """Tensor hooks (in order; a hook may replace the gradient), then ``retain_grad``."""
    if isinstance(node, AccumulateGrad):
        for hook in list(node.variable._ag.hooks or ()):
            owned.pop(id(grads[0]), None)  # the hook may keep it
            r = hook(grads[0])
            if r is not None:
                grads[0] = r
        return grads
    if node.pre_hooks:
        for nr, hooks in node.pre_hooks.items():
            for hook in list(hooks):
                if grads[nr] is not None:
                    owned.pop(id(grads[nr]), None)
                    r = hook(grads[nr])
                    if r is not None:
                        grads[nr] = r
    if node.retained and accumulate:
        for nr, ref in node.retained.items():
            t = ref()
            if t is not None and grads[nr] is not None:
                _accumulate(t, grads[nr], grad_mode._state.enabled)
    return grads


def _execute(node: Node, grads: list[Tensor | None], receivers: set[Node] | None,
             retain_graph: bool, create_graph: bool, accumulate: bool, send: Any,
             owned: dict[int, Tensor]) -> None:
    if isinstance(node, AccumulateGrad):
        if accumulate:
            g = grads[0]
            _accumulate(node.variable, g, create_graph, owned.pop(id(g), None) is not None)
        return
    needs = [e is not None and (receivers is None or e[0] in receivers)
             for e in node.next_edges]
    if not any(needs):
        return
    if node.released:
        raise RuntimeError(SECOND_BACKWARD)
    for g in grads:
        owned.pop(id(g), None)  # consumed
    in_grads = node.apply(grads, needs, create_graph)
    if not retain_graph:
        node.release()
    fresh = getattr(in_grads, "fresh", ()) or (False,) * len(in_grads)
    for e, g, need, made in zip(node.next_edges, in_grads, needs, fresh):
        if e is not None and g is not None and need:
            send(e[0], e[1], g, made)


def _accumulate(t: Tensor, g: Tensor, create_graph: bool, owned: bool = False) -> None:
    """``t.grad += g`` with PyTorch's rules: the first gradient is stored as is when only
    the engine holds it, else as a copy (never aliasing another tensor); later ones are
    added in place, or out of place when the backward is itself recorded."""
    from lamina.frontend.inplace import add_

    if tuple(g.shape) != tuple(t.shape) or g.dtype is not t.dtype:
        raise RuntimeError(f"autograd: gradient of shape {list(g.shape)} ({g.dtype.name}) for "
                           f"a tensor of shape {list(t.shape)} ({t.dtype.name})")
    ag = t._ag
    old = ag.grad
    if old is None:
        ag.grad = g if owned and not create_graph else ops.clone(g)
    elif create_graph or old.requires_grad:
        ag.grad = ops.add(old, g)
    else:
        with grad_mode.no_grad():
            add_(old, g)
