"""lamina.save / lamina.load: round trips, shared storage, atomic writes, PyTorch zip and
safetensors files, and checkpoints that must be refused without running any code."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from collections import Counter, OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina import serialization

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

NUMPY = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
         "int64": np.int64, "int32": np.int32, "int8": np.int8, "bool": np.bool_}


def _values(t: lamina.Tensor) -> np.ndarray:
    return t.float().numpy() if t.dtype is lamina.bfloat16 else t.numpy()


def test_round_trip_of_nested_objects(tmp_path):
    w = lamina.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    obj = {
        "w": w, "wt": w.t(), "row": w[1], "ints": lamina.tensor([1, -2, 3]),
        "half": lamina.tensor([1.5, -2.25], dtype=lamina.float16),
        "bf16": lamina.tensor([1.5, 3.0e38, -0.0], dtype=lamina.bfloat16),
        "mask": lamina.tensor([True, False]), "scalar": lamina.tensor(2.5, dtype=lamina.float64),
        "empty": lamina.zeros(0, 3), "int8": lamina.tensor([-128, 127], dtype=lamina.int8),
        "grad": lamina.tensor([1.0, 2.0]).requires_grad_(True),
        "n": 3, "big": 2 ** 80, "x": 1.25, "inf": float("inf"), "nan": float("nan"),
        "neg_inf": -float("inf"), "s": "héllo", "none": None, "flag": False,
        "list": [1, "a", (2.5, None, [3])], (1, "k"): "tuple key", 7: "int key",
        "od": OrderedDict([("b", 1), ("a", 2)]), "counter": Counter({3: 2, 5: 1}),
        "size": lamina.Size([2, 3]), "dtype": lamina.float16, "device": lamina.device("cpu"),
        "bytes": b"\x00\xffab", "array": np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::2],
        "np_scalar": np.float32(0.5),
    }
    path = tmp_path / "ckpt.lam"
    lamina.save(obj, path)
    out = lamina.load(path)
    assert list(out) == list(obj)
    for key in ("w", "wt", "row", "ints", "half", "bf16", "mask", "scalar", "empty", "int8",
                "grad"):
        assert isinstance(out[key], lamina.Tensor)
        assert out[key].dtype is obj[key].dtype and out[key].shape == obj[key].shape
        np.testing.assert_array_equal(_values(out[key]), _values(obj[key]))
    assert out["grad"].requires_grad and not out["w"].requires_grad
    assert out["big"] == 2 ** 80 and type(out["big"]) is int and out["x"] == 1.25
    assert out["inf"] == float("inf") and out["neg_inf"] == -float("inf")
    assert out["nan"] != out["nan"]
    assert out["list"] == [1, "a", (2.5, None, [3])] and isinstance(out["list"][2], tuple)
    assert out[(1, "k")] == "tuple key" and out[7] == "int key"
    assert type(out["od"]) is OrderedDict and list(out["od"]) == ["b", "a"]
    assert type(out["counter"]) is Counter and out["counter"] == Counter({3: 2, 5: 1})
    assert type(out["size"]) is lamina.Size and out["size"] == (2, 3)
    assert out["dtype"] is lamina.float16 and out["device"] == lamina.device("cpu")
    assert out["bytes"] == b"\x00\xffab"
    np.testing.assert_array_equal(out["array"], obj["array"])
    assert out["np_scalar"] == 0.5
    assert out["s"] == "héllo" and out["none"] is None and out["flag"] is False


def test_views_keep_sharing_storage(tmp_path):
    base = lamina.tensor(np.arange(10, dtype=np.float32))
    lamina.save({"a": base[2:8], "b": base[::3], "c": base}, tmp_path / "v.lam")
    out = lamina.load(tmp_path / "v.lam")
    np.testing.assert_array_equal(out["a"].numpy(), np.arange(2, 8))
    np.testing.assert_array_equal(out["b"].numpy(), np.arange(0, 10, 3))
    out["c"].add_(100)
    np.testing.assert_array_equal(out["a"].numpy(), np.arange(102, 108))
    np.testing.assert_array_equal(out["b"].numpy(), np.arange(100, 110, 3))
    # a separate save does not share with the original
    assert base.tolist()[0] == 0.0


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 5), max_size=4).map(tuple),
       dtype=st.sampled_from(sorted(NUMPY)), transpose=st.booleans(), seed=st.integers(0, 99))
def test_random_tensors_round_trip(shape, dtype, transpose, seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * 100).astype(NUMPY[dtype])
    t = lamina.tensor(a)
    if transpose and t.ndim >= 2:
        t = t.transpose(0, 1)
    buf = io.BytesIO()
    lamina.save([t], buf)
    buf.seek(0)
    (out,) = lamina.load(buf)
    assert out.dtype is t.dtype and out.shape == t.shape
    np.testing.assert_array_equal(out.numpy(), t.numpy())


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.lam"
    lamina.save({"w": lamina.ones(1000)}, path)
    before = path.read_bytes()
    written = []

    def failing_write(fh, data):
        fh.write(bytes(data)[:100])
        written.append(len(data))
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(serialization, "_write_storage", failing_write)
    with pytest.raises(OSError, match="disk full"):
        lamina.save({"w": lamina.zeros(5000)}, path)
    assert written, "the failure must happen in the middle of the write"
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.lam"], "the temporary file is removed"
    np.testing.assert_array_equal(lamina.load(path)["w"].numpy(), np.ones(1000))


def test_save_fsyncs_before_replacing(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    lamina.save([1, 2], tmp_path / "x.lam")
    assert events[:2] == ["fsync", "replace"]
    assert lamina.load(tmp_path / "x.lam") == [1, 2]


def test_unsupported_objects_are_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "bad.lam"
    with pytest.raises(TypeError, match=r"type function \(at obj\['fn'\]\)"):
        lamina.save({"ok": 1, "fn": lambda: 0}, path)
    with pytest.raises(TypeError, match="type set"):
        lamina.save([{1, 2}], path)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="contains itself"):
        lamina.save(cyclic, path)
    assert not path.exists() and os.listdir(tmp_path) == []


def _header(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[8:16])
    return data, json.loads(data[16:16 + n]), n


def _rewrite(path, header, data, n):
    """The same storages under an edited header."""
    storages = data[16 + n + (-(16 + n) % 64):]
    text = json.dumps(header, separators=(",", ":")).encode()
    head = data[:8] + struct.pack("<Q", len(text)) + text
    path.write_bytes(head + bytes(-len(head) % 64) + storages)


def test_corrupt_files_raise_clear_errors(tmp_path):
    path = tmp_path / "c.lam"
    lamina.save({"w": lamina.ones(4, 4)}, path)
    data, header, n = _header(path)
    (path.parent / "trunc.lam").write_bytes(data[:-10])
    with pytest.raises(RuntimeError, match="outside the file|truncated"):
        lamina.load(path.parent / "trunc.lam")
    node = header["root"]["$dict"][0][1]["$tensor"]
    node["stride"] = [400, 4]  # reads far beyond its storage
    _rewrite(path, header, data, n)
    with pytest.raises(RuntimeError, match="reads .* bytes from a storage of 64 bytes"):
        lamina.load(path)
    node["stride"] = [16, 4]
    node["dtype"] = "complex64"
    _rewrite(path, header, data, n)
    with pytest.raises(TypeError, match="complex64"):
        lamina.load(path)
    node["dtype"] = "float32"
    header["root"]["$dict"][0][1] = {"$eval": "__import__('os')"}
    _rewrite(path, header, data, n)
    with pytest.raises(RuntimeError, match="unknown node"):
        lamina.load(path)
    (tmp_path / "junk").write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(RuntimeError, match="not a Lamina, PyTorch"):
        lamina.load(tmp_path / "junk")


# -- safetensors written by hand ------------------------------------------------------------
def _safetensors(path, tensors, metadata=None, pad=True):
    header, blobs, pos = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_safetensors(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    idx = np.array([5, -1], dtype=np.int64)
    bf = (np.array([1.5, -2.0], np.float32).view(np.uint32) >> 16).astype("<u2")
    half = np.array([0.5, 65504], np.float16)
    path = tmp_path / "m.safetensors"
    _safetensors(path, {"w": ("F32", w.shape, w.tobytes()), "idx": ("I64", (2,), idx.tobytes()),
                        "bf": ("BF16", (2,), bf.tobytes()), "h": ("F16", (2,), half.tobytes()),
                        "m": ("BOOL", (3,), bytes([1, 0, 1])), "s": ("F64", (), b"\0" * 8)},
                 metadata={"format": "pt"})
    out = lamina.load(path)
    assert list(out) == ["w", "idx", "bf", "h", "m", "s"]
    np.testing.assert_array_equal(out["w"].numpy(), w)
    np.testing.assert_array_equal(out["idx"].numpy(), idx)
    assert out["bf"].dtype is lamina.bfloat16 and out["bf"].float().tolist() == [1.5, -2.0]
    np.testing.assert_array_equal(out["h"].numpy(), half)
    assert out["m"].tolist() == [True, False, True] and out["s"].shape == ()

    _safetensors(path, {"u": ("U8", (2,), b"\0\1")})
    with pytest.raises(TypeError, match="dtype U8"):
        lamina.load(path)
    _safetensors(path, {"w": ("F32", (4,), b"\0" * 8)})
    with pytest.raises(RuntimeError, match="do not hold shape"):
        lamina.load(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8000]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 8)
    with pytest.raises(RuntimeError, match="invalid shape .* or data offsets"):
        lamina.load(path)


# -- PyTorch checkpoints ----------------------------------------------------------------------
@needs_torch
def test_loads_torch_checkpoints(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = OrderedDict(
        w=base, wt=base.t(), row=base[1], b=torch.tensor([1, 2], dtype=torch.int64),
        h=torch.tensor([1.5, 2.0], dtype=torch.bfloat16), f16=torch.ones(2, dtype=torch.half),
        s=torch.tensor(3.0), m=torch.tensor([True, False]),
        i32=torch.tensor([7], dtype=torch.int32),
        p=torch.nn.Parameter(torch.ones(2)), d=torch.ones(2, dtype=torch.float64))
    torch.save({"sd": sd, "epoch": 3, "size": torch.Size([2, 3]), "names": ["a", "b"],
                "dt": torch.float16, "blob": b"\x01\x02"}, tmp_path / "t.pt")
    out = lamina.load(tmp_path / "t.pt", map_location="cpu", weights_only=True)
    assert type(out["sd"]) is OrderedDict and list(out["sd"]) == list(sd)
    for k, t in sd.items():
        mine = out["sd"][k]
        assert mine.dtype.name == str(t.dtype).removeprefix("torch.")
        assert tuple(mine.shape) == tuple(t.shape)
        np.testing.assert_array_equal(_values(mine), t.detach().float().numpy()
                                      if t.dtype is torch.bfloat16 else t.detach().numpy())
    assert out["sd"]["p"].requires_grad and not out["sd"]["w"].requires_grad
    assert out["epoch"] == 3 and out["size"] == (2, 3) and type(out["size"]) is lamina.Size
    assert out["names"] == ["a", "b"] and out["dt"] is lamina.float16 and out["blob"] == b"\x01\x02"
    out["sd"]["w"].add_(1)  # views of one storage stay views of one storage
    assert out["sd"]["row"].tolist() == [5.0, 6.0, 7.0, 8.0]
    assert out["sd"]["wt"][0].tolist() == [1.0, 5.0, 9.0]


@needs_torch
def test_torch_model_state_dict_drives_a_lamina_model(tmp_path):
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    torch.save(tnet.state_dict(), tmp_path / "net.pth")
    lnet = lamina.nn.Sequential(lamina.nn.Linear(4, 3), lamina.nn.ReLU(),
                                lamina.nn.Linear(3, 2))
    lnet.load_state_dict(lamina.load(tmp_path / "net.pth"))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    expected = tnet(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(lnet(lamina.tensor(x)).detach().numpy(), expected, rtol=1e-5,
                               atol=1e-6)


@needs_torch
def test_legacy_torch_format_is_refused(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError, match="bare pickle"):
        lamina.load(tmp_path / "old.pt")


# -- malicious checkpoints ----------------------------------------------------------------------
class _Exploit:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _zip_checkpoint(path, payload: bytes, name="archive"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/data.pkl", payload)
        z.writestr(f"{name}/byteorder", "little")
        z.writestr(f"{name}/version", "3\n")


@pytest.mark.parametrize("make", [
    lambda m: pickle.dumps({"w": _Exploit(os.system, f"touch {m}")}, protocol=2),
    lambda m: pickle.dumps([_Exploit(eval, f"open({str(m)!r}, 'w')")], protocol=4),
    lambda m: pickle.dumps(_Exploit(getattr, _Exploit(__import__, "os"), "system"), protocol=2),
    lambda m: b"c__builtin__\nexec\n(Vopen(" + repr(str(m)).encode() + b", 'w')\ntR.",
    lambda m: pickle.dumps(OrderedDict(a=_Exploit(__import__, "subprocess")), protocol=2),
], ids=["os.system", "eval", "getattr", "protocol0-exec", "import"])
def test_malicious_pickles_are_refused_without_running_code(tmp_path, make):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    _zip_checkpoint(path, make(marker))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global '[a-z_]+\\.\\w+'"):
        lamina.load(path)
    assert not marker.exists()
    bare = tmp_path / "evil.pkl"
    bare.write_bytes(make(marker))
    with pytest.raises(RuntimeError, match="bare pickle|not a Lamina"):
        lamina.load(bare)
    assert not marker.exists()


def test_refused_global_is_named():
    buf = io.BytesIO()
    _zip_checkpoint(buf, pickle.dumps(_Exploit(os.system, "true"), protocol=2))
    buf.seek(0)
    with pytest.raises(serialization.UnpicklingError, match=r"'(posix|os|nt)\.system'"):
        lamina.load(buf)


def test_forged_tensor_outside_its_storage_is_refused(tmp_path):
    # The pickle PyTorch writes for one tensor, by hand: _rebuild_tensor_v2(storage
    # (a persistent id naming data/0, 4 floats), offset, size (3,), stride (1,), ...).
    rebuild = b"ctorch._utils\n_rebuild_tensor_v2\n"
    pid = (b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
           b"K\x04tQ")
    args = b"K\x02K\x03\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rt"  # offset 2, size 3
    payload = b"\x80\x02" + rebuild + b"(" + pid + args + b"R."
    path = tmp_path / "forged.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/data/0", np.arange(4, dtype=np.float32).tobytes())
    with pytest.raises(RuntimeError, match="reads 20 bytes from a storage of 16 bytes"):
        lamina.load(path)
    ok = payload.replace(b"K\x02K\x03\x85", b"K\x01K\x03\x85")  # offset 1: in bounds
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", ok)
        z.writestr("archive/data/0", np.arange(4, dtype=np.float32).tobytes())
    assert lamina.load(path).tolist() == [1.0, 2.0, 3.0]
