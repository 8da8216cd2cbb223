"""``lamina.save`` and ``lamina.load``: checkpoints that never execute code when loaded.

Lamina's own format is a small binary header, one JSON document describing the
object tree, and the raw little-endian bytes of every storage::

    b"\\x89LAMINA\\n" | u64 LE header length | header JSON | zero pad to 64 | storages

The JSON is data only: containers and tensors are tagged objects decoded by a
fixed table, so loading a file can build tensors, numbers, strings and
containers and nothing else. Tensors that share memory (views of one storage)
are saved once and come back sharing memory, like PyTorch's checkpoints.

Saving to a path is atomic: the bytes go to a temporary file in the same
directory, which is flushed, fsynced and then renamed over the target, so a crash
mid-save leaves the previous file intact.

``load`` also reads safetensors files and PyTorch's zip checkpoints (``.pt``/
``.pth`` written by ``torch.save``). PyTorch's ``data.pkl`` is a pickle, read by a
restricted unpickler that resolves only the handful of globals a state dict
uses; any other global raises :class:`UnpicklingError` naming it.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import struct
import sys
import tempfile
import threading
import zipfile
from collections import Counter, OrderedDict
from typing import IO, Any, Callable

import numpy as np

import lamina

__all__ = ["save", "load", "UnpicklingError"]

MAGIC = b"\x89LAMINA\n"
VERSION = 1
_ALIGN = 64

# name -> (lamina dtype, numpy little-endian storage dtype); bfloat16 is stored as its bits
_DTYPES: dict[str, tuple[Any, np.dtype]] = {
    "float64": (lamina.float64, np.dtype("<f8")),
    "float32": (lamina.float32, np.dtype("<f4")),
    "float16": (lamina.float16, np.dtype("<f2")),
    "bfloat16": (lamina.bfloat16, np.dtype("<u2")),
    "int64": (lamina.int64, np.dtype("<i8")),
    "int32": (lamina.int32, np.dtype("<i4")),
    "int8": (lamina.int8, np.dtype("i1")),
    "bool": (lamina.bool, np.dtype("?")),
}


class UnpicklingError(pickle.UnpicklingError):
    """A checkpoint asked for a Python global that ``lamina.load`` refuses to resolve."""


# ---------------------------------------------------------------------------------------
# save
# ---------------------------------------------------------------------------------------
def save(obj: Any, f: str | os.PathLike | IO[bytes], pickle_module: Any = None,
         pickle_protocol: Any = None, _use_new_zipfile_serialization: bool = True) -> None:
    """Write ``obj`` (tensors, numbers, strings, None, and dicts/lists/tuples of them).

    ``f`` is a path (written atomically) or a binary file object. The pickle
    arguments of ``torch.save`` are accepted and ignored: nothing is pickled.
    """
    enc = _Encoder()
    tree = enc.encode(obj, "obj")
    storages = enc.layout()
    header = json.dumps({"format": "lamina", "version": VERSION, "storages":
                         [{"offset": s.offset, "nbytes": s.nbytes} for s in storages],
                         "root": tree}, separators=(",", ":"), allow_nan=False).encode()

    def write(fh: IO[bytes]) -> None:
        head = MAGIC + struct.pack("<Q", len(header)) + header
        fh.write(head + bytes(-len(head) % _ALIGN))
        pos = 0
        for s in storages:
            fh.write(bytes(s.offset - pos))
            _write_storage(fh, s.data())
            pos = s.offset + s.nbytes

    if isinstance(f, (str, os.PathLike)):
        _atomic_write(os.fspath(f), write)
    elif hasattr(f, "write"):
        write(f)
    else:
        raise TypeError(f"lamina.save: expected a path or a binary file object, got "
                        f"{type(f).__name__}")


def _write_storage(fh: IO[bytes], data: memoryview) -> None:
    fh.write(data)


def _atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temporary file in the target's directory, then rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


class _Storage:
    """One contiguous byte range saved once: a tensor's memory or a span shared by views."""

    def __init__(self, root: np.ndarray):
        self.root = root  # a C-contiguous array owning (or viewing) the bytes
        self.base = root.ctypes.data
        self.lo = self.hi = None
        self.nodes: list[dict] = []  # tensor nodes whose "offset" is still absolute
        self.offset = 0

    def cover(self, lo: int, hi: int) -> None:
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    @property
    def nbytes(self) -> int:
        return self.hi - self.lo

    def data(self) -> memoryview:
        flat = self.root.reshape(-1).view(np.uint8)
        return memoryview(flat[self.lo - self.base:self.hi - self.base])


