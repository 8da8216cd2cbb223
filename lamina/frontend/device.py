"""``lamina.device``: where a tensor lives, ``cpu`` or ``cuda:N`` (storage a ``CudaArray``)."""

from __future__ import annotations

from typing import Any

import numpy as np


class device:  # noqa: N801 - PyTorch's spelling
    """A device: ``lamina.device("cpu")``, ``lamina.device("cuda", 0)``."""

    __slots__ = ("type", "index")

    def __init__(self, spec: str | device, index: int | None = None):
        if isinstance(spec, device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device() expected a string, got {type(spec).__name__}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(
                f"Expected one of cpu, cuda device type at start of device string: {spec}"
            )
        if idx:
            if index is not None:
                raise RuntimeError(f"device string {spec!r} already has an index")
            if not idx.isdigit():
                raise RuntimeError(f"Invalid device string: '{spec}'")
            index = int(idx)
        self.type, self.index = kind, index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{idx})"


cpu = device("cpu")


def check_device(spec: str | device | None, what: str) -> device:
    """The device ``spec`` names (``None``: cpu); a CUDA device must exist, else a clear
    RuntimeError. ``"cuda"`` without an index means the current device."""
    d = cpu if spec is None else device(spec)
    if d.type != "cpu":
        import lamina.cuda

        if not lamina.cuda.is_available():
            raise RuntimeError(f"{what}: device {d} is not available: lamina.cuda.is_available() "
                               "is False (no CUDA driver or GPU on this machine)")
        n = lamina.cuda.device_count()
        index = lamina.cuda.current_device() if d.index is None else d.index
        if not 0 <= index < n:
            raise RuntimeError(f"{what}: CUDA error: invalid device ordinal {d} ({n} device"
                               f"{'s' if n != 1 else ''} present)")
        d = device("cuda", index)
    return d


def runtime_device(d: device) -> Any:
    """The driver's ``Device`` of a checked cuda device (None for cpu)."""
    if d.type == "cpu":
        return None
    from lamina.runtime.cuda import driver

    return driver.driver().device(d.index or 0)


def of_array(a: Any) -> device:
    """The device of a tensor's storage (``Tensor._a``)."""
    if a is None or isinstance(a, np.ndarray):
        return cpu
    return device("cuda", a.device.index)
