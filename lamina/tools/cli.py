"""``lamina``: the command line (``lamina ir|viz|compile|bench|cache|info``).

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``. User mistakes (``UsageError``) and errors raised by the
user's code or the compiler are printed as one line and exit with status 1 (2
for bad command-line syntax, from argparse); ``LAMINA_TRACEBACK=1`` shows the
full traceback instead, for debugging Lamina itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lamina.tools import aot, bench, cache_cmd, info, ir, viz
from lamina.tools.loader import UsageError

COMMANDS = (ir, viz, aot, bench, cache_cmd, info)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lamina", description="Inspect, compile, benchmark and deploy Lamina programs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for cmd in COMMANDS:
        cmd.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (also the script's)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UsageError as e:
        print(f"lamina {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if os.environ.get("LAMINA_TRACEBACK"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"lamina {args.command}: error: {type(e).__name__}: {first} "
              "(LAMINA_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