class _Encoder:
    """Turns an object tree into JSON-ready data, collecting the storages to write."""

    def __init__(self) -> None:
        self.storages: dict[int, _Storage] = {}
        self.order: list[_Storage] = []
        self.active: set[int] = set()

    def encode(self, obj: Any, where: str) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if type(obj) is int:
            return obj
        if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
            return self.encode(obj.item(), where)
        if type(obj) is float:
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if isinstance(obj, lamina.Tensor):
            return {"$tensor": self.tensor(obj, where)}
        if isinstance(obj, lamina.dtype):
            return {"$dtype": obj.name}
        if isinstance(obj, lamina.device):
            return {"$device": str(obj)}
        if isinstance(obj, np.ndarray):
            return {"$ndarray": self.ndarray(obj, where)}
        if isinstance(obj, (bytes, bytearray)):
            return {"$bytes": self.raw(np.frombuffer(bytes(obj), np.uint8))}
        if type(obj) in _CONTAINERS:
            if id(obj) in self.active:
                raise ValueError(f"lamina.save: {where} contains itself (a reference cycle)")
            self.active.add(id(obj))
            try:
                return self.container(obj, where)
            finally:
                self.active.discard(id(obj))
        raise TypeError(
            f"lamina.save: cannot save an object of type {type(obj).__name__} (at {where}); "
            "supported are tensors, numpy arrays, numbers, strings, bytes, None, dtypes, "
            "devices and dicts/lists/tuples of them (save a module's or optimizer's "
            "state_dict() rather than the object)")

    def container(self, obj: Any, where: str) -> Any:
        kind = _CONTAINERS[type(obj)]
        if kind in ("list", "tuple", "size"):
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return items if kind == "list" else {f"${kind}": items}
        pairs = [[self.encode(k, f"{where} key {k!r}"), self.encode(v, f"{where}[{k!r}]")]
                 for k, v in obj.items()]
        return {f"${kind}": pairs}

    def _storage_for(self, a: np.ndarray) -> tuple[_Storage, np.ndarray]:
        """The storage holding ``a``: the root array of its view chain when ``a`` lies in it."""
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        if root is not a and not (root.flags.c_contiguous and _within(a, root)):
            root = a
        if root is a and not a.flags.c_contiguous:
            a = root = np.ascontiguousarray(a)
        st = self.storages.get(id(root))
        if st is None:
            st = self.storages[id(root)] = _Storage(root)
            self.order.append(st)
        return st, a

    def raw(self, a: np.ndarray) -> dict:
        """A node for ``a``'s memory: storage index, byte offset, byte strides."""
        order = a.dtype.byteorder
        if order == ">" or (order == "=" and sys.byteorder == "big"):
            a = a.astype(a.dtype.newbyteorder("<"))
        st, a = self._storage_for(a)
        start = a.ctypes.data
        end = start + (a.itemsize + sum((n - 1) * s for n, s in zip(a.shape, a.strides))
                       if a.size else 0)
        st.cover(start, end)
        node = {"storage": self.order.index(st), "offset": start,
                "shape": list(a.shape), "stride": list(a.strides)}
        st.nodes.append(node)
        return node

    def tensor(self, t: lamina.Tensor, where: str) -> dict:
        name = t.dtype.name
        if name not in _DTYPES:
            raise TypeError(f"lamina.save: tensor of dtype {t.dtype} at {where} is not supported")
        if t.dtype is lamina.bfloat16:
            bits = np.ascontiguousarray(t.float().numpy()).view(np.uint32) >> 16
            a = bits.astype(np.uint16)
        else:
            a = t.numpy() if not t.is_cuda else t.detach().cpu().numpy()
        node = self.raw(a)
        node["dtype"] = name
        node["requires_grad"] = bool(t.requires_grad)
        if t.is_cuda:  # written from a host copy; loads back onto the GPU by default
            node["device"] = str(t.device)
        return node

    def ndarray(self, a: np.ndarray, where: str) -> dict:
        names = {np.dtype(d): n for n, (_, d) in _DTYPES.items() if n != "bfloat16"}
        name = names.get(a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype)
        if name is None:
            raise TypeError(f"lamina.save: numpy array of dtype {a.dtype} at {where} is not "
                            "supported")
        if any(s < 0 for s in a.strides):
            a = np.ascontiguousarray(a)
        node = self.raw(a)
        node["dtype"] = name
        return node

    def layout(self) -> list[_Storage]:
        """Assign file offsets (64-byte aligned) and make node offsets storage-relative."""
        pos = 0
        for st in self.order:
            if st.lo is None:
                st.lo = st.hi = st.base
            st.offset = pos
            pos += st.nbytes + (-st.nbytes % _ALIGN)
            for node in st.nodes:
                node["offset"] -= st.lo
        return self.order


