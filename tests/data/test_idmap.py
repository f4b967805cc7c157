"""IdMap: round trips, append-only extension, unknown ids (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rectune import DataError, UnknownIdError
from rectune.data import IdMap

int_ids = st.lists(st.integers(-(2**40), 2**40), unique=True, max_size=60)
str_ids = st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=60)


@settings(max_examples=60, deadline=None)
@given(st.one_of(int_ids, str_ids))
def test_round_trip(ids: list) -> None:  # type: ignore[type-arg]
    m = IdMap(ids)
    idx = m.encode(ids)
    assert idx.tolist() == list(range(len(ids)))
    assert m.decode(idx).tolist() == ids
    assert IdMap.from_json(m.to_json()) == m


@settings(max_examples=60, deadline=None)
@given(int_ids, st.lists(st.integers(-(2**40), 2**40), max_size=60))
def test_extend_keeps_old_indices(old: list[int], new: list[int]) -> None:
    m = IdMap(old)
    m2 = m.extend(new)
    assert m.is_prefix_of(m2)
    assert len(m) == len(old)  # the original is not modified
    if old:
        assert m2.encode(old).tolist() == list(range(len(old)))
    fresh = [x for x in dict.fromkeys(new) if x not in set(old)]
    assert m2.ids[len(old):].tolist() == fresh  # appended in first-seen order
    assert np.all(m2.encode(new) >= 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=80))
def test_from_values_sorts_numerically(values: list[int]) -> None:
    m = IdMap.from_values(values)
    assert m.ids.tolist() == sorted(set(values))


def test_unknown_ids() -> None:
    m = IdMap([3, 1, 2])
    assert m.encode([2, 9], missing="negative").tolist() == [2, -1]
    with pytest.raises(UnknownIdError, match="unknown id 9"):
        m.encode([2, 9])
    with pytest.raises(UnknownIdError):
        m.decode([5])
    assert 3 in m and 9 not in m and "a" not in m
    assert m.encode(["a"], missing="negative").tolist() == [-1]


def test_bad_ids() -> None:
    with pytest.raises(DataError, match="unique"):
        IdMap([1, 1])
    with pytest.raises(DataError, match="mix"):
        IdMap(np.array(["a", 1], dtype=object))
    with pytest.raises(DataError):
        IdMap([1.5])
    with pytest.raises(DataError, match="cannot extend"):
        IdMap([1, 2]).extend(["x"])
    with pytest.raises(DataError):
        IdMap.from_json({"kind": "float", "ids": [1.0]})
