"""The kernel cache: named key parts, memory and disk levels, other processes, corruption,
directory permissions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lamina.runtime import cache as cache_mod
from lamina.runtime import cache_stats, clear_cache, compile_module, reset_cache_stats
from lamina.runtime.cache import CacheKey, kernel_source, make_key

from .llvm_kernels import binary_ir, iota_ir, module

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

PARTS = dict(ir="a" * 64, triple="x86_64-unknown-linux-gnu", cpu="sapphirerapids",
             features="+avx,+avx2,-avx512bf16", lamina="0.1.0", llvm="22.1.0", backend="b" * 64)


def _two_kernels():
    return module(binary_ir("add1", "add", "f32", 1), iota_ir("iota"))


def _check_add(cm):
    a = np.arange(50, dtype=np.float32)
    out = np.zeros(50, np.float32)
    cm.kernels["add1"](a, a, out)
    np.testing.assert_array_equal(out, 2 * a)


def _entry(cache_dir: Path, cm) -> Path:
    d = cache_dir / cm.key.digest
    assert (d / "meta.json").is_file()
    return d


# -- the key -------------------------------------------------------------------------


def test_key_digest_is_stable_across_runs_and_processes():
    # A fixed digest for fixed parts: no Python hash randomisation, no ordering accident.
    key = CacheKey(**PARTS)
    assert key.digest == CacheKey(**PARTS).digest
    assert key.digest == "aeb050b717438eb9318a53ef39eef2dfe9b7bc7cd9aa831a3b5fd384161720e5"
    out = subprocess.run(
        [sys.executable, "-c", "from lamina.runtime.cache import CacheKey; import json, sys; "
         "print(CacheKey(**json.loads(sys.argv[1])).digest)", json.dumps(PARTS)],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == key.digest


def test_key_explains_a_miss_part_by_part():
    key = CacheKey(**PARTS)
    other = CacheKey(**{**PARTS, "cpu": "znver4", "llvm": "23.0.0"})
    assert key.diff(other) == ["cpu", "llvm"]
    assert other.digest != key.digest
    why = key.explain(other)
    assert "cpu: 'sapphirerapids' -> 'znver4'" in why and "llvm: '22.1.0' -> '23.0.0'" in why
    assert "triple" not in why
    assert key.explain(CacheKey(**PARTS)) == "same key"
    text = key.describe()
    for name in PARTS:
        assert f"  {name} " in text
    assert key.digest[:16] in text


def test_key_depends_on_kernel_text_only():
    a = _two_kernels()
    with_func = module(binary_ir("add1", "add", "f32", 1), iota_ir("iota"),
                       "func @f(%x: memref<?xf32>) -> (memref<?xf32>) {\n  return %x\n}")
    assert kernel_source(a) == kernel_source(with_func)
    ka, kb = make_key(kernel_source(a)), make_key(kernel_source(with_func))
    assert ka == kb
    changed = module(binary_ir("add1", "mul", "f32", 1), iota_ir("iota"))
    assert make_key(kernel_source(changed)).diff(ka) == ["ir"]


# -- memory and disk -------------------------------------------------------------------


def test_compile_once_then_memory_then_disk(cache_dir, hand_emit):
    cm = compile_module(_two_kernels())
    _check_add(cm)
    s = cache_stats()
    assert (s["compiles"], s["misses"], s["hits"], s["disk_writes"]) == (1, 1, 0, 1)
    assert s["compile_seconds"] > 0
    cm2 = compile_module(_two_kernels())
    assert cm2.kernels["add1"] is cm.kernels["add1"]
    assert cache_stats()["memory_hits"] == 1 and cache_stats()["compiles"] == 1
    d = _entry(cache_dir, cm)
    meta = json.loads((d / "meta.json").read_text())
    assert meta["key"] == cm.key.parts() and meta["object"]["size"] == len(
        (d / "object.o").read_bytes())
    assert (d / "kernels.lir").read_text() == kernel_source(_two_kernels())
    # A fresh process (simulated: empty memory) finds the entry on disk.
    cache_mod.cache().memory.clear()
    reset_cache_stats()
    cm3 = compile_module(_two_kernels())
    _check_add(cm3)
    s = cache_stats()
    assert (s["compiles"], s["disk_hits"], s["hits"], s["misses"]) == (0, 1, 1, 0)
    assert hand_emit.calls == 1
    assert "define void @add1" in cm3.llvm_ir  # read back from the entry
    (d / "kernel.ll").unlink()
    cache_mod.cache().memory.clear()
    assert "define void @iota" in compile_module(_two_kernels()).llvm_ir  # emitted again


def test_clear_cache_removes_memory_and_disk(cache_dir, hand_emit):
    cm = compile_module(_two_kernels())
    assert _entry(cache_dir, cm).is_dir()
    clear_cache()
    assert not (cache_dir / cm.key.digest).exists()
    compile_module(_two_kernels())
    assert cache_stats()["compiles"] == 2


_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import llvm_kernels as K
    from lamina.runtime import cache
    cache._emit_module = K.HandEmitter()
    cm = cache.compile_module(K.module(K.binary_ir("add1", "add", "f32", 1), K.iota_ir("iota")))
    a = np.arange(1000, dtype=np.float32)
    out = np.zeros(1000, np.float32)
    cm.kernels["add1"](a, a, out)
    assert (out == 2 * a).all()
    print(json.dumps(cache.cache_stats()))
""")


