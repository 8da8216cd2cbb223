"""``lamina bench``: time a compiled function against eager Lamina, or a suite vs numpy/PyTorch.

Every measurement warms up first, then takes ``--repeat`` samples; a sample
runs the function enough times to last about a millisecond, so tiny ops are
not dominated by the timer. The table gives median, min and max per call and,
in the same run, the ratio of each peer's median to Lamina's (> 1: Lamina is
faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from lamina.tools.loader import UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmark FILE.py:NAME or a built-in suite",
                       description="Benchmark FILE.py:NAME compiled (vs eager), or a built-in "
                       "suite (vs numpy and PyTorch when installed).")
    p.add_argument("target", nargs="?", metavar="FILE.py:NAME")
    p.add_argument("--suite", choices=sorted(SUITES), help="a built-in suite instead of a file")
    p.add_argument("--input", action="append", default=[], metavar="SPEC",
                   help="an input like 64x784xf32 (repeat per argument)")
    p.add_argument("--repeat", type=int, default=7, help="timed samples (default 7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    p.add_argument("--quick", action="store_true", help="suites: smaller sizes")
    p.set_defaults(run=run)


@dataclass
class Timing:
    median: float
    min: float
    max: float


def measure(fn: Callable[[], Any], repeat: int = 7, warmup: int = 2) -> Timing:
    """Seconds per call of ``fn``: median, min and max over ``repeat`` samples."""
    for _ in range(max(warmup, 1)):
        fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    number = max(1, min(10_000, int(1e-3 / max(once, 1e-9))))
    samples = []
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return Timing(statistics.median(samples), min(samples), max(samples))


def _fmt(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _cell(t: Timing | None) -> str:
    return "-" if t is None else f"{_fmt(t.median)} ({_fmt(t.min)}..{_fmt(t.max)})"


def table(rows: list[tuple[str, dict[str, Timing | None]]], peers: list[str]) -> str:
    """Markdown table: lamina and each peer (median (min..max)), then peer/lamina ratios."""
    head = ["case", "lamina", *peers, *[f"{p}/lamina" for p in peers]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case, t in rows:
        ratios = [f"{t[p].median / t['lamina'].median:.2f}x" if t.get(p) else "-"
                  for p in peers]
        lines.append("| " + " | ".join([case, _cell(t["lamina"]),
                                        *[_cell(t.get(p)) for p in peers], *ratios]) + " |")
    return "\n".join(lines)


def _torch() -> Any:
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch


# -- suites: (case name, lamina fn, its inputs as numpy, numpy fn, torch fn) ------------------

def _elementwise(quick: bool) -> list[tuple]:
    cases = []
    for n in ((1 << 12, 1 << 20) if quick else (1 << 12, 1 << 20, 1 << 24)):
        a = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        cases.append((f"relu(x*1.5-0.25) n={n}", lambda L, x: L.relu(x * 1.5 - 0.25), [a],
                      lambda x: np.maximum(x * 1.5 - 0.25, 0), lambda T, x: T.relu(x * 1.5 - 0.25)))
        cases.append((f"a+b n={n}", lambda L, x, y: x + y, [a, a[::-1].copy()],
                      lambda x, y: x + y, lambda T, x, y: x + y))
    return cases


def _matmul(quick: bool) -> list[tuple]:
    cases = []
    for n in ((64, 256) if quick else (64, 256, 1024)):
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        cases.append((f"matmul {n}x{n}", lambda L, x, y: x @ y, [a, b], lambda x, y: x @ y,
                      lambda T, x, y: x @ y))
    return cases


def _softmax(quick: bool) -> list[tuple]:
    rows = 256 if quick else 4096
    a = np.random.default_rng(0).standard_normal((rows, 1024)).astype(np.float32)

    def np_softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return [(f"softmax {rows}x1024", lambda L, x: L.softmax(x, 1), [a], np_softmax,
             lambda T, x: T.softmax(x, 1))]


def _mlp(quick: bool) -> list[tuple]:
    rng = np.random.default_rng(0)
    batch = 64
    x = rng.standard_normal((batch, 784)).astype(np.float32)
    w1 = (rng.standard_normal((784, 256)) * 0.05).astype(np.float32)
    w2 = (rng.standard_normal((256, 10)) * 0.05).astype(np.float32)
    return [(f"mlp 784-256-10 batch {batch}", lambda L, x, a, b: L.relu(x @ a) @ b, [x, w1, w2],
             lambda x, a, b: np.maximum(x @ a, 0) @ b, lambda T, x, a, b: T.relu(x @ a) @ b)]


SUITES: dict[str, Callable[[bool], list[tuple]]] = {
    "elementwise": _elementwise, "matmul": _matmul, "softmax": _softmax, "mlp": _mlp}


def _time_case(lamina: Any, torch: Any, lfn: Callable, arrays: list[np.ndarray], nfn: Callable,
               tfn: Callable, repeat: int, warmup: int) -> dict[str, Timing | None]:
    fn = lamina.compile(lambda *xs: lfn(lamina, *xs))
    xs = [lamina.from_numpy(a) for a in arrays]
    t: dict[str, Timing | None] = {"lamina": measure(lambda: fn(*xs), repeat, warmup),
                                   "numpy": measure(lambda: nfn(*arrays), repeat, warmup)}
    if torch is not None:
        ts = [torch.from_numpy(a) for a in arrays]
        t["torch"] = measure(lambda: tfn(torch, *ts), repeat, warmup)
    return t


def run_suite(name: str, quick: bool, repeat: int, warmup: int) -> str:
    import lamina

    torch = _torch()
    peers = ["numpy"] + (["torch"] if torch is not None else [])
    rows = [(case, _time_case(lamina, torch, lfn, arrays, nfn, tfn, repeat, warmup))
            for case, lfn, arrays, nfn, tfn in SUITES[name](quick)]
    note = "" if torch is not None else "\n(PyTorch is not installed: no torch column)"
    return f"suite {name}: seconds per call, median (min..max)\n" + table(rows, peers) + note


def run_target(text: str, specs: list[str], repeat: int, warmup: int) -> str:
    from lamina.frontend.compile import CompiledFunction
    from lamina.tools.loader import load_target

    target = load_target(text)
    inputs = target.example_inputs(specs)
    cf = CompiledFunction(target.fn, target.name)
    t0 = time.perf_counter()
    cf(*inputs)
    first = time.perf_counter() - t0
    import lamina

    with lamina.no_grad():
        t = {"lamina": measure(lambda: cf(*inputs), repeat, warmup),
             "eager": measure(lambda: target.fn(*inputs), repeat, warmup)}
    shapes = ", ".join("x".join(map(str, x.shape)) + f" {x.dtype}" for x in inputs)
    return (f"{target.name}({shapes}): first call (trace + compile) {_fmt(first)}\n"
            + table([(f"{target.name} compiled vs eager", t)], ["eager"]))


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1 or args.warmup < 0:
        raise UsageError("--repeat must be >= 1 and --warmup >= 0")
    if (args.target is None) == (args.suite is None):
        raise UsageError("give either FILE.py:NAME or --suite NAME "
                         f"(suites: {', '.join(sorted(SUITES))})")
    if args.suite:
        print(run_suite(args.suite, args.quick, args.repeat, args.warmup))
    else:
        print(run_target(args.target, args.input, args.repeat, args.warmup))
    return 0
