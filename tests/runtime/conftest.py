"""Fixtures: a private cache directory per test and the hand-written kernel emitter."""

from __future__ import annotations

import pytest

from lamina.runtime import cache as cache_mod

from .llvm_kernels import HandEmitter, binary, iota, total


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """LAMINA_CACHE_DIR in a temp dir, an empty memory cache and zeroed counters."""
    d = tmp_path / "lamina-cache"
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(d))
    cache_mod.cache().memory.clear()
    cache_mod.reset_cache_stats()
    yield d
    cache_mod.cache().memory.clear()
    cache_mod.reset_cache_stats()


HAND_LLVM = {
    "add1": binary("add1", "add", "f32", 1),
    "mul1": binary("mul1", "mul", "f32", 1),
    "add2": binary("add2", "add", "f32", 2),
    "mul2": binary("mul2", "mul", "f32", 2),
    "sadd2": binary("sadd2", "add", "f32", 2),
    "iadd2": binary("iadd2", "add", "i64", 2),
    "dadd1": binary("dadd1", "add", "f64", 1),
    "iota": iota("iota"),
    "total": total("total"),
}


@pytest.fixture
def hand_emit(monkeypatch):
    """Replace the code generator by the hand-written LLVM IR of ``HAND_LLVM``."""
    emitter = HandEmitter(HAND_LLVM)
    monkeypatch.setattr(cache_mod, "_emit_module", emitter)
    return emitter
