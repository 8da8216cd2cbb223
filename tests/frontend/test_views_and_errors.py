"""Views share storage like PyTorch's; bad input raises clear errors before any kernel runs."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.frontend import dispatch
from lamina.runtime import cache_stats
from tests.frontend.oracle import assert_close


def test_views_share_storage():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = lamina.from_numpy(a)
    assert x.numpy() is a or np.shares_memory(x.numpy(), a)
    for v in (x.view(6, 4), x.reshape(-1), x.permute(2, 0, 1), x.transpose(0, 2),
              x[1:, ::2], x[:, 1], x.unsqueeze(1), x[None, ..., 0], x.flatten(1),
              x[:, :1].squeeze(1), x[:1].expand(5, 3, 4)):
        assert np.shares_memory(v.numpy(), a)
    assert x.permute(2, 0, 1).stride() == (1, 12, 4)
    assert x[:, :, ::2].stride() == (12, 4, 2)
    assert x[:1].expand(5, 3, 4).stride() == (0, 4, 1)
    assert x.t().shape == (4, 3, 2) if x.ndim <= 2 else True


def test_view_matches_numpy_indexing():
    a = np.arange(60, dtype=np.int64).reshape(3, 4, 5)
    x = lamina.from_numpy(a)
    for key in [1, -1, (slice(1, None), slice(None, None, 2)), (Ellipsis, 2),
                (None, 1, slice(0, 3)), (slice(None), None, 3), (0, 0, 0),
                (slice(5, 10),)]:
        assert_close(x[key].numpy(), a[key])


def test_contiguous_copies_only_when_needed():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = lamina.from_numpy(a)
    assert x.contiguous() is x
    t = x.t()
    c = t.contiguous()
    assert c.is_contiguous() and not np.shares_memory(c.numpy(), a)
    assert_close(c.numpy(), a.T)
    r = t.reshape(12)  # not viewable: copies through a kernel
    assert_close(r.numpy(), a.T.reshape(12))
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        t.view(12)


def test_new_sizes_do_not_compile():
    x = lamina.ones(7, 5)
    y = lamina.ones(7, 5)
    (x * y + x).sum(dim=1)
    before_sigs = dispatch.eager_signatures()
    before = cache_stats()["compiles"]
    for n in (1, 3, 64, 1000):
        a, b = lamina.ones(n, 5), lamina.ones(n, 5)
        out = (a * b + a).sum(dim=1)
        assert_close(out.numpy(), np.full(n, 10.0, np.float32))
    assert dispatch.eager_signatures() == before_sigs
    assert cache_stats()["compiles"] == before


def test_shape_mismatch_errors():
    a, b = lamina.ones(2, 3), lamina.ones(4, 3)
    with pytest.raises(RuntimeError, match=r"size of tensor a \(2\) must match .* \(4\)"):
        a + b
    with pytest.raises(RuntimeError, match=r"cannot be multiplied \(2x3 and 4x3\)"):
        a @ b
    with pytest.raises(RuntimeError, match="same dtype"):
        a @ lamina.ones(3, 2, dtype=lamina.float64)
    with pytest.raises(IndexError, match="Dimension out of range"):
        a.sum(dim=5)
    with pytest.raises(IndexError, match="Dimension out of range"):
        a.transpose(0, 2)
    with pytest.raises(RuntimeError, match="invalid for input of size 6"):
        a.view(4, 2)
    with pytest.raises(RuntimeError, match="expanded size"):
        a.expand(3, 3)
    with pytest.raises(IndexError, match="out of bounds"):
        a[5]
    with pytest.raises(ValueError, match="step must be greater than zero"):
        a[::-1]
    with pytest.raises(RuntimeError, match="mean"):
        lamina.ones(3, dtype=lamina.int64).mean()
    with pytest.raises(TypeError, match="must be Tensor"):
        lamina.exp(3.0)
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(lamina.ones(3))


def test_errors_are_raised_before_any_kernel_runs():
    before = cache_stats()
    with pytest.raises(RuntimeError):
        lamina.ones(2, 3) + lamina.ones(3, 2)
    assert cache_stats()["compiles"] == before["compiles"]


def test_size_zero_and_one():
    z = lamina.zeros(0, 3)
    assert (z + 1).shape == (0, 3)
    assert z.sum(dim=0).numpy().tolist() == [0.0, 0.0, 0.0]
    assert z.sum(dim=1).shape == (0,)
    one = lamina.ones(1, 1)
    assert (one * 3).item() == 3.0
