"""``lamina.device``: where a tensor lives (``cpu``; ``cuda:N`` comes with the GPU runtime)."""

from __future__ import annotations


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
    """Accept ``cpu``; reject devices this build cannot use, with a clear message."""
    d = cpu if spec is None else device(spec)
    if d.type != "cpu":
        import lamina.cuda

        if not lamina.cuda.is_available():
            raise RuntimeError(f"{what}: device {d} is not available: lamina.cuda.is_available() "
                               "is False (no CUDA driver or GPU on this machine)")
        raise RuntimeError(f"{what}: tensors on {d} are not supported yet; run programs on the "
                           "GPU through lamina.runtime.cuda (see docs/gpu.md)")
    return d