def _within(a: np.ndarray, root: np.ndarray) -> bool:
    if any(s < 0 for s in a.strides):
        return False
    start = a.ctypes.data
    end = start + (a.itemsize + sum((n - 1) * s for n, s in zip(a.shape, a.strides))
                   if a.size else 0)
    return root.ctypes.data <= start and end <= root.ctypes.data + root.nbytes


_CONTAINERS = {list: "list", tuple: "tuple", dict: "dict", OrderedDict: "odict",
               Counter: "counter", lamina.Size: "size"}


# ---------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------
def load(f: str | os.PathLike | IO[bytes], map_location: Any = None, pickle_module: Any = None,
         *, weights_only: bool | None = None, mmap: bool | None = None, **kwargs: Any) -> Any:
    """Read a file written by ``lamina.save``, ``torch.save`` (zip format) or safetensors.

    Only data is ever constructed: ``weights_only`` is accepted for compatibility and
    loading is always restricted to tensors, numbers, strings and containers.
    Tensors load on the device they were saved from, unless ``map_location`` (a
    device, or a dict from saved device names to devices) says otherwise.
    """
    if map_location is not None and not callable(map_location) and not isinstance(
            map_location, dict):
        map_location = lamina.device(map_location)  # validates the spec
    _map.location = map_location
    try:
        out = _load_any(f)
    finally:
        _map.location = None
    if isinstance(map_location, lamina.device):  # formats without devices (torch, safetensors)
        out = _to_device(out, map_location)
    return out


class _MapState(threading.local):
    location: Any = None


_map = _MapState()


def _target_device(saved: str | None) -> Any:
    """Where a tensor saved from device ``saved`` (None: cpu) loads."""
    loc = _map.location
    saved = saved or "cpu"
    if isinstance(loc, lamina.device):
        return loc
    if isinstance(loc, dict):
        return lamina.device(str(loc.get(saved, saved)))
    return lamina.device(saved)


def _to_device(obj: Any, d: Any) -> Any:
    if isinstance(obj, lamina.Tensor):
        return obj if obj.device == d else obj.to(d)
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _to_device(v, d)
        return obj
    if isinstance(obj, list):
        obj[:] = [_to_device(v, d) for v in obj]
        return obj
    if type(obj) is tuple:
        return tuple(_to_device(v, d) for v in obj)
    return obj


def _load_any(f: Any) -> Any:
    if isinstance(f, (str, os.PathLike)):
        with open(os.fspath(f), "rb") as fh:
            return _load(fh, os.fspath(f))
    if not hasattr(f, "read"):
        raise TypeError(f"lamina.load: expected a path or a binary file object, got "
                        f"{type(f).__name__}")
    if not (hasattr(f, "seekable") and f.seekable()):
        f = io.BytesIO(f.read())
    return _load(f, getattr(f, "name", "<file>"))


