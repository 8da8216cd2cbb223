"""Guards of a compiled step: printable checks that decide whether a compiled entry applies.

A compiled step is valid for the input signature it was traced with (shapes,
dtypes, devices and ``requires_grad`` of the arguments) and for the Python
state its trace read: the ``training`` flag of each module, which parameters
have a ``.grad``, the shapes of captured tensors, optimizer state layouts.
Each is a ``Guard``; the first that fails names what changed, and that text
is the recompile warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Guard:
    """``get()`` must equal ``expected``; ``what`` names it in messages (``what expected !=
    got``, like the argument check's ``arg 0 shape (64, 64) != (32, 64)``)."""

    what: str
    get: Callable[[], Any]
    expected: Any

    def failure(self) -> str | None:
        try:
            got = self.get()
        except (KeyError, AttributeError, IndexError) as e:  # the state it reads is gone
            got = f"<{type(e).__name__}: {e}>"
        if got == self.expected:
            return None
        return f"{self.what} {_fmt(self.expected)} != {_fmt(got)}"


def _fmt(x: Any) -> str:
    return repr(tuple(x)) if isinstance(x, list) else repr(x)


def arg_key(a: Any, dynamic: bool) -> tuple:
    """What of one argument a compiled entry depends on."""
    from lamina.frontend.tensor import Tensor

    if isinstance(a, Tensor):
        shape = tuple(a.shape)
        if dynamic and shape:
            shape = (None, *shape[1:])
        return ("tensor", shape, a.dtype.name, str(a.device), a.requires_grad)
    if a is None or isinstance(a, (bool, int, float, str)):
        return ("const", type(a).__name__, a)
    raise TypeError(f"lamina.compile: arguments must be tensors or Python numbers/strings, got "
                    f"{type(a).__name__}")


def one_batch(args: Sequence[Any]) -> bool:
    """Whether every tensor argument with a leading axis has the same leading size.

    A ``dynamic=True`` program gives each argument a ``?`` leading size and its kernels
    take a size wherever the shapes say two axes meet, so it may only run when those
    sizes agree; other calls are specialised on their shapes."""
    from lamina.frontend.tensor import Tensor

    return len({a.shape[0] for a in args if isinstance(a, Tensor) and a.ndim}) <= 1


def signature(args: Sequence[Any], dynamic: bool = False) -> tuple:
    dynamic = dynamic and one_batch(args)
    return tuple(arg_key(a, dynamic) for a in args)


def explain(old: tuple, new: tuple) -> str:
    """Which part of the argument signature changed, compiled-for first:
    ``arg 0 shape (64, 64) != (32, 64)``."""
    if len(old) != len(new):
        return f"number of arguments {len(old)} != {len(new)}"
    names = ("shape", "dtype", "device", "requires_grad")
    for i, (o, n) in enumerate(zip(old, new)):
        if o == n:
            continue
        if o[0] == n[0] == "tensor":
            for name, a, b in zip(names, o[1:], n[1:]):
                if a != b:
                    return f"arg {i} {name} {_fmt(a)} != {_fmt(b)}"
        return f"arg {i} {_fmt(o[-1])} != {_fmt(n[-1])}"
    return "no change"
