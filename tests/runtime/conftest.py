"""Fixtures: a private cache directory per test and the hand-written kernel emitter."""

from __future__ import annotations

import pytest

from lamina.runtime import cache as cache_mod

from .llvm_kernels import HAND_LLVM, HandEmitter


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """LAMINA_CACHE_DIR in a temp dir, an empty memory cache and zeroed counters."""
    d = tmp_path / "lamina-cache"
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(d))
    # The key hashes the backend's sources; hash them afresh so that a child process
    # started by the test sees the same key even while the backend is being edited.
    cache_mod._backend_source_hash.cache_clear()
    cache_mod.cache().memory.clear()
    cache_mod.reset_cache_stats()
    yield d
    cache_mod.cache().memory.clear()
    cache_mod.reset_cache_stats()


@pytest.fixture
def hand_emit(monkeypatch):
    """Replace the code generator by the hand-written LLVM IR of ``HAND_LLVM``."""
    emitter = HandEmitter(HAND_LLVM)
    monkeypatch.setattr(cache_mod, "_emit_module", emitter)
    return emitter
