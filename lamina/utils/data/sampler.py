"""Samplers (``torch.utils.data``): which indices a DataLoader reads, in which order.

Random orders come from Lamina's counter-based generator (``lamina.randperm``,
``randint``, ``multinomial`` with ``generator=``), so a seeded generator gives the
same order on every run. The numbers differ from PyTorch's own stream.
"""

from __future__ import annotations

import operator
from typing import Any, Generic, Iterable, Iterator, Sequence, Sized, TypeVar

import lamina

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler",
           "WeightedRandomSampler", "BatchSampler"]

T_co = TypeVar("T_co", covariant=True)


def as_generator(generator: Any) -> Any:
    """A ``lamina.Generator`` from ``None`` (kept), a generator, a seed, or any object with
    ``initial_seed()`` (a generator of another library: its seed starts ours)."""
    if generator is None or isinstance(generator, lamina.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return lamina.Generator().manual_seed(generator)
    seed = getattr(generator, "initial_seed", None)
    if callable(seed):
        return lamina.Generator().manual_seed(seed())
    raise TypeError(f"generator must be a lamina.Generator or an int seed, not "
                    f"{type(generator).__name__}")


def draw_seed(generator: Any) -> int:
    """A fresh non-negative 62-bit seed drawn from ``generator`` (the default one if None)."""
    return int(lamina.randint(0, 1 << 62, (1,), generator=generator).item())


class Sampler(Generic[T_co]):
    """Base class: iterating a sampler yields dataset indices (or lists of them)."""

    def __init__(self, data_source: Sized | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError


class SequentialSampler(Sampler[int]):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source: Sized):
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


def _positive_int(value: Any, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value}")


def _boolean(value: Any, name: str, error: type = TypeError) -> None:
    if not isinstance(value, bool):
        raise error(f"{name} should be a boolean value, but got {name}={value}")


class RandomSampler(Sampler[int]):
    """A random permutation of the indices (or ``num_samples`` indices drawn with
    replacement). A new order is drawn from ``generator`` at every iteration."""

    def __init__(self, data_source: Sized, replacement: bool = False,
                 num_samples: int | None = None, generator: Any = None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = as_generator(generator)
        _boolean(replacement, "replacement")
        _positive_int(self.num_samples, "num_samples")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        gen = self.generator
        if gen is None:  # a private stream seeded from the default generator, like PyTorch
            gen = lamina.Generator().manual_seed(draw_seed(None))
        total = self.num_samples
        if self.replacement:
            for start in range(0, total, 32):
                size = min(32, total - start)
                yield from lamina.randint(0, n, (size,), generator=gen).tolist()
            return
        for _ in range(total // n):
            yield from lamina.randperm(n, generator=gen).tolist()
        if total % n:
            yield from lamina.randperm(n, generator=gen).tolist()[:total % n]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given indices in a random order (a new one at every iteration)."""

    def __init__(self, indices: Sequence[int], generator: Any = None):
        self.indices = indices
        self.generator = as_generator(generator)

    def __iter__(self) -> Iterator[int]:
        for i in lamina.randperm(len(self.indices), generator=self.generator).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler[int]):
    """``num_samples`` indices drawn with probability proportional to ``weights``."""

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True,
                 generator: Any = None):
        _positive_int(num_samples, "num_samples")
        _boolean(replacement, "replacement", ValueError)
        if isinstance(weights, lamina.Tensor):
            w = weights.to(lamina.float64)
        else:
            w = lamina.tensor(list(weights), dtype=lamina.float64)
        if w.ndim != 1:
            raise ValueError("weights should be a 1d sequence but given weights have shape "
                             f"{tuple(w.shape)}")
        self.weights = w
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = as_generator(generator)

    def __iter__(self) -> Iterator[int]:
        drawn = lamina.multinomial(self.weights, self.num_samples, self.replacement,
                                   generator=self.generator)
        yield from drawn.tolist()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler[list[int]]):
    """Group the indices of ``sampler`` into lists of ``batch_size`` (the last one shorter
    unless ``drop_last``)."""

    def __init__(self, sampler: Sampler[int] | Iterable[int], batch_size: int,
                 drop_last: bool):
        _positive_int(batch_size, "batch_size")
        _boolean(drop_last, "drop_last", ValueError)
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        if self.drop_last:
            return n // self.batch_size
        return operator.floordiv(n + self.batch_size - 1, self.batch_size)
