"""Deployment: the examples/c harness on a trained digits model, the aarch64 object, and
exported programs loaded in a fresh process without the original code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lamina
from tests.tools.helpers import ROOT, env, lamina_cmd, write_model

EXAMPLE = ROOT / "examples" / "c"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_harness_matches_python(tmp_path):
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(EXAMPLE))
    try:
        import digits_model
    finally:
        sys.path.remove(str(EXAMPLE))
    model, acc = digits_model.train(epochs=3)
    assert acc > 0.85  # it learned: the C program must reproduce a real classifier
    weights = tmp_path / "w.npz"
    digits_model.save(model, str(weights))
    _, _, xte, yte = digits_model.load_data()
    e = env(tmp_path / "cache")
    e["DIGITS_WEIGHTS"] = str(weights)
    res = subprocess.run([sys.executable, "-m", "lamina.tools.cli", "compile",
                          str(EXAMPLE / "digits_model.py") + ":Digits", "--input", "1x64xf32",
                          "--symbol", "digits", "-o", str(tmp_path / "digits.so")],
                         env=e, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "int32_t digits(const float *in0, float *out0);" in (tmp_path / "digits.h").read_text()
    exe = tmp_path / "digits"
    subprocess.run(["cc", "-O2", "-std=c99", f"-I{tmp_path}", str(EXAMPLE / "main.c"),
                    str(tmp_path / "digits.so"), "-Wl,-rpath,$ORIGIN", "-o", str(exe)],
                   check=True)
    with lamina.no_grad():
        ref = model(lamina.from_numpy(xte[:5])).numpy()
    for k in range(5):
        img = tmp_path / f"img{k}.txt"
        np.savetxt(img, xte[k], fmt="%.9g")
        out = subprocess.run([str(exe), str(img)], capture_output=True, text=True, check=True)
        logits = np.array(out.stdout.split("logits:")[1].split("\n")[0].split(), np.float32)
        np.testing.assert_allclose(logits, ref[k], rtol=1e-4, atol=1e-5)
        assert f"prediction: {int(np.argmax(ref[k]))}" in out.stdout


def _arm_object(tmp_path):
    model = write_model(tmp_path)
    out = tmp_path / "mlp_arm.o"
    res = lamina_cmd(["compile", f"{model}:MLP", "--target", "aarch64", "-o", str(out)],
                     tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    elf = out.read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2  # 64-bit
    assert int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64
    assert "int32_t MLP(const float *in0, float *out0);" in out.with_suffix(".h").read_text()
    return model, out


def test_aarch64_object_elf_header(tmp_path):
    _arm_object(tmp_path)


def test_aarch64_object_runs_under_qemu(tmp_path):
    cross = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64")
    if cross is None or qemu is None:
        pytest.skip("no aarch64 cross compiler or qemu-aarch64")
    model, out = _arm_object(tmp_path)
    main = tmp_path / "main.c"
    main.write_text('#include <stdio.h>\n#include "mlp_arm.h"\nint main(void) { float x[32], '
                    'y[8]; for (int i = 0; i < 32; i++) x[i] = 1.0f; if (MLP(x, y)) return 1; '
                    'for (int i = 0; i < 8; i++) printf("%.6f\\n", y[i]); return 0; }\n')
    exe = tmp_path / "arm"
    subprocess.run([cross, "-static", f"-I{tmp_path}", str(main), str(out), "-lm", "-o",
                    str(exe)], check=True)
    got = np.array(subprocess.run([qemu, str(exe)], capture_output=True, text=True,
                                  check=True).stdout.split(), np.float32)
    sys.path.insert(0, str(tmp_path))
    try:
        from lamina.tools.loader import load_target

        ref = load_target(f"{model}:MLP").fn(lamina.ones(2, 16)).detach().numpy()
    finally:
        sys.path.remove(str(tmp_path))
    np.testing.assert_allclose(got, ref.ravel(), rtol=1e-4, atol=1e-5)


def test_exported_program_round_trip_in_fresh_process(tmp_path):
    lamina.manual_seed(3)
    net = lamina.nn.Sequential(lamina.nn.Linear(12, 7), lamina.nn.Tanh(), lamina.nn.Linear(7, 3))
    x = np.random.default_rng(4).standard_normal((5, 12)).astype(np.float32)
    ep = lamina.export(net, [lamina.from_numpy(x)])
    path = tmp_path / "net.lmx"
    ep.save(path)
    w1, b1, w2, b2 = (p.detach().numpy() for p in net.parameters())
    ref = np.tanh(x @ w1.T + b1) @ w2.T + b2
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent(f"""
        import sys, numpy as np, lamina
        assert "torch" not in sys.modules
        prog = lamina.load_exported({str(path)!r})
        out = prog(lamina.from_numpy(np.load({str(tmp_path / 'x.npy')!r})))
        np.save({str(tmp_path / 'out.npy')!r}, out.numpy())
        try:
            prog(lamina.ones(4, 12))
        except ValueError as e:
            print("shape error:", e)
    """)
    # a fresh process in an empty directory: the network's Python code is not there
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(tmp_path / "c"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), ref, rtol=1e-5, atol=1e-6)
    assert "exported for [5, 12] float32" in res.stdout


def test_exported_function_with_tuple_output_and_int_input(tmp_path):
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    b = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    ep = lamina.export(lambda i, f: (i * 2, f.exp().sum(0)),
                       [lamina.from_numpy(a), lamina.from_numpy(b)])
    ep.save(tmp_path / "p.lmx")
    back = lamina.load_exported(tmp_path / "p.lmx")
    assert [s.dtype for s in back.outputs] == ["int64", "float32"]
    i2, s = back(lamina.from_numpy(a), lamina.from_numpy(b))
    np.testing.assert_array_equal(i2.numpy(), a * 2)
    np.testing.assert_allclose(s.numpy(), np.exp(b).sum(0), rtol=1e-6)


def test_load_exported_rejects_other_files(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.ones(2))
    with pytest.raises(ValueError, match="not an exported Lamina program"):
        lamina.load_exported(p)
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not an exported Lamina program"):
        lamina.load_exported(tmp_path / "junk")
