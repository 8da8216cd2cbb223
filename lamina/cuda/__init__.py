"""``lamina.cuda``: is a CUDA GPU usable, which one, and waiting for it.

Everything is lazy: importing this module never loads libcuda, and without a
driver or a device ``is_available()`` is False and ``device_count()`` is 0.
"""

from __future__ import annotations

from typing import Any

from lamina.runtime.cuda import driver as _driver

_current = 0


def is_available() -> bool:
    """True when the CUDA driver loads and reports at least one GPU."""
    return _driver.available()


def device_count() -> int:
    """Number of CUDA GPUs (0 without a driver)."""
    try:
        return _driver.driver().device_count()
    except (_driver.CudaUnavailable, _driver.CudaError):
        return 0


def _index(device: Any) -> int:
    if device is None:
        return _current
    if isinstance(device, int):
        return device
    from lamina.frontend.device import device as _device

    d = _device(device)
    if d.type != "cuda":
        raise ValueError(f"Expected a cuda device, but got: {d}")
    return _current if d.index is None else d.index


def _device(device: Any = None) -> _driver.Device:
    try:
        return _driver.driver().device(_index(device))
    except _driver.CudaUnavailable as e:
        raise RuntimeError(str(e)) from None


def get_device_name(device: Any = None) -> str:
    """The GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"``."""
    return _device(device).name()


def get_device_capability(device: Any = None) -> tuple[int, int]:
    """(major, minor) compute capability."""
    return _device(device).capability


def current_device() -> int:
    """Index of the device ``"cuda"`` means."""
    return _current


def set_device(device: Any) -> None:
    global _current
    _current = _index(device)


def synchronize(device: Any = None) -> None:
    """Wait for all work queued on the device."""
    _device(device).synchronize()


def empty_cache() -> None:
    """Return cached device memory of every initialised device to the driver."""
    if _driver._DRIVER is not None:
        for d in list(_driver._DRIVER._devices.values()):
            d.empty_cache()


__all__ = ["current_device", "device_count", "empty_cache", "get_device_capability",
           "get_device_name", "is_available", "set_device", "synchronize"]