def _load(fh: IO[bytes], name: str) -> Any:
    start = fh.tell()
    head = fh.read(16)
    fh.seek(start)
    if head[:8] == MAGIC:
        return _load_lamina(fh, name)
    if head[:4] == b"PK\x03\x04":
        return _load_torch_zip(fh, name)
    if len(head) >= 9 and head[8:9] == b"{":
        return _load_safetensors(fh, name)
    if head[:1] == b"\x80":
        raise RuntimeError(
            f"lamina.load: {name} is a bare pickle (PyTorch's legacy pre-1.6 format or "
            "pickle.dump output); it is refused because unpickling can run arbitrary code. "
            "Re-save it with a current torch.save (zip format) or as safetensors")
    raise RuntimeError(f"lamina.load: {name} is not a Lamina, PyTorch (zip) or safetensors "
                       "file")


def _file_size(fh: IO[bytes]) -> int:
    pos = fh.tell()
    size = fh.seek(0, io.SEEK_END)
    fh.seek(pos)
    return size


def _read_into(fh: IO[bytes], nbytes: int, what: str) -> np.ndarray:
    """``nbytes`` from ``fh`` into fresh aligned Lamina memory (an int8 view of it)."""
    buf = lamina.empty(nbytes, dtype=lamina.int8).numpy()
    view = memoryview(buf).cast("B")
    got = 0
    while got < nbytes:
        n = fh.readinto(view[got:])
        if not n:
            raise RuntimeError(f"lamina.load: {what} is truncated ({got} of {nbytes} bytes)")
        got += n
    return buf


def _view(buf: np.ndarray, dtype_name: str, shape: Any, stride: Any, offset: Any,
          what: str, stride_unit: int = 1, byteorder: str = "<") -> lamina.Tensor:
    """A tensor viewing ``buf`` after checking every index stays inside it."""
    if dtype_name not in _DTYPES:
        raise TypeError(f"lamina.load: {what} has dtype {dtype_name}, which Lamina does not "
                        "support")
    dtype, npdt = _DTYPES[dtype_name]
    npdt = npdt.newbyteorder(byteorder) if npdt.itemsize > 1 else npdt
    if not (isinstance(shape, (list, tuple)) and isinstance(stride, (list, tuple))
            and len(shape) == len(stride)
            and all(type(v) is int and v >= 0 for v in (*shape, *stride, offset))):
        raise RuntimeError(f"lamina.load: {what} has an invalid layout (shape {shape}, "
                           f"stride {stride}, offset {offset})")
    item = npdt.itemsize
    bstride = [s * stride_unit for s in stride]
    boff = offset * stride_unit
    if boff % item or any(s % item for s in bstride):
        raise RuntimeError(f"lamina.load: {what} is not aligned to its dtype {dtype_name}")
    numel = math.prod(shape)
    if numel:
        end = boff + item + sum((n - 1) * s for n, s in zip(shape, bstride))
        if end > buf.nbytes:
            raise RuntimeError(f"lamina.load: {what} (shape {list(shape)}, dtype {dtype_name}) "
                               f"reads {end} bytes from a storage of {buf.nbytes} bytes")
    else:
        boff = 0
    a = np.ndarray(tuple(shape), npdt, buffer=buf, offset=boff, strides=tuple(bstride))
    if byteorder != "<" and item > 1:
        a = a.astype(npdt.newbyteorder("="))
    if dtype is lamina.bfloat16:
        f32 = (a.astype(np.uint32) << 16).view(np.float32)
        return lamina.from_numpy(f32).to(lamina.bfloat16)
    return lamina.from_numpy(a)


