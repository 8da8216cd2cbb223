"""PyTorch scripts run unchanged on Lamina: only their ``import torch...`` lines are
rewritten to ``lamina``. Their printed output must match PyTorch's: text exactly
(``lamina`` read as ``torch``), numbers to a relative 1e-4.

The reference is real PyTorch when installed, else the output PyTorch printed when
the script was added (``expected/<script>.out``; refresh with
``python3 -m tests.compat.test_scripts``).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.frontend.oracle import torch

HERE = Path(__file__).parent
SCRIPTS = sorted((HERE / "scripts").glob("*.py"))
EXPECTED = HERE / "expected"

_IMPORT = re.compile(r"^(\s*)(import|from)\s+torch\b(.*)$", re.M)
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf")


def as_lamina(source: str) -> str:
    """The script with ``import torch[...]`` / ``from torch[...]`` lines on lamina."""

    def fix(m: re.Match) -> str:
        indent, kw, rest = m.groups()
        if kw == "import" and rest.strip() == "":
            return f"{indent}import lamina as torch"
        return f"{indent}{kw} lamina{rest}"

    return _IMPORT.sub(fix, source)


def run(source: str, name: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, name, "exec"), {"__name__": "__main__"})
    return out.getvalue()


def tokens(text: str) -> tuple[list[str], list[float]]:
    """Text between numbers (whitespace-collapsed) and the numbers themselves."""
    text = text.replace("lamina", "torch")
    words = [" ".join(part.split()) for part in _NUMBER.split(text)]
    return words, [float(x) for x in _NUMBER.findall(text)]


def reference(script: Path) -> str:
    if torch is not None:
        return run(script.read_text(), str(script))
    expected = EXPECTED / (script.stem + ".out")
    if not expected.exists():
        pytest.skip(f"PyTorch is not installed and {expected.name} is missing")
    return expected.read_text()


def test_import_rewrite():
    src = "import torch\nimport torch.nn as nn\nfrom torch.nn.utils import clip_grad_norm_\nx = 1\n"
    assert as_lamina(src) == ("import lamina as torch\nimport lamina.nn as nn\n"
                              "from lamina.nn.utils import clip_grad_norm_\nx = 1\n")


def test_token_comparison_catches_differences():
    assert tokens("loss 0.5 tensor([1., 2.])") == (["loss", "tensor([", ",", "])"],
                                                  [0.5, 1.0, 2.0])
    assert tokens("a 1e-3")[1] == [0.001]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_matches_pytorch(script):
    want = reference(script)
    got = run(as_lamina(script.read_text()), str(script))
    got_words, got_nums = tokens(got)
    want_words, want_nums = tokens(want)
    assert got_words == want_words, f"output differs:\n--- lamina\n{got}\n--- torch\n{want}"
    assert len(got_nums) == len(want_nums)
    for i, (g, w) in enumerate(zip(got_nums, want_nums)):
        assert g == pytest.approx(w, rel=1e-4, abs=2e-5, nan_ok=True), (
            f"number {i}: {g} != {w}\n--- lamina\n{got}\n--- torch\n{want}")


if __name__ == "__main__":  # refresh the stored PyTorch outputs
    EXPECTED.mkdir(exist_ok=True)
    for s in SCRIPTS:
        (EXPECTED / (s.stem + ".out")).write_text(run(s.read_text(), str(s)))
        print("wrote", s.stem)
