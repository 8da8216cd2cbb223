"""A warm process recompiles nothing: eager ops and compiled functions come from disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, lamina
from lamina.runtime import cache_stats
x = lamina.ones(5, 7)
y = (x * 2.0 + 1.0).exp().sum(dim=1)
z = x @ x.t()
f = lamina.compile(lambda a, b: ((a * b + 1.0).exp()).sum(dim=1))
w = f(x, x)
print(json.dumps({"stats": cache_stats(), "y": y.tolist(), "w": w.tolist()}))
"""


def _run(cache: Path) -> dict:
    env = dict(os.environ, LAMINA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing(tmp_path):
    cold = _run(tmp_path / "cache")
    assert cold["stats"]["compiles"] > 0
    warm = _run(tmp_path / "cache")
    assert warm["stats"]["compiles"] == 0, warm["stats"]
    assert warm["stats"]["hits"] > 0
    assert warm["y"] == cold["y"] and warm["w"] == cold["w"]


def test_corrupted_cache_entry_is_recompiled(tmp_path):
    cache = tmp_path / "cache"
    cold = _run(cache)
    objects = [p for p in cache.rglob("*") if p.is_file() and p.suffix in (".o", ".obj")]
    if not objects:  # whatever the object file is called, corrupt every binary entry
        objects = [p for p in cache.rglob("*") if p.is_file() and p.suffix not in
                   (".json", ".ll", ".txt", ".lock", ".loop")]
    assert objects
    for p in objects:
        p.write_bytes(b"garbage" * 3)
    again = _run(cache)
    assert again["stats"]["compiles"] > 0
    assert again["y"] == cold["y"] and again["w"] == cold["w"]
