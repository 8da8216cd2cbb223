"""Datasets, samplers and collation (utils.data), against their definitions and numpy."""

from __future__ import annotations

from collections import Counter, namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina.utils.data import (
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    StackDataset,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    default_convert,
    random_split,
)


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i * i


class Count(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def test_tensor_dataset():
    x = lamina.tensor(np.arange(12.0).reshape(6, 2))
    y = lamina.arange(6)
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    a, b = ds[4]
    assert a.tolist() == [8.0, 9.0] and b.item() == 4
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(x, lamina.arange(5))


def test_concat_subset_chain_stack():
    ds = Squares(3) + Squares(4)
    assert isinstance(ds, ConcatDataset) and len(ds) == 7
    assert [ds[i] for i in range(7)] == [0, 1, 4, 0, 1, 4, 9]
    assert ds[-1] == 9 and ds.cumulative_sizes == [3, 7]
    with pytest.raises(ValueError, match="should not exceed dataset length"):
        ds[-8]
    with pytest.raises(AssertionError, match="does not support IterableDataset"):
        ConcatDataset([Squares(2), Count(2)])
    sub = Subset(Squares(10), [9, 2, 5])
    assert len(sub) == 3 and [sub[i] for i in range(3)] == [81, 4, 25]
    assert sub.__getitems__([0, 2]) == [81, 25]
    chain = Count(2) + Count(3)
    assert isinstance(chain, ChainDataset) and list(chain) == [0, 1, 0, 1, 2] and len(chain) == 5
    st_ = StackDataset(Squares(3), Squares(3))
    assert st_[2] == (4, 4)
    assert StackDataset(a=Squares(2), b=Squares(2))[1] == {"a": 1, "b": 1}


def test_random_split():
    g = lamina.Generator().manual_seed(1)
    parts = random_split(Squares(10), [3, 7], generator=g)
    idx = parts[0].indices + parts[1].indices
    assert sorted(idx) == list(range(10)) and [len(p) for p in parts] == [3, 7]
    again = random_split(Squares(10), [3, 7], generator=lamina.Generator().manual_seed(1))
    assert again[0].indices == parts[0].indices
    fr = random_split(Squares(10), [0.5, 0.3, 0.2], generator=3)
    assert [len(p) for p in fr] == [5, 3, 2]
    fr = random_split(Squares(11), [0.5, 0.5])
    assert [len(p) for p in fr] == [6, 5]
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(Squares(10), [3, 3])


def test_sequential_and_batch_sampler():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    bs = BatchSampler(range(7), 3, drop_last=True)
    assert list(bs) == [[0, 1, 2], [3, 4, 5]] and len(bs) == 2
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean value"):
        BatchSampler(range(3), 1, 0)


def test_random_sampler_is_a_seeded_permutation():
    s = RandomSampler(range(20), generator=lamina.Generator().manual_seed(5))
    first, second = list(s), list(s)
    assert sorted(first) == list(range(20)) and sorted(second) == list(range(20))
    assert first != second, "each epoch draws a new order"
    s2 = RandomSampler(range(20), generator=lamina.Generator().manual_seed(5))
    assert list(s2) == first and list(s2) == second
    lamina.manual_seed(0)
    a = list(RandomSampler(range(20)))
    lamina.manual_seed(0)
    assert list(RandomSampler(range(20))) == a
    many = list(RandomSampler(range(5), num_samples=12, generator=2))
    assert len(many) == 12 and Counter(many[:10]) == Counter(list(range(5)) * 2)
    rep = list(RandomSampler(range(4), replacement=True, num_samples=100, generator=3))
    assert len(rep) == 100 and set(rep) <= {0, 1, 2, 3} and len(set(rep)) == 4
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        RandomSampler(range(3), replacement=1)


def test_subset_random_and_weighted_samplers():
    s = SubsetRandomSampler([10, 20, 30, 40], generator=lamina.Generator().manual_seed(0))
    out = list(s)
    assert sorted(out) == [10, 20, 30, 40] and len(s) == 4
    w = WeightedRandomSampler([0.0, 1.0, 3.0], 4000, generator=lamina.Generator().manual_seed(0))
    counts = Counter(w)
    assert counts[0] == 0 and len(w) == 4000
    assert abs(counts[2] / 4000 - 0.75) < 0.03
    nr = list(WeightedRandomSampler([1.0, 1.0, 1.0, 1.0], 4, replacement=False, generator=1))
    assert sorted(nr) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="weights should be a 1d sequence"):
        WeightedRandomSampler([[1.0, 2.0]], 2)


Point = namedtuple("Point", "x y")


def test_default_collate_structures():
    t = [lamina.tensor([1.0, 2.0]), lamina.tensor([3.0, 4.0])]
    out = default_collate(t)
    assert out.shape == (2, 2) and out.tolist() == [[1, 2], [3, 4]]
    assert default_collate([1.5, 2.5]).dtype is lamina.float64
    assert default_collate([1, 2]).dtype is lamina.int64
    assert default_collate([True, False]).dtype is lamina.bool
    assert default_collate(["a", "b"]) == ["a", "b"]
    arr = default_collate([np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)])
    assert arr.shape == (2, 2, 3) and arr.dtype is lamina.float32
    sc = default_collate([np.float32(1.0), np.float32(2.0)])
    assert sc.dtype is lamina.float32 and sc.tolist() == [1.0, 2.0]
    d = default_collate([{"x": 1, "y": [1.0, "a"]}, {"x": 2, "y": [2.0, "b"]}])
    assert d["x"].tolist() == [1, 2] and d["y"][0].tolist() == [1.0, 2.0]
    assert d["y"][1] == ["a", "b"]
    tup = default_collate([(1, lamina.tensor(1.0)), (2, lamina.tensor(2.0))])
    assert isinstance(tup, list) and tup[0].tolist() == [1, 2] and tup[1].shape == (2,)
    p = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert isinstance(p, Point) and p.x.tolist() == [1, 3] and p.y.dtype is lamina.float64
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="default_collate: batch must contain"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="found object"):
        default_collate([np.array(["a"], dtype=object)] * 2)


def test_default_convert():
    out = default_convert({"a": np.arange(3), "b": (np.ones(2, np.float32), "s")})
    assert isinstance(out["a"], lamina.Tensor) and out["a"].dtype is lamina.int64
    assert isinstance(out["b"], list) and out["b"][0].dtype is lamina.float32
    assert out["b"][1] == "s" and default_convert(3) == 3


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), max_size=3).map(tuple), n=st.integers(1, 5),
       dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.bool_]))
def test_collate_stacks_like_numpy(shape, n, dtype):
    rng = np.random.default_rng(n)
    items = [np.asarray(rng.standard_normal(shape) * 10).astype(dtype) for _ in range(n)]
    out = default_collate([lamina.tensor(a) for a in items])
    np.testing.assert_array_equal(out.numpy(), np.stack(items))
    out = default_collate(items)
    np.testing.assert_array_equal(out.numpy(), np.stack(items))
