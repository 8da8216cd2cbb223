"""GPU images (cubin, or PTX without ptxas) on disk, beside the CPU kernel cache.

A loop-stage program's GPU image depends on its loop IR text, the target
architecture, the code that turns loops into PTX (``gpu-map``, the NVPTX and
shared LLVM body writers), the kill switches those read from the environment,
llvmlite's version and whether ptxas assembled it. All of that goes into the
key, so a warm process neither runs the NVPTX backend nor ptxas, and a change
to any of it misses instead of loading a stale image. Entries are written
atomically; one whose checksum does not match is rebuilt and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lamina

STATS = {"hits": 0, "misses": 0, "corrupt": 0, "disk_writes": 0, "disk_errors": 0}
_SWITCHES = ("LAMINA_GPU_COOP", "LAMINA_GPU_UNROLL", "LAMINA_GPU_TILED_MATMUL")

Blocks = dict[str, tuple[int, int, int]]


@functools.cache
def _code_hash() -> str:
    """sha256 of the sources that turn loop IR into a GPU image (hashed once)."""
    root = Path(lamina.__file__).parent
    files = sorted([*(root / "backends" / "llvm").glob("*.py"),
                    *(root / "backends" / "nvptx").glob("*.py"),
                    root / "passes" / "gpu_map.py", root / "ir" / "dialects" / "gpu.py"])
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def key(loop_text: str, arch: str, assembled: bool) -> str:
    import llvmlite

    parts = [loop_text, arch, "cubin" if assembled else "ptx", _code_hash(), lamina.__version__,
             llvmlite.__version__, *(f"{k}={os.environ.get(k, '')}" for k in _SWITCHES)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _directory() -> Path | None:
    from lamina.runtime import cache

    d = cache._CACHE.directory()
    if d is None:
        return None
    sub = d / "cuda"
    try:
        sub.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    return sub


def load_or_build(loop_text: str, arch: str, assembled: bool,
                  build: Callable[[], tuple[bytes | str, Blocks]]) -> tuple[bytes | str, Blocks]:
    """The image and launch shapes of a program: from disk, or ``build()`` and stored."""
    from lamina.runtime.cache import _write_atomic

    d = _directory()
    k = key(loop_text, arch, assembled)
    if d is not None:
        hit = _load(d, k)
        if hit is not None:
            STATS["hits"] += 1
            return hit
    STATS["misses"] += 1
    image, blocks = build()
    if d is not None:
        data = image if isinstance(image, bytes) else image.encode()
        meta = {"kind": "cubin" if isinstance(image, bytes) else "ptx",
                "sha256": hashlib.sha256(data).hexdigest(),
                "blocks": {n: list(b) for n, b in blocks.items()}}
        try:
            _write_atomic(d / f"{k}.img", data)
            _write_atomic(d / f"{k}.json", json.dumps(meta).encode())
            STATS["disk_writes"] += 1
        except OSError:
            STATS["disk_errors"] += 1
    return image, blocks


def _load(d: Path, k: str) -> tuple[bytes | str, Blocks] | None:
    try:
        meta = json.loads((d / f"{k}.json").read_text())
        data = (d / f"{k}.img").read_bytes()
    except (OSError, ValueError):
        return None
    try:
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ValueError("checksum")
        blocks = {n: (int(b[0]), int(b[1]), int(b[2])) for n, b in meta["blocks"].items()}
        image: bytes | str = data if meta["kind"] == "cubin" else data.decode()
    except (KeyError, ValueError, TypeError, IndexError, UnicodeDecodeError):
        STATS["corrupt"] += 1
        return None
    return image, blocks


def stats() -> dict[str, Any]:
    return dict(STATS)
