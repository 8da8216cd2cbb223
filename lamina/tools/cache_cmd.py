"""``lamina cache stats|ls|clear``: the on-disk kernel cache (``LAMINA_CACHE_DIR``)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cache", help="kernel cache: stats, ls, clear",
                       description="Inspect or empty the on-disk kernel cache "
                       "(LAMINA_CACHE_DIR, default ~/.cache/lamina).")
    p.add_argument("action", choices=("stats", "ls", "clear"))
    p.set_defaults(run=run)


def entries(root: Path) -> list[dict[str, Any]]:
    """One record per complete cache entry: digest, bytes, kernels, modified time."""
    from lamina.runtime.cache import _is_digest

    out = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not (d.is_dir() and _is_digest(d.name)):
            continue
        size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
        kernels: list[str] = []
        src = d / "kernels.lir"
        if src.is_file():
            kernels = [line.split("@", 1)[1].split("(", 1)[0]
                       for line in src.read_text(errors="replace").splitlines()
                       if line.startswith("kernel @")]
        complete = (d / "meta.json").is_file()
        if complete:
            try:
                json.loads((d / "meta.json").read_text())
            except ValueError:
                complete = False
        out.append({"digest": d.name, "bytes": size, "kernels": kernels, "complete": complete,
                    "mtime": d.stat().st_mtime})
    return out


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def run(args: argparse.Namespace) -> int:
    from lamina.runtime.cache import clear_cache, default_directory

    root = default_directory()
    es = entries(root)
    if args.action == "stats":
        print(f"directory  {root}{'' if root.is_dir() else ' (does not exist yet)'}")
        print(f"entries    {len(es)} ({sum(not e['complete'] for e in es)} incomplete)")
        print(f"kernels    {sum(len(e['kernels']) for e in es)}")
        print(f"size       {_size(sum(e['bytes'] for e in es))}")
    elif args.action == "ls":
        if not es:
            print(f"(no entries in {root})")
        for e in es:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["mtime"]))
            names = ", ".join(e["kernels"][:4]) + (" ..." if len(e["kernels"]) > 4 else "")
            flag = "" if e["complete"] else " [incomplete]"
            print(f"{e['digest'][:16]}  {_size(e['bytes']):>9}  {when}  {names}{flag}")
    else:
        clear_cache()
        print(f"removed {len(es)} entries from {root}")
    return 0
