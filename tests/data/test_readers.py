"""Generic CSV/TSV/Parquet readers: good files, and every bad input named by file and line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectune._errors import DataError
from rectune.data.readers import read_features, read_interactions, read_table, split_multi

CSV = "user,item,rating,timestamp,device\nu2,b,4,100,tv\nu1,a,5,200,phone\nu1,b,3,300,tv\n"


def _file(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_round_trip(tmp_path: Path) -> None:
    x = read_interactions(_file(tmp_path, "r.csv", CSV), context=["device"], rating_scale=(1, 5))
    assert x.user_map.ids.tolist() == ["u1", "u2"] and x.item_map.ids.tolist() == ["a", "b"]
    assert x.user_map.decode(x.user).tolist() == ["u2", "u1", "u1"]  # file order
    assert x.value.tolist() == [4, 5, 3] and x.timestamp is not None
    assert x.timestamp.tolist() == [100, 200, 300]
    assert x.context["device"].tolist() == ["tv", "phone", "tv"]
    assert x.rating_scale == (1, 5) and x.kind == "explicit"


def test_encode_against_existing_maps(tmp_path: Path) -> None:
    old = read_interactions(_file(tmp_path, "old.csv", CSV))
    new = read_interactions(_file(tmp_path, "new.csv", "user,item,rating,timestamp\nu3,b,2,1\n"
                                  "u1,c,4,2\n"), user_map=old.user_map, item_map=old.item_map)
    assert new.user_map.ids.tolist() == ["u1", "u2", "u3"]  # old indices kept, new appended
    assert new.item_map.ids.tolist() == ["a", "b", "c"]
    assert new.user.tolist() == [2, 0] and new.item.tolist() == [1, 2]


def test_implicit_without_rating_or_time(tmp_path: Path) -> None:
    p = _file(tmp_path, "clicks.csv", "uid,iid\n3,10\n1,10\n3,11\n")
    x = read_interactions(p, user="uid", item="iid", rating=None, timestamp=None, kind="implicit")
    assert x.kind == "implicit" and x.value.tolist() == [1, 1, 1] and x.timestamp is None
    assert x.user_map.ids.tolist() == [1, 3]  # integer ids in numeric order


def test_tsv_gzip_and_explicit_sep(tmp_path: Path) -> None:
    tsv = CSV.replace(",", "\t")
    assert len(read_interactions(_file(tmp_path, "r.tsv", tsv))) == 3
    gz = tmp_path / "r.tsv.gz"
    gz.write_bytes(gzip.compress(tsv.encode()))
    assert len(read_interactions(gz)) == 3
    assert len(read_interactions(_file(tmp_path, "r.txt", CSV.replace(",", ";")), sep=";")) == 3
    with pytest.raises(DataError, match=r"cannot tell the format of .*r\.dat.*sep="):
        read_interactions(_file(tmp_path, "r.dat", CSV))


def test_headerless_and_renamed(tmp_path: Path) -> None:
    p = _file(tmp_path, "u.tsv", "1\t10\t4\t5\n2\t10\t3\t6\n")
    x = read_interactions(p, header=False)  # columns named user, item, rating, timestamp
    assert x.value.tolist() == [4, 3] and x.timestamp is not None
    p = _file(tmp_path, "h.csv", "a,b,c,d\n1,10,4,5\n")
    x = read_interactions(p, names=["user", "item", "rating", "timestamp"])
    assert x.item_map.ids.tolist() == [10]
    with pytest.raises(DataError, match=r"u2\.tsv line 2: field 'rating' is not a finite number"):
        read_interactions(_file(tmp_path, "u2.tsv", "1\t10\t4\t5\n2\t10\t\t6\n"), header=False)


@pytest.mark.parametrize("ext", ["parquet", "pq"])
def test_parquet(tmp_path: Path, ext: str) -> None:
    df = pd.DataFrame({"user": [5, 3, 5], "item": ["x", "y", "y"], "rating": [1.0, np.nan, 2.0],
                       "timestamp": [1, 2, 3], "other": [0, 0, 0]})
    p = tmp_path / f"r.{ext}"
    df.to_parquet(p)
    with pytest.raises(DataError, match=rf"r\.{ext} line 2: field 'rating' is not a finite"):
        read_interactions(p)
    df.fillna(3.0).to_parquet(p)
    x = read_interactions(p)
    assert x.user_map.ids.tolist() == [3, 5] and x.value.tolist() == [1, 3, 2]
    assert read_interactions(p, dtype={"user": str}).user_map.ids.tolist() == ["3", "5"]
    with pytest.raises(DataError, match=r"missing column\(s\) \['when'\]; the file has .*'other'"):
        read_interactions(p, timestamp="when")
    bad = tmp_path / f"bad.{ext}"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_interactions(bad)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_malformed_line(tmp_path: Path) -> None:
    p = _file(tmp_path, "r.csv", "user,item,rating,timestamp\n1,2,3,4\n1,3,3,4\n1,4,3,4,9\n")
    with pytest.raises(DataError, match=r"r\.csv line 4: malformed line with 5 fields, expected 4"):
        read_interactions(p)


def test_missing_column_lists_available(tmp_path: Path) -> None:
    p = _file(tmp_path, "r.csv", "userId,movieId,rating\n1,2,3\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['user', 'item', 'timestamp'\]; "
                                        r"the file has \['userId', 'movieId', 'rating'\]"):
        read_interactions(p)


@pytest.mark.parametrize(("body", "pattern"), [
    ("1,2,,4\n", r"line 3: field 'rating' is not a finite number"),
    ("1,2,NaN,4\n", r"line 3: field 'rating' is not a finite number"),
    ("1,2,five,4\n", r"line 3: field 'rating' is not a finite number: 'five'"),
    ("1,2,6,4\n", r"line 3: field 'rating' = 6 is outside the declared rating scale \[1, 5\]"),
    ("1,2,0,4\n", r"line 3: .*outside"),
    (",2,3,4\n", r"line 3: field 'user' is missing"),
    ("1,2,3,yesterday\n", r"line 3: field 'timestamp' is not a number"),
    ("\n1,3,3,4\n", r"line 3: field 'user' is missing"),  # a blank line keeps its number
])
def test_bad_values_name_the_line(tmp_path: Path, body: str, pattern: str) -> None:
    p = _file(tmp_path, "r.csv", "user,item,rating,timestamp\n1,1,3,4\n" + body)
    with pytest.raises(DataError, match=r"r\.csv " + pattern):
        read_interactions(p, rating_scale=(1, 5))


def test_trailing_blank_lines_are_ignored(tmp_path: Path) -> None:
    p = _file(tmp_path, "r.csv", "user,item,rating,timestamp\n1,1,3,4\n2,1,3,4\n\n\n")
    assert len(read_interactions(p)) == 2


def test_duplicates(tmp_path: Path) -> None:
    p = _file(tmp_path, "r.csv",
              "user,item,rating,timestamp\n1,1,2,10\n2,1,5,10\n1,1,4,30\n1,1,3,20\n")
    with pytest.raises(DataError, match=r"duplicate \(user, item\) pair user=1, item=1 at "
                                        r".*r\.csv line 2 and .*r\.csv line \d"):
        read_interactions(p)
    last = read_interactions(p, duplicates="last")
    assert len(last) == 2
    assert dict(zip(last.user_map.decode(last.user).tolist(), last.value.tolist(),
                    strict=True)) == {1: 4.0, 2: 5.0}  # latest timestamp wins
    mean = read_interactions(p, duplicates="mean")
    assert sorted(mean.value.tolist()) == [3.0, 5.0]


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_interactions(_file(tmp_path, "empty.csv", ""))
    with pytest.raises(DataError, match=r"empty data set in .*head\.csv"):
        read_interactions(_file(tmp_path, "head.csv", "user,item,rating,timestamp\n"))
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_interactions(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"nope\.parquet: no such file"):
        read_interactions(tmp_path / "nope.parquet")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        read_interactions(tmp_path / "dir.csv")


def test_encoding_error_suggests_latin1(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_bytes("user,item,rating,timestamp\nJosé,1,3,4\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid utf-8.*latin-1"):
        read_interactions(p)
    x = read_interactions(p, encoding="latin-1")
    assert x.user_map.ids.tolist() == ["José"]


def test_dtype_keeps_string_ids(tmp_path: Path) -> None:
    p = _file(tmp_path, "r.csv", "user,item,rating,timestamp\n007,1,3,4\n7,1,3,5\n")
    with pytest.raises(DataError, match="duplicate"):
        read_interactions(p)  # 007 and 7 are the same integer
    x = read_interactions(p, dtype={"user": str})
    assert x.user_map.ids.tolist() == ["007", "7"]


def test_open_stream_needs_sep(tmp_path: Path) -> None:
    p = _file(tmp_path, "r.csv", CSV)
    with open(p, "rb") as fh, pytest.raises(DataError, match="sep= is required"):
        read_table(fh)
    with open(p, "rb") as fh:
        df, origin = read_table(fh, sep=",", label="inside.zip:r.csv")
    assert len(df) == 3 and origin.describe(0) == "inside.zip:r.csv line 2"


# ---------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------
def test_read_features(tmp_path: Path) -> None:
    p = _file(tmp_path, "items.csv",
              'id,title,genres,tags\n3,"C, the",Drama| Comedy,\n1,A,,x\n2,B,Horror,"y|z"\n')
    f = read_features(p, key="id", multi_valued={"genres": "|", "tags": "|"})
    assert f.index.tolist() == [3, 1, 2] and f.index.name == "id"  # file order
    assert f.loc[3, "genres"] == ["Drama", "Comedy"] and f.loc[1, "genres"] == []
    assert f.loc[2, "tags"] == ["y", "z"] and f.loc[3, "title"] == "C, the"
    g = read_features(p, key="id", columns=["title"])
    assert list(g.columns) == ["title"]


def test_read_features_bad_keys(tmp_path: Path) -> None:
    p = _file(tmp_path, "f.csv", "id,x\n1,a\n2,b\n1,c\n")
    with pytest.raises(DataError, match=r"key 'id' value 1 appears more than once: "
                                        r".*f\.csv line 2 and .*line 4"):
        read_features(p, key="id")
    p = _file(tmp_path, "g.csv", "id,x\n1,a\n,b\n")
    with pytest.raises(DataError, match=r"g\.csv line 3: key 'id' is missing"):
        read_features(p, key="id")
    with pytest.raises(DataError, match=r"missing column\(s\) \['key'\]"):
        read_features(p, key="key")
    with pytest.raises(DataError, match=r"missing column\(s\) \['tags'\]"):
        read_features(p, key="id", multi_valued={"tags": "|"})
    with pytest.raises(DataError, match="no rows"):
        read_features(_file(tmp_path, "h.csv", "id,x\n"), key="id")


def test_split_multi_keeps_index() -> None:
    s = pd.Series(["a|b", None, "", " c "], index=[10, 20, 30, 40])
    out = split_multi(s, "|")
    assert out.index.tolist() == [10, 20, 30, 40]
    assert out.tolist() == [["a", "b"], [], [], ["c"]]