def _child(cache_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "LAMINA_CACHE_DIR": str(cache_dir)}
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(HERE)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stats(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_second_process_compiles_nothing(cache_dir, hand_emit):
    compile_module(_two_kernels())
    assert cache_stats()["compiles"] == 1
    s = _stats(_child(cache_dir))
    assert s["compiles"] == 0 and s["disk_hits"] > 0 and s["misses"] == 0


def test_concurrent_processes_compile_once(cache_dir):
    procs = [_child(cache_dir) for _ in range(3)]
    stats = [_stats(p) for p in procs]
    assert sum(s["compiles"] for s in stats) == 1
    assert sum(s["disk_hits"] for s in stats) == 2
    assert sum(s["corrupt"] for s in stats) == 0


# -- corruption ---------------------------------------------------------------------------


def _damage(d: Path, how: str) -> None:
    obj = d / "object.o"
    data = obj.read_bytes()
    if how == "garbage":
        obj.write_bytes(os.urandom(len(data)))
    elif how == "truncated":
        obj.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        obj.write_bytes(b"")
    elif how == "missing":
        obj.unlink()
    elif how == "meta-garbage":
        (d / "meta.json").write_bytes(b"\x00\xffnot json")
    elif how == "meta-truncated":
        meta = (d / "meta.json").read_bytes()
        (d / "meta.json").write_bytes(meta[: len(meta) // 2])
    elif how == "meta-other-key":
        meta = json.loads((d / "meta.json").read_text())
        meta["key"]["cpu"] = "other"
        (d / "meta.json").write_text(json.dumps(meta))
    elif how == "meta-wrong-shape":
        (d / "meta.json").write_text(json.dumps([1, 2, 3]))


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "missing", "meta-garbage",
                                 "meta-truncated", "meta-other-key", "meta-wrong-shape"])
def test_corrupt_entry_is_detected_deleted_and_recompiled(cache_dir, hand_emit, how):
    d = _entry(cache_dir, compile_module(_two_kernels()))
    _damage(d, how)
    cache_mod.cache().memory.clear()
    reset_cache_stats()
    cm = compile_module(_two_kernels())
    _check_add(cm)
    s = cache_stats()
    assert (s["corrupt"], s["compiles"], s["disk_hits"]) == (1, 1, 0)
    # The entry was rewritten whole: the next process-like lookup is a clean disk hit.
    cache_mod.cache().memory.clear()
    reset_cache_stats()
    _check_add(compile_module(_two_kernels()))
    assert cache_stats()["disk_hits"] == 1 and cache_stats()["corrupt"] == 0


def test_corrupt_entry_in_another_process(cache_dir, hand_emit):
    d = _entry(cache_dir, compile_module(_two_kernels()))
    _damage(d, "garbage")
    s = _stats(_child(cache_dir))
    assert (s["corrupt"], s["compiles"]) == (1, 1)


def test_half_written_entry_without_metadata_is_a_plain_miss(cache_dir, hand_emit):
    d = _entry(cache_dir, compile_module(_two_kernels()))
    (d / "meta.json").unlink()  # as if a writer died before its last rename
    cache_mod.cache().memory.clear()
    reset_cache_stats()
    compile_module(_two_kernels())
    s = cache_stats()
    assert (s["corrupt"], s["compiles"]) == (0, 1)
    assert (d / "meta.json").is_file()


# -- the directory ---------------------------------------------------------------------


def test_directory_is_created_private(cache_dir, hand_emit):
    assert not cache_dir.exists()
    compile_module(_two_kernels())
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    for entry in cache_dir.iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) == 0o700


def test_group_or_world_writable_directory_is_repaired(cache_dir, hand_emit):
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o777)
    compile_module(_two_kernels())
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert cache_stats()["disk_writes"] == 1


def test_unusable_directory_falls_back_to_memory(cache_dir, hand_emit):
    cache_dir.write_text("a file, not a directory")
    cm = compile_module(_two_kernels())
    _check_add(cm)
    assert cache_stats()["compiles"] == 1 and cache_stats()["disk_writes"] == 0
    assert "define void @add1" in cm.llvm_ir


def test_module_without_kernels_needs_no_compiler(cache_dir):
    cm = compile_module(module("func @f(%x: memref<?xf32>) -> (memref<?xf32>) {\n"
                               "  return %x\n}"))
    assert cm.kernels == {} and cm.llvm_ir == "" and cache_stats()["compiles"] == 0


def test_directory_removed_while_running_is_made_again(cache_dir, hand_emit):
    import shutil

    compile_module(_two_kernels())
    shutil.rmtree(cache_dir)
    cache_mod.cache().memory.clear()
    compile_module(_two_kernels())
    assert cache_stats()["disk_writes"] == 2 and cache_stats()["disk_errors"] == 0
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