# -- Lamina's format ------------------------------------------------------------------------
def _load_lamina(fh: IO[bytes], name: str) -> Any:
    size = _file_size(fh)
    fh.read(8)
    (hlen,) = struct.unpack("<Q", fh.read(8))
    if hlen > size - 16:
        raise RuntimeError(f"lamina.load: {name} is truncated or corrupt (header of {hlen} "
                           f"bytes in a file of {size})")
    try:
        header = json.loads(fh.read(hlen).decode())
        storages = header["storages"]
        root = header["root"]
    except (ValueError, KeyError, TypeError) as e:
        raise RuntimeError(f"lamina.load: {name} has a corrupt header ({e})") from None
    if header.get("version", 0) > VERSION:
        raise RuntimeError(f"lamina.load: {name} was written by a newer Lamina (format "
                           f"version {header['version']})")
    data = 16 + hlen + (-(16 + hlen) % _ALIGN)
    bufs = []
    for i, s in enumerate(storages):
        off, nbytes = s.get("offset"), s.get("nbytes")
        if not (type(off) is int and type(nbytes) is int and off >= 0 and nbytes >= 0
                and data + off + nbytes <= size):
            raise RuntimeError(f"lamina.load: {name}: storage {i} lies outside the file")
        fh.seek(data + off)
        bufs.append(_read_into(fh, nbytes, f"{name}: storage {i}"))
    return _Decoder(bufs, name).decode(root)


class _Decoder:
    def __init__(self, bufs: list[np.ndarray], name: str):
        self.bufs = bufs
        self.name = name

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if isinstance(node, dict) and len(node) == 1:
            (tag, value), = node.items()
            rule = _TAGS.get(tag)
            if rule is not None:
                return rule(self, value)
        raise RuntimeError(f"lamina.load: {self.name} contains an unknown node {node!r:.80}")

    def pairs(self, value: Any) -> list[tuple[Any, Any]]:
        return [(_hashable(self.decode(k)), self.decode(v)) for k, v in value]

    def raw(self, node: dict, what: str) -> tuple[np.ndarray, dict]:
        i = node.get("storage")
        if type(i) is not int or not 0 <= i < len(self.bufs):
            raise RuntimeError(f"lamina.load: {self.name}: {what} names a missing storage {i}")
        return self.bufs[i], node

    def tensor(self, node: dict) -> lamina.Tensor:
        buf, node = self.raw(node, "a tensor")
        t = _view(buf, node.get("dtype"), node.get("shape"), node.get("stride"),
                  node.get("offset"), f"{self.name}: a tensor")
        d = _target_device(node.get("device"))
        if d.type != "cpu":
            t = t.to(d)
        if node.get("requires_grad"):
            t.requires_grad_(True)
        return t

    def ndarray(self, node: dict) -> np.ndarray:
        buf, node = self.raw(node, "an array")
        t = _view(buf, node.get("dtype"), node.get("shape"), node.get("stride"),
                  node.get("offset"), f"{self.name}: an array")
        return np.array(t.numpy())

    def raw_bytes(self, node: dict) -> bytes:
        return self.ndarray({**node, "dtype": "int8"}).tobytes()


def _hashable(k: Any) -> Any:
    return tuple(_hashable(v) for v in k) if isinstance(k, list) else k


def _float(_: _Decoder, v: str) -> float:
    if v not in ("nan", "inf", "-inf"):
        raise RuntimeError(f"lamina.load: bad float {v!r}")
    return float(v)


def _dtype(_: _Decoder, v: str) -> Any:
    if v not in _DTYPES:
        raise RuntimeError(f"lamina.load: unknown dtype {v!r}")
    return _DTYPES[v][0]


_TAGS: dict[str, Callable[[_Decoder, Any], Any]] = {
    "$tuple": lambda d, v: tuple(d.decode(x) for x in v),
    "$size": lambda d, v: lamina.Size(int(x) for x in v),
    "$dict": lambda d, v: dict(d.pairs(v)),
    "$odict": lambda d, v: OrderedDict(d.pairs(v)),
    "$counter": lambda d, v: Counter(dict(d.pairs(v))),
    "$tensor": _Decoder.tensor,
    "$ndarray": _Decoder.ndarray,
    "$bytes": _Decoder.raw_bytes,
    "$float": _float,
    "$dtype": _dtype,
    "$device": lambda d, v: lamina.device(str(v)),
}


