"""Every ``lamina`` subcommand end to end in a subprocess: output, exit status, errors."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lamina.ir import parse
from tests.tools.helpers import lamina_cmd, write_model

COMMANDS = ["ir", "viz", "compile", "bench", "cache", "info"]


@pytest.fixture
def model(tmp_path):
    return write_model(tmp_path)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _one_line_error(res, command: str) -> str:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lamina {command}: error:"), res.stderr
    return lines[0]


def test_help(cache):
    res = lamina_cmd(["--help"], cache)
    assert res.returncode == 0
    for c in COMMANDS:
        assert c in res.stdout
        sub = lamina_cmd([c, "--help"], cache)
        assert sub.returncode == 0 and "usage: lamina " + c in sub.stdout


def test_no_command_is_usage_error(cache):
    res = lamina_cmd([], cache)
    assert res.returncode == 2 and "usage:" in res.stderr


@pytest.mark.parametrize("stage", ["tensor", "prim", "loop"])
def test_ir_stage_parses_back(model, cache, stage):
    res = lamina_cmd(["ir", f"{model}:f", "--input", "4x4xf32", "--input", "4x4xf32",
                      "--stage", stage], cache)
    assert res.returncode == 0, res.stderr
    module = parse(res.stdout)
    func = [g for g in module.graphs if g.kind == "func"][0]
    kind = "memref" if stage == "loop" else "tensor"
    assert str(func.args[0].type) == f"{kind}<4x4xf32>"
    if stage == "prim":
        assert [op.name for op in func.ops] == ["prim.fusion", "return"]
    if stage == "loop":
        assert any(g.kind == "kernel" for g in module.graphs)


def test_ir_module_with_example_inputs_and_all_stages(model, cache):
    res = lamina_cmd(["ir", f"{model}:MLP", "--stage", "all"], cache)
    assert res.returncode == 0, res.stderr
    for s in ("tensor", "prim", "loop", "llvm"):
        assert f"// ===== stage {s} ===== //" in res.stdout
    assert "tensor<2x16xf32>" in res.stdout and "tensor<8x16xf32>" in res.stdout  # fc1 weight
    assert "define void @" in res.stdout  # LLVM IR of the kernels


def test_ir_print_after_all(model, cache):
    res = lamina_cmd(["ir", f"{model}:f", "--input", "3xf32", "--input", "3xf32",
                      "--print-after-all"], cache)
    assert res.returncode == 0, res.stderr
    for p in ("decompose", "simplify", "fuse", "lower-loops", "prepare-loops"):
        assert f"IR after {p} //" in res.stdout


@pytest.mark.parametrize("args, needle", [
    (["ir", "{dir}/missing.py:f"], "no such file"),
    (["ir", "{model}:nope"], "defines no 'nope'"),
    (["ir", "{model}"], "expected FILE.py:NAME"),
    (["ir", "{model}:f", "--input", "4x4xq32"], "bad input spec"),
    (["ir", "{model}:f", "--input", "4x4"], "bad input spec"),
    (["ir", "{model}:not_callable"], "not a function"),
    (["ir", "{model}:f"], "example_inputs"),  # f takes 2 args; example_inputs gives 1
    (["viz", "{model}:MLP", "-o", "{dir}/g.pdf"], ".dot, .svg or .png"),
    (["compile", "{model}:MLP", "-o", "{dir}/x.dll"], ".so or .o"),
    (["compile", "{model}:MLP", "-o", "{dir}/x.o", "--symbol", "1bad"], "C identifier"),
    (["bench"], "either FILE.py:NAME or --suite"),
])
def test_user_errors_are_one_line(model, cache, tmp_path, args, needle):
    args = [a.format(dir=tmp_path, model=model) for a in args]
    line = _one_line_error(lamina_cmd(args, cache), args[0])
    if needle != "example_inputs":
        assert needle in line
    else:
        assert "TypeError" in line  # the user's function was called with the wrong arity


def test_ir_ptx_stage_and_compile_to_ptx(model, cache, tmp_path):
    res = lamina_cmd(["ir", f"{model}:MLP", "--stage", "ptx"], cache)
    assert res.returncode == 0, res.stderr
    assert ".entry" in res.stdout and ".version" in res.stdout
    out = tmp_path / "mlp.ptx"
    res = lamina_cmd(["compile", f"{model}:MLP", "--target", "cuda", "-o", str(out)], cache)
    assert res.returncode == 0, res.stderr
    ptx = out.read_text()
    assert ".entry" in ptx
    bad = lamina_cmd(["compile", f"{model}:MLP", "--target", "cuda", "-o",
                      str(tmp_path / "mlp.so")], cache)
    assert "must end in .ptx" in _one_line_error(bad, "compile")
    ptxas = shutil.which("ptxas")
    if ptxas is None:
        pytest.skip("ptxas is not installed: the PTX was generated but not assembled")
    done = subprocess.run([ptxas, "-arch=sm_90", str(out), "-o", str(tmp_path / "mlp.cubin")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_info(cache):
    res = lamina_cmd(["info"], cache)
    assert res.returncode == 0, res.stderr
    import llvmlite.binding as llvm

    for key in ("lamina", "numpy", "llvmlite", "LLVM", "target triple", "CPU features", "CUDA",
                "cache directory"):
        assert key in res.stdout
    assert llvm.get_process_triple() in res.stdout
    assert str(cache) in res.stdout


def test_cache_stats_ls_clear(model, cache):
    res = lamina_cmd(["cache", "stats"], cache)
    assert res.returncode == 0 and "entries    0" in res.stdout
    assert lamina_cmd(["ir", f"{model}:MLP"], cache).returncode == 0  # no kernels compiled
    run = lamina_cmd(["bench", f"{model}:MLP", "--repeat", "1", "--warmup", "0"], cache)
    assert run.returncode == 0, run.stderr
    entries = [d for d in cache.iterdir() if len(d.name) == 64]
    assert entries
    stats = lamina_cmd(["cache", "stats"], cache).stdout
    assert f"entries    {len(entries)} (0 incomplete)" in stats
    ls = lamina_cmd(["cache", "ls"], cache).stdout.strip().splitlines()
    assert sorted(line.split()[0] for line in ls) == sorted(d.name[:16] for d in entries)
    res = lamina_cmd(["cache", "clear"], cache)
    assert res.returncode == 0 and f"removed {len(entries)} entries" in res.stdout
    assert not [d for d in cache.iterdir() if len(d.name) == 64]
    assert "entries    0" in lamina_cmd(["cache", "stats"], cache).stdout


def test_viz_dot(model, cache, tmp_path):
    out = tmp_path / "g.dot"
    res = lamina_cmd(["viz", f"{model}:MLP", "-o", str(out)], cache)
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert text.startswith('digraph "MLP"') and text.rstrip().endswith("}")
    assert "subgraph cluster_0" in text and "prim.dot_general" in text
    assert 'label="2x8xf32"' in text  # the hidden activation on an edge
    loop = tmp_path / "l.dot"
    assert lamina_cmd(["viz", f"{model}:MLP", "-o", str(loop), "--stage", "loop"],
                      cache).returncode == 0
    assert "kernel @" in loop.read_text()


def test_viz_svg_without_or_with_dot(model, cache, tmp_path):
    import shutil

    out = tmp_path / "g.svg"
    res = lamina_cmd(["viz", f"{model}:f", "--input", "2xf32", "--input", "2xf32", "-o",
                      str(out)], cache)
    assert res.returncode == 0, res.stderr
    if shutil.which("dot") is None:
        assert not out.exists() and (tmp_path / "g.dot").exists()
        assert "apt-get install graphviz" in res.stderr
    else:
        assert out.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_bench_target_and_suite(model, cache):
    res = lamina_cmd(["bench", f"{model}:MLP", "--repeat", "2", "--warmup", "1"], cache)
    assert res.returncode == 0, res.stderr
    assert "| MLP compiled vs eager |" in res.stdout and "first call" in res.stdout
    res = lamina_cmd(["bench", "--suite", "matmul", "--quick", "--repeat", "2"], cache)
    assert res.returncode == 0, res.stderr
    rows = [r for r in res.stdout.splitlines() if r.startswith("| matmul")]
    assert len(rows) == 2
    assert all(r.count("x |") >= 1 for r in rows)  # a numpy/lamina ratio per row
