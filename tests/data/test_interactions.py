"""Interactions: validation with clear errors, duplicate policies, views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rectune import DataError
from rectune.data import IdMap, Interactions, RowOrigin


def frame() -> pd.DataFrame:
    return pd.DataFrame({"user": [10, 10, 20, 30], "item": ["a", "b", "a", "c"],
                         "rating": [4.0, 3.0, 5.0, 1.0], "timestamp": [5, 6, 7, 8],
                         "city": ["x", "y", "x", "z"]})


def test_views_and_maps() -> None:
    x = Interactions.from_frame(frame(), context=("city",), rating_scale=(1, 5))
    assert (len(x), x.n_users, x.n_items) == (4, 3, 3)
    assert x.user_map.ids.tolist() == [10, 20, 30]
    m = x.csr()
    assert isinstance(m, sp.csr_array) and m.shape == (3, 3)
    assert m.toarray()[0].tolist() == [4.0, 3.0, 0.0]
    assert x.csc().toarray().tolist() == m.toarray().tolist()
    u, i, _ = x.coo()
    assert u.tolist() == [0, 0, 1, 2] and i.tolist() == [0, 1, 0, 2]
    t = x.to_torch()
    assert t["user"].tolist() == [0, 0, 1, 2] and t["value"].dtype.is_floating_point
    assert x.context["city"].tolist() == ["x", "y", "x", "z"]
    back = x.to_frame()
    assert back["item"].tolist() == ["a", "b", "a", "c"]
    with pytest.raises(ValueError):
        x.user[0] = 5  # arrays are read-only


def test_encoding_against_existing_maps_extends_them() -> None:
    umap, imap = IdMap([30, 10]), IdMap(["c"])
    x = Interactions.from_frame(frame(), user_map=umap, item_map=imap)
    assert x.user_map.ids.tolist() == [30, 10, 20]
    assert x.item_map.ids.tolist() == ["c", "a", "b"]


@pytest.mark.parametrize(("col", "bad", "msg"), [
    ("rating", np.nan, "not a finite number"),
    ("rating", 9.0, "outside the declared rating scale"),
    ("user", None, "field 'user' is missing"),
    ("timestamp", "yesterday", "not a number"),
])
def test_bad_values_name_the_row(col: str, bad: object, msg: str) -> None:
    df = frame().astype({col: object})
    df.loc[2, col] = bad
    with pytest.raises(DataError, match=msg) as exc:
        Interactions.from_frame(df, rating_scale=(1, 5),
                                origin=RowOrigin("ratings.csv", first_line=2))
    assert "ratings.csv line 4" in str(exc.value)


def test_missing_column_and_empty() -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) \['rating'\]"):
        Interactions.from_frame(frame().drop(columns="rating"))
    with pytest.raises(DataError, match="empty"):
        Interactions.from_frame(frame().iloc[:0])


def test_duplicate_policies_never_sum() -> None:
    df = pd.DataFrame({"user": [1, 1, 1, 2], "item": [7, 7, 8, 7],
                       "rating": [2.0, 4.0, 5.0, 3.0], "timestamp": [9, 1, 3, 4]})
    with pytest.raises(DataError, match=r"duplicate .*user=1, item=7"):
        Interactions.from_frame(df)
    last = Interactions.from_frame(df, duplicates="last")
    assert len(last) == 3
    assert last.csr().toarray()[0, 0] == 2.0  # the later rating (timestamp 9), not a sum
    mean = Interactions.from_frame(df, duplicates="mean")
    assert mean.csr().toarray()[0, 0] == 3.0
    with pytest.raises(DataError, match="policy"):
        Interactions.from_frame(df, duplicates="sum")  # type: ignore[arg-type]


def test_take_concat_binarize() -> None:
    x = Interactions.from_frame(frame())
    a, b = x.take(np.array([0, 1])), x.take(np.array([False, False, True, True]))
    both = a.concat(b)
    assert len(both) == 4 and both.user_map == x.user_map
    with pytest.raises(DataError, match="duplicate"):
        a.concat(a)
    pos = x.binarize(4)
    assert pos.kind == "implicit" and len(pos) == 2 and set(pos.value) == {1.0}
    assert x.user_counts().tolist() == [2, 1, 1]
    assert x.item_counts().tolist() == [2, 1, 1]


def test_with_maps_reencodes_when_not_an_extension() -> None:
    x = Interactions.from_frame(frame())
    other = IdMap([30, 20, 10])
    y = x.with_maps(other, x.item_map)
    assert other.decode(y.user).tolist() == x.user_map.decode(x.user).tolist()