# -- safetensors ----------------------------------------------------------------------------
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
              "I64": "int64", "I32": "int32", "I8": "int8", "BOOL": "bool"}


def _load_safetensors(fh: IO[bytes], name: str) -> dict[str, lamina.Tensor]:
    """A safetensors file as ``{name: tensor}`` in the file's order (its metadata is dropped)."""
    size = _file_size(fh)
    (hlen,) = struct.unpack("<Q", fh.read(8))
    if hlen > size - 8:
        raise RuntimeError(f"lamina.load: {name}: safetensors header of {hlen} bytes is larger "
                           f"than the file ({size} bytes)")
    try:
        header = json.loads(fh.read(hlen).decode())
    except ValueError as e:
        raise RuntimeError(f"lamina.load: {name}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise RuntimeError(f"lamina.load: {name}: safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    data, avail = 8 + hlen, size - 8 - hlen
    out: dict[str, lamina.Tensor] = {}
    for key, info in header.items():
        what = f"{name}: tensor {key!r}"
        try:
            st_dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise RuntimeError(f"lamina.load: {what} has a malformed entry {info!r}") from None
        if st_dtype not in _ST_DTYPES:
            raise TypeError(f"lamina.load: {what} has dtype {st_dtype}, which Lamina does not "
                            "support")
        dtype_name = _ST_DTYPES[st_dtype]
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
                and type(begin) is int and type(end) is int and 0 <= begin <= end <= avail):
            raise RuntimeError(f"lamina.load: {what} has an invalid shape {shape} or data "
                               f"offsets [{begin}, {end}) (data section of {avail} bytes)")
        item = _DTYPES[dtype_name][1].itemsize
        if end - begin != math.prod(shape) * item:
            raise RuntimeError(f"lamina.load: {what}: {end - begin} bytes do not hold shape "
                               f"{shape} of {st_dtype}")
        fh.seek(data + begin)
        buf = _read_into(fh, end - begin, what)
        strides, acc = [], 1
        for n in reversed(shape):
            strides.append(acc)
            acc *= n
        out[key] = _view(buf, dtype_name, shape, strides[::-1], 0, what, stride_unit=item)
    return out


# -- PyTorch's zip checkpoints -----------------------------------------------------------
_TORCH_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "CharStorage": "int8", "BoolStorage": "bool", "ShortStorage": "int16",
    "ByteStorage": "uint8", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_TORCH_DTYPES = {"float64": "float64", "double": "float64", "float32": "float32",
                 "float": "float32", "float16": "float16", "half": "float16",
                 "bfloat16": "bfloat16", "int64": "int64", "long": "int64", "int32": "int32",
                 "int": "int32", "int8": "int8", "bool": "bool"}
_ITEMSIZE = {"int16": 2, "uint8": 1, "complex64": 8, "complex128": 16}


class _StorageType:
    """Stands for ``torch.FloatStorage`` etc. while unpickling: only its dtype matters."""

    def __init__(self, dtype: str):
        self.dtype = dtype

    @property
    def itemsize(self) -> int:
        return _DTYPES[self.dtype][1].itemsize if self.dtype in _DTYPES else _ITEMSIZE[self.dtype]


class _TorchStorage:
    def __init__(self, buf: np.ndarray, stype: _StorageType):
        self.buf = buf
        self.stype = stype


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Protocol-2 pickles spell ``bytes`` objects as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnpicklingError("lamina.load: _codecs.encode is only allowed for latin1 bytes")
    return text.encode("latin1")


