"""CUDA tensors: every op's result on the GPU equals the CPU result.

Runs on a real GPU when the CUDA driver reports one; otherwise on the host-memory
stand-in (``lamina.runtime.cuda.fake``), which runs the real CudaArray, dispatch,
CudaProgram and driver code with launches that execute the CPU build of each kernel.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
import lamina.nn.functional as F
from lamina.runtime.cuda import driver as D
from lamina.runtime.cuda import fake

REAL_GPU = D.available() and not fake.installed()


@pytest.fixture(scope="module")
def cuda_device():
    """``"cuda"``: the real GPU when there is one, else the stand-in (installed for the module)."""
    if REAL_GPU:
        yield "cuda"
        return
    fake.install()
    try:
        yield "cuda"
    finally:
        fake.uninstall()


def _close(got: lamina.Tensor, want: lamina.Tensor) -> None:
    assert got.device.type == "cuda"
    g, w = got.cpu().numpy(), want.numpy()
    assert g.dtype == w.dtype and g.shape == w.shape
    if g.dtype.kind == "f" and REAL_GPU:
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    elif g.dtype.kind == "f":
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(g, w)


def _data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((4, 6)).astype(np.float32),
        "y": rng.standard_normal((4, 6)).astype(np.float32),
        "r": rng.standard_normal((6,)).astype(np.float32),
        "c": rng.standard_normal((4, 1)).astype(np.float32),
        "m": rng.standard_normal((6, 5)).astype(np.float32),
        "b3": rng.standard_normal((2, 4, 6)).astype(np.float32),
        "b3w": rng.standard_normal((2, 6, 3)).astype(np.float32),
        "img": rng.standard_normal((2, 3, 8, 8)).astype(np.float32),
        "ker": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "i": rng.integers(0, 4, (4, 6)).astype(np.int64),
        "idx": np.array([2, 0, 3], np.int64),
        "gi": rng.integers(0, 6, (4, 3)).astype(np.int64),
    }


OPS = {
    "add": lambda t: t["x"] + t["y"],
    "sub_bcast_row": lambda t: t["x"] - t["r"],
    "mul_bcast_col": lambda t: t["x"] * t["c"],
    "div_scalar": lambda t: t["x"] / 3.0,
    "pow": lambda t: t["x"].abs() ** 1.5,
    "maximum": lambda t: lamina.maximum(t["x"], t["y"]),
    "transposed_add": lambda t: t["x"].T + t["y"].T.contiguous(),
    "sliced_mul": lambda t: t["x"][1:, ::2] * 2,
    "exp_log": lambda t: (t["x"].exp() + 1).log(),
    "tanh_sigmoid": lambda t: t["x"].tanh() + t["y"].sigmoid(),
    "relu": lambda t: t["x"].relu(),
    "compare": lambda t: t["x"] > t["y"],
    "cast_int": lambda t: (t["x"] * 10).to(lamina.int32),
    "cast_double": lambda t: t["x"].double(),
    "int_add": lambda t: t["i"] * 3 + 1,
    "sum_dim": lambda t: t["x"].sum(1),
    "mean_keepdim": lambda t: t["x"].mean(0, keepdim=True),
    "max_all": lambda t: t["x"].max(),
    "argmax": lambda t: t["x"].argmax(1),
    "var": lambda t: t["x"].var(1),
    "softmax": lambda t: t["x"].softmax(1),
    "log_softmax": lambda t: F.log_softmax(t["x"], 0),
    "matmul": lambda t: t["x"] @ t["m"],
    "bmm": lambda t: lamina.bmm(t["b3"], t["b3w"]),
    "linear": lambda t: F.linear(t["x"], t["m"].T, t["m"][0]),
    "conv2d": lambda t: F.conv2d(t["img"], t["ker"], padding=1),
    "max_pool2d": lambda t: F.max_pool2d(t["img"], 2),
    "avg_pool2d": lambda t: F.avg_pool2d(t["img"], 2),
    "layer_norm": lambda t: F.layer_norm(t["x"], (6,)),
    "batch_norm": lambda t: F.batch_norm(t["img"], None, None, training=True),
    "cat": lambda t: lamina.cat([t["x"], t["y"]], 0),
    "stack": lambda t: lamina.stack([t["x"], t["y"]], 1),
    "index_select": lambda t: t["x"].index_select(0, t["idx"]),
    "gather": lambda t: t["x"].gather(1, t["gi"]),
    "where": lambda t: lamina.where(t["x"] > 0, t["x"], t["y"]),
    "select_int": lambda t: t["x"][2] + 0,
    "permute_contiguous": lambda t: t["b3"].permute(2, 0, 1).contiguous(),
    "expand_clone": lambda t: t["r"].expand(3, 6).clone(),
    "reshape": lambda t: t["b3"].reshape(4, 12),
    "view_of_transpose": lambda t: t["x"].T.reshape(-1),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_on_cuda_equals_cpu(cuda_device, name):
    cpu = {k: lamina.tensor(v) for k, v in _data().items()}
    gpu = {k: v.to(cuda_device) for k, v in cpu.items()}
    _close(OPS[name](gpu), OPS[name](cpu))


def test_in_place_ops_and_copy(cuda_device):
    a = lamina.tensor(_data()["x"])
    g = a.to(cuda_device)
    for t in (a, g):
        t.add_(1)
        t[:, 0] = 5.0
        t.mul_(t)
        t[1].copy_(t[2])
    _close(g, a)
    host = lamina.zeros(4, 6)
    host.copy_(g)  # GPU -> host
    np.testing.assert_array_equal(host.numpy(), a.numpy())
    g2 = lamina.zeros(4, 6, device=cuda_device)
    g2.copy_(a)  # host -> GPU
    _close(g2, a)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(["float32", "float64", "int64"]))
def test_random_shapes_elementwise_and_reduce(cuda_device, rows, cols, seed, dtype):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * 5).astype(dtype)
    y = (rng.standard_normal((1, cols)) * 5).astype(dtype)
    a, b = lamina.tensor(x), lamina.tensor(y)
    ga, gb = a.cuda(), b.cuda()
    _close(ga * gb + ga, a * b + a)
    _close(ga.T.sum(0), a.T.sum(0))
    _close(ga[::2].amax(1), a[::2].amax(1))


def test_device_metadata_and_transfers(cuda_device):
    x = lamina.arange(6.0).reshape(2, 3)
    g = x.cuda()
    assert g.is_cuda and not x.is_cuda
    assert g.device == lamina.device("cuda:0") and str(g.device) == "cuda:0"
    assert g.to("cuda") is g and g.cpu() is not g
    assert x.cpu() is x and x.to("cpu") is x
    assert g.to("cuda", copy=True) is not g
    d = g.to(lamina.float64)
    assert d.is_cuda and d.dtype is lamina.float64
    h = x.to(cuda_device, lamina.int64)
    assert h.is_cuda and h.dtype is lamina.int64
    np.testing.assert_array_equal(g.cpu().numpy(), x.numpy())
    assert g.t().stride() == (1, 3) and not g.t().is_contiguous()
    assert g.tolist() == x.tolist() and g[1, 2].item() == 5.0
    assert lamina.device("cuda", 0) == lamina.device("cuda:0")


def test_numpy_of_cuda_tensor_raises(cuda_device):
    g = lamina.ones(3, device=cuda_device)
    with pytest.raises(TypeError, match=r"can't convert cuda:0 device type tensor to numpy\. "
                                        r"Use Tensor\.cpu\(\)"):
        g.numpy()
    with pytest.raises(TypeError, match="cuda:0"):
        np.asarray(g)


def test_mixed_devices_raise(cuda_device):
    g = lamina.ones(2, 3, device=cuda_device)
    c = lamina.ones(2, 3)
    msg = ("Expected all tensors to be on the same device, but found at least two devices, "
           "cuda:0 and cpu!")
    with pytest.raises(RuntimeError, match=msg):
        g + c
    with pytest.raises(RuntimeError, match=msg):
        lamina.matmul(g, c.T)
    # Python numbers and 0-d CPU tensors are scalars
    _close(g * 2 + lamina.tensor(1.5), c * 2 + lamina.tensor(1.5))


def test_creation_with_device(cuda_device):
    for t, want in [
        (lamina.zeros(2, 3, device=cuda_device), lamina.zeros(2, 3)),
        (lamina.ones(4, dtype=lamina.int32, device=cuda_device),
         lamina.ones(4, dtype=lamina.int32)),
        (lamina.full((2, 2), 7.0, device=cuda_device), lamina.full((2, 2), 7.0)),
        (lamina.arange(0, 10, 3, device=cuda_device), lamina.arange(0, 10, 3)),
        (lamina.linspace(0, 1, 5, device=cuda_device), lamina.linspace(0, 1, 5)),
        (lamina.eye(3, device=cuda_device), lamina.eye(3)),
        (lamina.tensor([[1, 2], [3, 4]], device=cuda_device), lamina.tensor([[1, 2], [3, 4]])),
    ]:
        _close(t, want)
    g = lamina.ones(2, 3, device=cuda_device)
    for like in (lamina.zeros_like(g), lamina.ones_like(g), lamina.full_like(g, 3),
                 lamina.empty_like(g), lamina.rand_like(g), g.new_zeros(4)):
        assert like.is_cuda
    assert lamina.zeros_like(g, device="cpu").device.type == "cpu"
    assert lamina.empty(3, device=cuda_device).is_cuda
    r = lamina.zeros(3, requires_grad=True, device=cuda_device)
    assert r.is_leaf and r.requires_grad and r.is_cuda


def test_random_on_cuda_matches_cpu_stream(cuda_device):
    lamina.manual_seed(3)
    want = [lamina.rand(5, 7), lamina.randn(300)]
    lamina.manual_seed(3)
    got = [lamina.rand(5, 7, device=cuda_device), lamina.randn(300, device=cuda_device)]
    for g, w in zip(got, want):
        assert g.is_cuda
        np.testing.assert_allclose(g.cpu().numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
    u = got[0].cpu().numpy()
    assert (u >= 0).all() and (u < 1).all()
    x = lamina.ones(1000, device=cuda_device)
    y = F.dropout(x, 0.5, training=True)
    kept = (y.cpu().numpy() != 0).mean()
    assert y.is_cuda and 0.4 < kept < 0.6


def test_repr_shows_device(cuda_device):
    g = lamina.tensor([1.0, 2.0], device=cuda_device)
    assert repr(g) == "tensor([1., 2.], device='cuda:0')"
    assert repr(g.int()) == "tensor([1, 2], device='cuda:0', dtype=lamina.int32)"


def _mlp_and_cnn_grads(dev: str) -> list[np.ndarray]:
    lamina.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dev)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3)).to(dev)
    d = _data()
    x, img = lamina.tensor(d["x"]).to(dev), lamina.tensor(d["img"]).to(dev)
    loss = F.cross_entropy(mlp(x), lamina.tensor([0, 1, 2, 1]).to(dev)) + \
        F.mse_loss(cnn(img), lamina.zeros(2, 3, device=dev))
    loss.backward()
    params = list(mlp.parameters()) + list(cnn.parameters())
    assert all(p.grad.device.type == lamina.device(dev).type for p in params)
    return [p.grad.cpu().numpy() for p in params]


def test_autograd_mlp_and_cnn(cuda_device):
    for g, w in zip(_mlp_and_cnn_grads(cuda_device), _mlp_and_cnn_grads("cpu")):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_autograd_through_a_transfer(cuda_device):
    x = lamina.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x.cuda() * 2).sum().backward()
    assert x.grad.device.type == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_module_to_cuda_and_optimizer_steps(cuda_device, opt):
    def train(dev):
        lamina.manual_seed(1)
        m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
        first = m[0].weight
        if opt == "sgd":
            o = lamina.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
            m.to(dev)  # moved after the optimizer was built: parameter identity is kept
        else:
            m.to(dev)
            o = lamina.optim.Adam(m.parameters(), lr=0.01)
        assert m[0].weight is first and first.device.type == lamina.device(dev).type
        x = lamina.tensor(_data()["x"]).to(dev)
        for _ in range(3):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
        return [p.detach().cpu().numpy() for p in m.parameters()]

    for g, w in zip(train(cuda_device), train("cpu")):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_module_cpu_moves_back_with_grads(cuda_device):
    m = nn.Linear(3, 2).cuda()
    m(lamina.ones(1, 3, device=cuda_device)).sum().backward()
    assert m.weight.grad.is_cuda
    m.cpu()
    assert not m.weight.is_cuda and not m.weight.grad.is_cuda


def test_save_load_round_trip(cuda_device):
    g = lamina.arange(6.0, device=cuda_device).reshape(2, 3)
    buf = io.BytesIO()
    lamina.save({"w": g, "n": 1}, buf)
    buf.seek(0)
    back = lamina.load(buf)
    assert back["w"].is_cuda and back["n"] == 1
    _close(back["w"], g.cpu())
    buf.seek(0)
    host = lamina.load(buf, map_location="cpu")["w"]
    assert not host.is_cuda
    np.testing.assert_array_equal(host.numpy(), g.cpu().numpy())
    buf = io.BytesIO()
    lamina.save(g.cpu(), buf)
    buf.seek(0)
    assert lamina.load(buf, map_location="cuda").is_cuda


def test_fake_device_is_the_stand_in(cuda_device):
    if REAL_GPU:
        pytest.skip("a real GPU is present")
    assert lamina.cuda.is_available() and lamina.cuda.device_count() == 1
    assert lamina.cuda.get_device_name() == fake.NAME


def test_without_a_gpu_cuda_is_a_clear_error():
    if REAL_GPU:
        pytest.skip("a GPU is present")
    stand_in = fake.installed()
    fake.uninstall()
    try:
        if D.available():
            pytest.skip("CUDA is available here (LAMINA_CUDA_FAKE=1?)")
        assert not lamina.cuda.is_available()
        with pytest.raises(RuntimeError, match="is_available"):
            lamina.ones(2).to("cuda")
        with pytest.raises(RuntimeError, match="is_available"):
            lamina.zeros(2, device="cuda")
    finally:
        if stand_in:
            fake.install()


# -- lamina.compile on the GPU ------------------------------------------------------------------
class _Net(nn.Module):
    """Conv + BatchNorm + pool + linear: every kind of kernel of a training step."""

    def __init__(self):
        super().__init__()
        # no conv bias: BatchNorm cancels it, so its true gradient is 0 and AdamW would
        # turn rounding noise (different on the GPU) into lr-sized updates
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(lamina.flatten(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2), 1))


def _compiled_steps(dev: str, opt_name: str, n: int = 3) -> list[np.ndarray]:
    lamina.manual_seed(0)
    net = _Net().to(dev)
    opt = (lamina.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd" else
           lamina.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-2))
    d = _data()
    x = lamina.tensor(d["img"]).to(dev)
    y = lamina.tensor([0, 2]).to(dev)

    @lamina.compile
    def step(x, y):
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    losses = [step(x, y) for _ in range(n)]
    assert step.compiles == 1 and all(loss.device.type == lamina.device(dev).type
                                      for loss in losses)
    state = [t.cpu().numpy() for t in net.state_dict().values()]
    return [np.array([loss.item() for loss in losses])] + state


@pytest.mark.parametrize("opt_name", ["adamw", "sgd"])
def test_compiled_training_step_on_cuda_equals_cpu(cuda_device, opt_name):
    got, want = _compiled_steps(cuda_device, opt_name), _compiled_steps("cpu", opt_name)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_compiled_function_on_cuda(cuda_device):
    a = np.random.default_rng(3).standard_normal((33, 65)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((65, 17)).astype(np.float32)
    wt = lamina.tensor(w).to(cuda_device)
    f = lamina.compile(lambda x: lamina.softmax(x @ wt, 1).sum(0))
    out = f(lamina.tensor(a).to(cuda_device))
    assert out.device.type == "cuda"
    z = a.astype(np.float64) @ w
    e = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(out.cpu().numpy(), (e / e.sum(1, keepdims=True)).sum(0),
                               rtol=1e-4, atol=1e-5)


def test_compiled_function_with_mixed_devices_is_an_error(cuda_device):
    w = lamina.ones(4, 4)  # stays on the CPU
    f = lamina.compile(lambda x: x @ w)
    with pytest.raises(RuntimeError, match="same device.*lamina.compile"):
        f(lamina.ones(3, 4).to(cuda_device))
