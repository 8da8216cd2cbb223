"""``lamina info``: versions, the LLVM target, CUDA availability and the cache location."""

from __future__ import annotations

import argparse
import ctypes.util
import importlib.util
import platform
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="versions, CPU target, CUDA, cache location",
                       description="Print what Lamina runs on: versions, the LLVM target "
                       "triple and CPU features, CUDA availability and the kernel cache.")
    p.add_argument("--all-features", action="store_true",
                   help="list every CPU feature, not only the enabled ones")
    p.set_defaults(run=run)


def _version(name: str) -> str:
    if importlib.util.find_spec(name) is None:
        return "not installed"
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "installed"


def cuda_status() -> str:
    """Whether Lamina could run on a GPU here: the NVPTX backend and the CUDA driver."""
    backend = importlib.util.find_spec("lamina.backends.nvptx") is not None
    driver = ctypes.util.find_library("cuda")
    parts = ["nvptx backend " + ("present" if backend else "absent"),
             f"CUDA driver {'found (' + driver + ')' if driver else 'not found'}"]
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    import llvmlite
    import numpy as np

    import lamina
    from lamina.backends.llvm.target import host_target
    from lamina.runtime.cache import default_directory

    t = host_target()
    feats = [f for f in t.features.split(",") if f]
    shown = feats if args.all_features else [f[1:] for f in feats if f.startswith("+")]
    rows = [
        ("lamina", lamina.__version__), ("python", sys.version.split()[0]),
        ("numpy", np.__version__), ("llvmlite", llvmlite.__version__), ("LLVM", t.llvm_version),
        ("torch", _version("torch")), ("platform", platform.platform()),
        ("target triple", t.triple), ("CPU", t.cpu),
        ("CPU features", " ".join(shown) or "(none reported)"),
        ("CUDA", cuda_status()), ("cache directory", str(default_directory())),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
