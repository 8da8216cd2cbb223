"""The kernel cache: compile each distinct kernel text once per process and once per machine.

The key is a ``CacheKey`` of named parts (kernel IR, target, versions) so a
miss can be explained part by part. Loaded libraries live in a dict in memory;
object code lives on disk under ``LAMINA_CACHE_DIR`` (default
``~/.cache/lamina``), one directory per key as Triton does::

    <dir>/<digest>/meta.json     key parts, object sha256 and size (written last)
    <dir>/<digest>/object.o      host object code
    <dir>/<digest>/kernel.ll     the LLVM IR, for inspection
    <dir>/<digest>/kernels.lir   the loop-stage kernel text, for inspection

Every file is written to a temporary file in the same directory and moved into
place with ``os.replace``, and a per-entry ``flock`` makes a process wait for
another that is compiling the same key, so concurrent processes never see half
an entry and never compile twice. An entry whose metadata or object does not
check out is counted as corrupt, deleted and recompiled.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import lamina
from lamina.ir.core import Module
from lamina.ir.printer import print_graph
from lamina.runtime.kernel import Kernel

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process lock, still atomic
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMAT = 1
_OBJECT, _META, _LLVM, _SOURCE, _LOCKFILE = "object.o", "meta.json", "kernel.ll", "kernels.lir", \
    ".lock"


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What a compiled object depends on, part by part.

    ``ir`` is the sha256 of the canonical kernel text; ``backend`` the sha256 of
    the code generator's source, so editing the emitter never reuses stale code.
    """

    ir: str
    triple: str
    cpu: str
    features: str
    lamina: str
    llvm: str
    backend: str

    def parts(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @functools.cached_property
    def digest(self) -> str:
        """sha256 over the named parts (each part hashed, so no separator is ambiguous)."""
        return _sha256("".join(f"{k}={_sha256(v)}\n" for k, v in self.parts().items()))

    def describe(self) -> str:
        """One line per part: its name, a short hash and (shortened) value."""
        lines = [f"kernel cache key {self.digest[:16]}"]
        for k, v in self.parts().items():
            shown = v if len(v) <= 60 else v[:57] + "..."
            lines.append(f"  {k:<8} {_sha256(v)[:12]}  {shown}")
        return "\n".join(lines)

    def diff(self, other: CacheKey) -> list[str]:
        """The names of the parts that differ from ``other``."""
        mine, theirs = self.parts(), other.parts()
        return [k for k in mine if mine[k] != theirs[k]]

    def explain(self, other: CacheKey) -> str:
        """Why ``other`` is a different entry: each differing part, old and new value."""
        changed = self.diff(other)
        if not changed:
            return "same key"
        mine, theirs = self.parts(), other.parts()
        return "\n".join(f"{k}: {mine[k]!r} -> {theirs[k]!r}" for k in changed)

    def __str__(self) -> str:
        return self.describe()


@functools.cache
def _backend_source_hash() -> str:
    """The sha256 of the LLVM backend's Python sources (a few files, hashed once)."""
    root = Path(lamina.__file__).parent / "backends" / "llvm"
    h = hashlib.sha256()
    for p in sorted(root.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _target():
    from lamina.backends.llvm import target

    return target


def _emit_module(module: Module) -> str:
    from lamina.backends.llvm.emit import emit_module

    return emit_module(module)


def make_key(source: str) -> CacheKey:
    """The key of the object code for kernel text ``source`` on this host."""
    info = _target().host_target()
    return CacheKey(ir=_sha256(source), triple=info.triple, cpu=info.cpu,
                    features=info.features, lamina=lamina.__version__, llvm=info.llvm_version,
                    backend=_backend_source_hash())


@dataclass(eq=False)
class Entry:
    """A loaded library for one key, with the text it came from and its kernels."""

    key: CacheKey
    library: Any
    source: str
    llvm_ir: str | None = None
    path: Path | None = None
    kernels: dict[str, Kernel] = field(default_factory=dict)


_COUNTERS = ("hits", "misses", "compiles", "compile_seconds", "memory_hits", "disk_hits",
             "corrupt", "disk_writes", "disk_errors")


def _empty_stats() -> dict[str, Any]:
    return {k: 0.0 if k == "compile_seconds" else 0 for k in _COUNTERS}


def default_directory() -> Path:
    """``LAMINA_CACHE_DIR`` or ``~/.cache/lamina``, read now."""
    env = os.environ.get("LAMINA_CACHE_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lamina"


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Corrupt(Exception):
    """A disk entry that does not check out (raised and handled inside the cache)."""


class KernelCache:
    """Memory and disk cache of compiled kernel libraries, with counters."""

    def __init__(self) -> None:
        self.memory: dict[str, Entry] = {}
        self.stats = _empty_stats()
        self._lock = threading.RLock()
        self._dirs: dict[Path, bool] = {}  # directory -> usable (checked once each)

    # -- the directory -------------------------------------------------------
    def directory(self) -> Path | None:
        """The usable cache directory, or None when it is missing and cannot be made private."""
        path = default_directory()
        ok = self._dirs.get(path)
        if ok is None:
            ok = self._dirs[path] = self._prepare(path)
        return path if ok else None

    @staticmethod
    def _prepare(path: Path) -> bool:
        """Create ``path`` with mode 0700, or check an existing one is ours and private."""
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = path.stat()
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(f"{path} is not a directory")
            if hasattr(os, "getuid") and st.st_uid != os.getuid():
                log.warning("kernel cache directory %s belongs to another user; using the "
                            "in-memory cache only", path)
                return False
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                # Anyone who can write here can plant code we would run: make it private.
                os.chmod(path, 0o700)
                log.warning("kernel cache directory %s was group/world-writable; its mode is "
                            "now 0700", path)
            return True
        except OSError as e:
            log.warning("kernel cache directory %s is unusable (%s); using the in-memory "
                        "cache only", path, e)
            return False

    # -- lookups -------------------------------------------------------------
    def get(self, source: str, emit: Callable[[], str], key: CacheKey | None = None) -> Entry:
        """The entry for kernel text ``source``: from memory, from disk, or compiled now.

        ``emit()`` returns the LLVM IR; it is called only when the key is on
        neither level.
        """
        key = key or make_key(source)
        entry = self.memory.get(key.digest)
        if entry is not None:
            self.stats["hits"] += 1
            self.stats["memory_hits"] += 1
            return entry
        with self._lock:
            entry = self.memory.get(key.digest)
            if entry is not None:
                self.stats["hits"] += 1
                self.stats["memory_hits"] += 1
                return entry
            d = self._entry_dir(key)
            if d is None:
                entry = self._compile(key, source, emit, None)
            else:
                entry = self._get_disk(d, key, source, emit)
            self.memory[key.digest] = entry
            return entry

    def _entry_dir(self, key: CacheKey) -> Path | None:
        """The entry directory of ``key`` (created), or None when there is no usable disk."""
        for _ in range(2):
            root = self.directory()
            if root is None:
                return None
            d = root / key.digest
            try:
                d.mkdir(mode=0o700, exist_ok=True)
                return d
            except FileNotFoundError:
                self._dirs.pop(root, None)  # the directory went away since it was checked
            except OSError as e:
                log.warning("cannot create kernel cache entry %s (%s)", d, e)
                break
        self.stats["disk_errors"] += 1
        return None

    def _get_disk(self, d: Path, key: CacheKey, source: str, emit: Callable[[], str]) -> Entry:
        with _file_lock(d / _LOCKFILE):
            try:
                entry = self._load(d, key, source)
            except Corrupt as e:
                self.stats["corrupt"] += 1
                log.warning("kernel cache entry %s is corrupt (%s); recompiling", d, e)
                _remove_entry_files(d)
                entry = None
            if entry is not None:
                self.stats["hits"] += 1
                self.stats["disk_hits"] += 1
                return entry
            return self._compile(key, source, emit, d)

    def _load(self, d: Path, key: CacheKey, source: str) -> Entry | None:
        """The entry stored in ``d``; None when there is none; Corrupt when it is bad."""
        try:
            raw = (d / _META).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise Corrupt(f"cannot read {_META}: {e}") from None
        try:
            meta = json.loads(raw)
            ok = (meta["format"] == FORMAT and meta["key"] == key.parts()
                  and meta["digest"] == key.digest)
            size, digest = int(meta["object"]["size"]), str(meta["object"]["sha256"])
        except (ValueError, KeyError, TypeError) as e:
            raise Corrupt(f"unreadable {_META}: {e!r}") from None
        if not ok:
            raise Corrupt(f"{_META} is for another key")
        try:
            obj = (d / _OBJECT).read_bytes()
        except OSError as e:
            raise Corrupt(f"cannot read {_OBJECT}: {e}") from None
        if len(obj) != size:
            raise Corrupt(f"{_OBJECT} has {len(obj)} bytes, metadata says {size}")
        if _sha256(obj) != digest:
            raise Corrupt(f"{_OBJECT} does not match its sha256")
        try:
            library = _target().JITLibrary.load(obj)
        except Exception as e:
            raise Corrupt(f"object code does not load: {e}") from None
        return Entry(key, library, source, None, d)

    def _compile(self, key: CacheKey, source: str, emit: Callable[[], str],
                 d: Path | None) -> Entry:
        self.stats["misses"] += 1
        t0 = time.perf_counter()
        llvm_ir = emit()
        obj = _target().compile_object(llvm_ir)
        self.stats["compiles"] += 1
        self.stats["compile_seconds"] += time.perf_counter() - t0
        library = _target().JITLibrary.load(obj)
        if d is not None:
            try:
                self._store(d, key, source, llvm_ir, obj)
                self.stats["disk_writes"] += 1
            except OSError as e:
                self.stats["disk_errors"] += 1
                log.warning("cannot write kernel cache entry %s (%s)", d, e)
                d = None
        return Entry(key, library, source, llvm_ir, d)

    @staticmethod
    def _store(d: Path, key: CacheKey, source: str, llvm_ir: str, obj: bytes) -> None:
        _write_atomic(d / _SOURCE, source.encode())
        _write_atomic(d / _LLVM, llvm_ir.encode())
        _write_atomic(d / _OBJECT, obj)
        meta = {"format": FORMAT, "digest": key.digest, "key": key.parts(),
                "object": {"file": _OBJECT, "size": len(obj), "sha256": _sha256(obj)},
                "llvm_ir": _LLVM, "source": _SOURCE, "created": time.time()}
        # The metadata goes last: an entry exists for readers only once it is complete.
        _write_atomic(d / _META, json.dumps(meta, indent=1).encode())

    # -- maintenance -----------------------------------------------------------
    def clear(self) -> None:
        """Forget every loaded library and delete every entry of the current directory."""
        with self._lock:
            self.memory.clear()
            root = default_directory()
            if not root.is_dir():
                return
            if root not in self._dirs:
                self._dirs[root] = self._prepare(root)
            if not self._dirs[root]:
                return
            for child in root.iterdir():
                if child.is_dir() and _is_digest(child.name):
                    shutil.rmtree(child, ignore_errors=True)
                elif child.name.startswith(".tmp-"):
                    with contextlib.suppress(OSError):
                        child.unlink()

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = _empty_stats()


def _is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _remove_entry_files(d: Path) -> None:
    # Metadata first, so a concurrent reader sees "no entry" rather than a broken one.
    for name in (_META, _OBJECT, _LLVM, _SOURCE):
        with contextlib.suppress(OSError):
            (d / name).unlink()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the compile of one key across processes."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield  # a read-only cache still works, without the cross-process lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_CACHE = KernelCache()


def _after_fork_in_child() -> None:
    # The lock may have been held by a thread that does not exist in the child.
    _CACHE._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def cache() -> KernelCache:
    """The process-wide kernel cache."""
    return _CACHE


def cache_stats() -> dict[str, Any]:
    """Counters: hits (memory_hits + disk_hits), misses, compiles, compile_seconds, corrupt, ..."""
    return dict(_CACHE.stats)


def reset_cache_stats() -> None:
    """Set every counter back to zero."""
    _CACHE.reset_stats()


def clear_cache() -> None:
    """Empty the in-memory cache and delete the entries in the cache directory."""
    _CACHE.clear()


# -- modules -------------------------------------------------------------------


def kernel_source(module: Module) -> str:
    """The canonical text of a module's kernels (no program, no locations): the cache's input."""
    return "\n\n".join(print_graph(g) for g in module.graphs if g.kind == "kernel")


class CompiledModule:
    """The kernels of a loop-stage module, loaded and callable by name."""

    def __init__(self, entry: Entry | None, module: Module):
        self._entry = entry
        self._module = module
        self.key = entry.key if entry is not None else None
        self.source = entry.source if entry is not None else ""
        self.kernels: dict[str, Kernel] = {}
        for g in module.graphs:
            if g.kind != "kernel":
                continue
            k = entry.kernels.get(g.name)
            if k is None:
                k = entry.kernels[g.name] = Kernel.from_graph(entry.library, g)
            self.kernels[g.name] = k

    @property
    def llvm_ir(self) -> str:
        """The LLVM IR of the kernels (from memory, the disk entry, or emitted again)."""
        e = self._entry
        if e is None:
            return ""
        if e.llvm_ir is None and e.path is not None:
            with contextlib.suppress(OSError):
                e.llvm_ir = (e.path / _LLVM).read_text()
        if e.llvm_ir is None:
            e.llvm_ir = _emit_module(self._module)
        return e.llvm_ir

    def __getitem__(self, name: str) -> Kernel:
        return self.kernels[name]


def compile_module(loop_module: Module) -> CompiledModule:
    """Compile (or fetch from the cache) every kernel of a loop-stage module."""
    for g in loop_module.graphs:
        if g.kind == "kernel" and not (g.name.isidentifier() and g.name.isascii()):
            raise ValueError(f"kernel name @{g.name} is not a C identifier")
    source = kernel_source(loop_module)
    if not source:
        return CompiledModule(None, loop_module)
    entry = _CACHE.get(source, lambda: _emit_module(loop_module))
    return CompiledModule(entry, loop_module)