def _torch_dtype(name: str) -> Any:
    if name not in _TORCH_DTYPES:
        raise UnpicklingError(f"lamina.load: torch.{name} has no Lamina equivalent")
    return _DTYPES[_TORCH_DTYPES[name]][0]


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): "rebuild_tensor",
    ("torch._utils", "_rebuild_tensor_v2"): "rebuild_tensor_v2",
    ("torch._utils", "_rebuild_parameter"): "rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "rebuild_parameter",
    ("torch", "Size"): lamina.Size,
    ("torch", "device"): lamina.device,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _TorchUnpickler(pickle.Unpickler):
    """Resolves only ``_ALLOWED`` globals, storage types and dtypes; storages come from the zip."""

    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, name: str,
                 byteorder: str):
        super().__init__(io.BytesIO(data))
        self.zf = zf
        self.prefix = prefix
        self.name = name
        self.byteorder = byteorder
        self.loaded: dict[str, _TorchStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if isinstance(obj, str):
            return getattr(self, obj)
        if obj is not None:
            return obj
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(_TORCH_STORAGES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _torch_dtype(name)
        raise UnpicklingError(
            f"lamina.load: refusing to load global '{module}.{name}' from {self.name}: only "
            "the globals of PyTorch state dicts (tensors, storages, OrderedDict, torch.Size, "
            "dtypes) are allowed, and no other code is ever run while loading")

    def persistent_load(self, pid: Any) -> _TorchStorage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0):
            raise UnpicklingError(f"lamina.load: unsupported persistent id {pid!r:.100} in "
                                  f"{self.name}")
        stype, key, numel = pid[1], pid[2], pid[4]
        if key not in self.loaded:
            entry = f"{self.prefix}data/{key}"
            try:
                info = self.zf.getinfo(entry)
            except KeyError:
                raise RuntimeError(f"lamina.load: {self.name} lacks storage {entry}") from None
            nbytes = numel * stype.itemsize
            if info.file_size < nbytes:
                raise RuntimeError(f"lamina.load: {self.name}: storage {entry} holds "
                                   f"{info.file_size} bytes, expected {nbytes}")
            with self.zf.open(info) as fh:
                buf = _read_into(fh, nbytes, f"{self.name}: storage {entry}")
            self.loaded[key] = _TorchStorage(buf, stype)
        return self.loaded[key]

    def rebuild_tensor(self, storage: Any, storage_offset: Any, size: Any,
                       stride: Any) -> lamina.Tensor:
        if not isinstance(storage, _TorchStorage):
            raise UnpicklingError(f"lamina.load: {self.name}: a tensor is rebuilt from "
                                  f"{type(storage).__name__}, not from a storage")
        return _view(storage.buf, storage.stype.dtype, size, stride, storage_offset,
                     f"{self.name}: a tensor", stride_unit=storage.stype.itemsize,
                     byteorder=self.byteorder)

    def rebuild_tensor_v2(self, storage: Any, storage_offset: Any, size: Any, stride: Any,
                          requires_grad: Any = False, backward_hooks: Any = None,
                          metadata: Any = None) -> lamina.Tensor:
        t = self.rebuild_tensor(storage, storage_offset, size, stride)
        return self.rebuild_parameter(t, requires_grad, backward_hooks)

    def rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any,
                          state: Any = None) -> lamina.Tensor:
        if not isinstance(data, lamina.Tensor):
            raise UnpicklingError(f"lamina.load: {self.name}: a parameter is rebuilt from "
                                  f"{type(data).__name__}, not from a tensor")
        if requires_grad is True and data.dtype.is_floating_point:
            data.requires_grad_(True)
        return data


def _load_torch_zip(fh: IO[bytes], name: str) -> Any:
    try:
        zf = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as e:
        raise RuntimeError(f"lamina.load: {name} is not a valid zip archive ({e})") from None
    with zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise RuntimeError(f"lamina.load: {name} is a zip file but not a PyTorch checkpoint "
                               "(no data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        order = "little"
        if prefix + "byteorder" in zf.namelist():
            order = zf.read(prefix + "byteorder").decode().strip()
        if order not in ("little", "big"):
            raise RuntimeError(f"lamina.load: {name} has an unknown byte order {order!r}")
        unpickler = _TorchUnpickler(zf.read(pkl[0]), zf, prefix, name,
                                    "<" if order == "little" else ">")
        return unpickler.load()
