"""Running the ``lamina`` command in a subprocess, with this checkout and a private cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MODEL = '''
import lamina
nn = lamina.nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(lamina.relu(self.fc1(x)))


def f(x, y):
    return lamina.relu(x * 1.5 - y)


def two(x):
    return x + 1.0, x.sum(1)


def example_inputs():
    return [lamina.ones(2, 16)]


not_callable = 3
'''


def env(cache: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["LAMINA_CACHE_DIR"] = str(cache)
    e.pop("LAMINA_TRACEBACK", None)
    return e


def lamina_cmd(args: list[str], cache: Path, cwd: Path | None = None,
               timeout: float = 240) -> subprocess.CompletedProcess:
    """``lamina ARGS`` as a user runs it (through ``python -m lamina.tools.cli``)."""
    return subprocess.run([sys.executable, "-m", "lamina.tools.cli", *args], cwd=cwd,
                          env=env(cache), capture_output=True, text=True, timeout=timeout)


def write_model(dirpath: Path) -> Path:
    p = dirpath / "model.py"
    p.write_text(MODEL)
    return p
