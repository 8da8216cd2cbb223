"""GPU images are cached on disk: a new process (here: an emptied memory cache) loads the
cubin/PTX instead of running gpu-map, the NVPTX backend and ptxas; corrupt entries and
changed kill switches miss. Runs on the host stand-in device (no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.runtime.cuda import fake, image_cache
from lamina.runtime.cuda import program as P


@pytest.fixture
def dev(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(tmp_path))
    drv = fake.install()
    try:
        yield drv.device(0)
    finally:
        fake.uninstall()


def _loop(fn, *arrays):
    return lamina.compile(fn).lower(*[lamina.tensor(a) for a in arrays], target="cuda").stages.loop


def _run(loop, dev, x):
    prog = P.CudaProgram(loop, dev)
    (out,) = prog(P.CudaArray.from_numpy(dev, x))
    return out.numpy()


def test_a_warm_process_loads_the_image_from_disk(dev, monkeypatch, tmp_path):
    x = np.random.default_rng(0).standard_normal((37, 50)).astype(np.float32)
    loop = _loop(lambda a: (a * 2).exp().sum(1), x)
    before = image_cache.stats()
    first = _run(loop, dev, x)
    assert image_cache.stats()["misses"] == before["misses"] + 1
    assert list((tmp_path / "cuda").glob("*.img"))
    monkeypatch.setattr(P, "_CACHE", {})  # a new process: nothing in memory

    def no_build(*a, **k):
        raise AssertionError("the image should come from the disk cache")

    monkeypatch.setattr(P, "build_image", no_build)
    second = _run(loop, dev, x)
    assert image_cache.stats()["hits"] == before["hits"] + 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(second, np.exp(x * 2).sum(1), rtol=1e-5)


def test_corrupt_entries_and_changed_switches_rebuild(dev, monkeypatch, tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    loop = _loop(lambda a: a + 1, x)
    _run(loop, dev, x)
    for img in (tmp_path / "cuda").glob("*.img"):
        img.write_bytes(b"garbage")
    monkeypatch.setattr(P, "_CACHE", {})
    before = image_cache.stats()
    np.testing.assert_array_equal(_run(loop, dev, x), x + 1)
    after = image_cache.stats()
    assert after["corrupt"] == before["corrupt"] + 1 and after["misses"] == before["misses"] + 1
    text = "kernel text"
    assert image_cache.key(text, "sm_90", True) != image_cache.key(text, "sm_80", True)
    assert image_cache.key(text, "sm_90", True) != image_cache.key(text, "sm_90", False)
    k = image_cache.key(text, "sm_90", True)
    monkeypatch.setenv("LAMINA_GPU_UNROLL", "0")
    assert image_cache.key(text, "sm_90", True) != k
