"""The fast loading paths give exactly what the pandas paths give, or hand the file back.

Fast paths under test: ``IdMap.factorize`` (one pass instead of from_values + encode),
the duplicate-pair check (flag table, sort, compiled scan), ``read_interactions``'
pyarrow reader and ``load_movielens``' pyarrow ratings.dat reader. Each is compared
with the pandas path it replaces, on clean data and on data with every kind of
problem (the error message must be the one the pandas path gives).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rectune._errors import DataError
from rectune.data import interactions as inter_mod
from rectune.data import movielens as ml
from rectune.data import readers
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions, _has_duplicate_pair
from rectune.data.movielens import load_movielens
from rectune.data.readers import read_interactions


# ---------------------------------------------------------------------------
# IdMap.factorize
# ---------------------------------------------------------------------------
def _reference(values: Any, sort: bool = True) -> tuple[IdMap, np.ndarray]:
    m = IdMap.from_values(values, sort=sort)
    return m, m.encode(values)


def _same_encoding(values: Any, sort: bool = True) -> None:
    m, codes = IdMap.factorize(values, sort=sort)
    ref_m, ref_codes = _reference(values, sort)
    assert m == ref_m and m.ids.dtype == ref_m.ids.dtype
    assert codes.dtype == np.int64 and np.array_equal(codes, ref_codes)
    assert not m.ids.flags.writeable
    assert np.array_equal(m.encode(values), codes)  # the map's own index agrees


@pytest.mark.parametrize("values", [
    np.array([30, 10, 20, 10, 30]),                      # dense, small positive
    np.array([-5, 7, -5, 0]),                            # negative: offset table
    np.array([10**15, 3, 10**15, 7]),                    # sparse range: hashing
    np.array([2**62, -(2**62), 0]),                      # range beyond int64 arithmetic
    np.array([4.0, 1.0, 4.0]),                           # whole floats become ints
    np.array(["b", "a", "c", "a"], dtype=object),        # strings
    pd.Series(["é", "b", "a", "b"], dtype="str"),        # arrow-backed strings
    pd.Series([3, 1, 3]),
    np.array([7]),
])
@pytest.mark.parametrize("sort", [True, False])
def test_factorize_matches_from_values_and_encode(values: Any, sort: bool) -> None:
    _same_encoding(values, sort)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-300, 300) | st.integers(-(2**40), 2**40), min_size=1, max_size=80),
       st.booleans())
def test_factorize_property(ids: list[int], sort: bool) -> None:
    _same_encoding(np.array(ids, dtype=np.int64), sort)
    _same_encoding(np.array([f"u{x}" for x in ids], dtype=object), sort)


def test_factorize_in_pieces_and_empty() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 500, 2000)
    for pieces in (np.array_split(ids, 7), np.array_split(ids + 10**12, 3)):
        m, codes = IdMap._factorize_ints(pieces)
        ref_m, ref_codes = _reference(np.concatenate(pieces))
        assert m == ref_m and np.array_equal(codes, ref_codes)
    m, codes = IdMap.factorize(np.array([], dtype=np.int64))
    assert len(m) == 0 and codes.dtype == np.int64 and len(codes) == 0


@pytest.mark.parametrize(("values", "message"), [
    (np.array([1.5, 2.0]), "float ids must be whole numbers"),
    (np.array([1.0, np.nan]), "NaN or infinity"),
    (np.array([True, False]), "boolean ids"),
    (np.array(["a", 1], dtype=object), "ids mix strings with int"),
    (pd.Series(["a", None], dtype="str"), "ids mix strings with float"),
])
def test_factorize_errors_match_from_values(values: Any, message: str) -> None:
    with pytest.raises(DataError, match=message) as fast:
        IdMap.factorize(values)
    with pytest.raises(DataError) as ref:
        IdMap.from_values(values)
    assert str(fast.value) == str(ref.value)


# ---------------------------------------------------------------------------
# duplicate check
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["flags", "sort", "kernel"])
def test_duplicate_check_paths_agree(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if path == "kernel":
        pytest.importorskip("numba")
        monkeypatch.setattr(inter_mod, "_KERNEL_MIN_ROWS", 2)
    if path in ("sort", "kernel"):
        monkeypatch.setattr(inter_mod, "_FLAG_BYTES_PER_ROW", -(1 << 30))  # no flag table
    rng = np.random.default_rng(1)
    for trial in range(400):
        n_users, n_items = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        n = int(rng.integers(2, 50))
        u, i = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
        if trial % 2:  # unique pairs, in random, user-grouped or sorted order
            key = np.unique(u * n_items + i)
            key = [rng.permutation(key), key, key[np.argsort(key // n_items, kind="stable")]][
                trial % 3]
            u, i = key // n_items, key % n_items
        truth = len(np.unique(u * n_items + i)) < len(u)
        assert _has_duplicate_pair(u, i, n_items) == truth, (path, u.tolist(), i.tolist())


def test_compiled_scan_with_many_users() -> None:
    """Thousands of users: the scan's two-level bucketing (>1 user per bucket) is used."""
    pytest.importorskip("numba")
    kernel = inter_mod._scan_kernel()
    assert kernel is not None
    rng = np.random.default_rng(2)
    for n_users, n_items in ((3000, 7), (70_000, 300), (5, 1 << 20)):
        key = rng.permutation(np.unique(rng.integers(0, n_users * n_items, 20_000)))
        u, i = key // n_items, key % n_items
        assert not kernel(u, i, n_users, n_items, np.empty(len(u), dtype=np.uint32))
        j = int(rng.integers(0, len(u)))
        u2, i2 = np.append(u, u[j]), np.append(i, i[j])  # one repeated pair
        perm = rng.permutation(len(u2))
        assert kernel(u2[perm], i2[perm], n_users, n_items, np.empty(len(u2), dtype=np.uint32))


def test_duplicates_found_by_the_fast_check_keep_their_message(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inter_mod, "_FLAG_BYTES_PER_ROW", -(1 << 30))
    df = pd.DataFrame({"user": [5, 6, 5], "item": [1, 1, 1], "rating": [1.0, 2.0, 3.0],
                       "timestamp": [3, 2, 1]})
    with pytest.raises(DataError, match=r"user=5, item=1 at row 0 and row 2 \(1 duplicate"):
        Interactions.from_frame(df)
    last = Interactions.from_frame(df, duplicates="last")
    assert last.value.tolist() == [1.0, 2.0]  # the row with the latest time wins


def test_big_timestamps_stay_exact() -> None:
    ts = np.array([2**60 + 1, 2**60 + 3])
    df = pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [1.0, 2.0], "timestamp": ts})
    x = Interactions.from_frame(df)
    assert x.timestamp is not None and x.timestamp.tolist() == ts.tolist()
    assert not np.shares_memory(x.timestamp, df["timestamp"].to_numpy())


# ---------------------------------------------------------------------------
# read_interactions: pyarrow path vs pandas path
# ---------------------------------------------------------------------------
def _outcome(fn: Callable[[], Interactions]) -> Any:
    """Everything a caller can see of a load: arrays, dtypes, maps -- or the error."""
    try:
        x = fn()
    except DataError as exc:
        return ("error", type(exc).__name__, str(exc))
    ctx = {k: (v.dtype.str, v.tolist()) for k, v in x.context.items()}
    return (x.user.tolist(), x.item.tolist(), x.value.dtype.str, x.value.tolist(),
            None if x.timestamp is None else (x.timestamp.dtype.str, x.timestamp.tolist()),
            ctx, x.user_map.kind, x.user_map.ids.tolist(), x.item_map.kind,
            x.item_map.ids.tolist(), x.kind, x.rating_scale)


def _both(read: Callable[[], Interactions], monkeypatch: pytest.MonkeyPatch
          ) -> tuple[Any, Any, bool]:
    """(fast outcome, pandas-path outcome, whether the fast path kept the file)."""
    kept: list[bool] = []
    real = readers.interactions_from_arrow

    def spy(*a: Any, **k: Any) -> Interactions | None:
        out = real(*a, **k)
        kept.append(out is not None)
        return out

    with monkeypatch.context() as m:
        m.setattr(readers, "interactions_from_arrow", spy)
        fast = _outcome(read)
    with monkeypatch.context() as m:
        m.setattr(readers, "_fast_interactions", lambda *a, **k: None)
        slow = _outcome(read)
    return fast, slow, any(kept)


HEAD = "user,item,rating,timestamp\n"


@pytest.mark.parametrize(("text", "kwargs", "fast_kept"), [
    (HEAD + "3,10,4,100\n1,10,5,200\n1,20,3.5,300\n", {}, True),
    (HEAD + "u2,b,4,100\nu1,a,5,200\n", {}, True),                          # string ids
    (HEAD + "007,1,3,4\n7,2,3,5\n", {"dtype": {"user": str}}, True),        # kept as text
    (HEAD + "1,2,4,1.5\n2,2,4,2.5\n", {}, True),                            # float times
    ("1\t10\t4\t5\n2\t10\t3\t6\n", {"header": False, "sep": "\t"}, True),
    ("a,b,c,d\n1,10,4,5\n", {"names": ["user", "item", "rating", "timestamp"]}, True),
    ("uid,iid\n3,10\n1,10\n", {"user": "uid", "item": "iid", "rating": None,
                               "timestamp": None, "kind": "implicit"}, True),
    (HEAD + "1,1,3,4\n1,1,5,6\n", {}, False),                               # duplicate
    (HEAD + "1,1,3,4\n1,1,5,6\n", {"duplicates": "mean"}, True),
    (HEAD + "1,1,7,4\n", {"rating_scale": (1, 5)}, False),                  # out of range
    (HEAD + "1,1,inf,4\n", {}, False),
    (HEAD + "1,1,NaN,4\n", {}, False),                                      # missing value
    (HEAD + "1,1,None,4\n", {}, False),                                     # pandas' NA too
    (HEAD + "u1,1,3,4\n#N/A,1,3,4\n", {}, False),                           # ... as an id
    (HEAD + "u1,1,3,4\nNone,1,3,4\n", {}, False),
    (HEAD + "1,1,3,4\n2,1,3,NaN\n", {}, False),                             # NaN time
    (HEAD + "1,1,3,4\n2,1,3,-nan\n", {"timestamp": None}, True),           # unread column
    (HEAD + "1,1,3,4\n\n2,1,3,4\n", {}, False),                             # blank line
    (HEAD + "1,1,3,4\n2,1,3,4\n\n\n", {}, False),                           # trailing blanks
    (HEAD + "1,1,3,4\n2,1,3,4,9\n", {}, False),                             # extra field
    (HEAD + "1,1,3\n", {}, False),                                          # short line
    (HEAD + "1,1,3,yesterday\n", {}, False),
    (HEAD + "1,1,3,2020-01-01\n", {}, False),                               # arrow: a date
    (HEAD + "1,1,3,4\na,1,3,4\n", {}, False),                               # mixed ids
    (HEAD + " 5,1,3,4\nx,1,3,4\n", {}, False),                              # number-like
    (HEAD + "+5,1,3,4\n6,1,3,4\n", {}, False),                              # arrow: float
    (HEAD + "True,1,3,4\nFalse,1,3,4\n", {}, False),                        # booleans
    (HEAD + "1.0,1,3,4\n2.0,1,3,4\n", {}, False),                           # float ids
    (HEAD + f"{2**63},1,3,4\n", {}, False),                                 # beyond int64
    ("user,user,rating,timestamp\n1,1,3,4\n", {"item": "user"}, False),     # duplicate name
    ("user,item,rating\n1,1,3\n", {}, False),                               # missing column
    (HEAD, {}, False),                                                      # no rows
    ("", {}, False),
])
def test_arrow_path_matches_pandas_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        text: str, kwargs: dict[str, Any],
                                        fast_kept: bool) -> None:
    p = tmp_path / "r.csv"
    p.write_text(text, encoding="utf-8")
    fast, slow, kept = _both(lambda: read_interactions(p, **kwargs), monkeypatch)
    assert fast == slow
    assert kept == fast_kept


def test_context_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "r.csv"
    p.write_text(HEAD.rstrip() + ",device,n,w\n1,1,3,4,tv,2,0.5\n2,1,3,4,phone,3,1.5\n",
                 encoding="utf-8")
    fast, slow, kept = _both(lambda: read_interactions(p, context=["device", "n", "w"]),
                             monkeypatch)
    assert fast == slow and kept
    p.write_text(HEAD.rstrip() + ",w\n1,1,3,4,1.0\n2,1,3,4,2.0\n", encoding="utf-8")
    fast, slow, kept = _both(lambda: read_interactions(p, context=["w"]), monkeypatch)
    assert fast == slow and not kept  # whole floats: pandas may have read ints
    for missing in ("NA", "NaN", "N/A"):  # pandas keeps NaN in a context column
        p.write_text(HEAD.rstrip() + f",w\n1,1,3,4,x\n2,1,3,4,{missing}\n", encoding="utf-8")
        fast, slow, kept = _both(lambda: read_interactions(p, context=["w"]), monkeypatch)
        assert str(fast) == str(slow) and not kept  # (NaN != NaN: compare the text)


def test_quoted_newlines_across_parser_blocks(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [HEAD.rstrip() + ",note"]
    rows += [f'{k},{k % 7},3,{k},"line {k}\n,more"' if k % 5 == 2 else f"{k},{k % 7},3,{k},x"
             for k in range(300)]
    p = tmp_path / "r.csv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(readers, "_BLOCK", 64)  # many blocks, cut inside quoted fields
    fast, slow, kept = _both(lambda: read_interactions(p, context=["note"]), monkeypatch)
    assert fast == slow and kept
    assert fast[5]["note"][1][2] == "line 2\n,more"


def test_open_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "r.csv"
    p.write_text(HEAD + "3,10,4,100\n1,10,5,200\n", encoding="utf-8")
    with open(p, "rb") as fh:
        fast = _outcome(lambda: read_interactions(fh, sep=",", label="in.zip:r.csv"))
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(p, "r.csv")
        zf.writestr("bad.csv", HEAD + "3,10,4,100\n3,10,5,200\n")
    with zipfile.ZipFile(archive) as zf, zf.open("r.csv") as fh:
        assert _outcome(lambda: read_interactions(fh, sep=",", label="in.zip:r.csv")) == fast
    with zipfile.ZipFile(archive) as zf, zf.open("bad.csv") as fh:  # rewound for pandas
        with pytest.raises(DataError, match=r"in\.zip:bad\.csv line 2 and .*line 3"):
            read_interactions(fh, sep=",", label="in.zip:bad.csv")


# ---------------------------------------------------------------------------
# load_movielens: the ratings.dat fast path
# ---------------------------------------------------------------------------
def _movielens(folder: Path, monkeypatch: pytest.MonkeyPatch, name: str
               ) -> tuple[Any, Any, bool]:
    kept: list[bool] = []
    real = ml._fast_ratings_dat

    def spy(*args: Any) -> Interactions | None:
        out = real(*args)
        kept.append(out is not None)
        return out

    with monkeypatch.context() as m:
        m.setattr(ml, "_fast_ratings_dat", spy)
        fast = _outcome(lambda: load_movielens(name, path=folder).interactions)
    with monkeypatch.context() as m:
        m.setattr(ml, "_fast_ratings_dat", lambda *args: None)
        slow = _outcome(lambda: load_movielens(name, path=folder).interactions)
    return fast, slow, any(kept)


def _ml1m(folder: Path, ratings: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text(ratings, encoding="latin-1")
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::02460\n",
                                      encoding="latin-1")
    return folder


@pytest.mark.parametrize(("ratings", "fast_kept"), [
    ("2::10::5::978300760\n1::10::4::978302109\n1::30::3::978301968\n", True),
    ("2::10::5::978300760\r\n1::10::4::978302109\r\n", True),             # CRLF
    ("2::10::5::978300760\n1::10::4::978302109", True),                   # no final newline
    ("2::10::5::978300760\n1::10::4::978302109\n\n\n", False),            # trailing blanks
    ("1::10::4::5\n1:9:10::4::5\n", False),                               # single ':'
    ("1::10::4::5\n1::10::4::5::6\n", False),                             # extra field
    ("1::10::4::5\n2::10::4\n", False),                                   # short line
    ("1::10::4::5\n2::10::7::5\n", False),                                # out of range
    ("1::10::4::5\n2::10::4.5::5\n", False),                              # half star in 1M
    ("1::10::4::5\n1::10::3::6\n", False),                                # duplicate
    ('1::10::4::5\n"2"::10::3::6\n', False),                              # quoted number
    ("1::10::4::5\n2::10::NA::6\n", False),
    ("", False),
])
def test_ratings_dat_fast_path_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       ratings: str, fast_kept: bool) -> None:
    fast, slow, kept = _movielens(_ml1m(tmp_path / "ml-1m", ratings), monkeypatch, "ml-1m")
    assert fast == slow
    assert kept == fast_kept


def test_ratings_dat_from_zip_and_10m_layout(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    key = rng.choice(400 * 90, 5000, replace=False)
    lines = [f"{k // 90 + 1}::{k % 90 + 1}::{r / 2:g}::{t}" for k, r, t in
             zip(key, rng.integers(1, 11, 5000), rng.integers(10**9, 2 * 10**9, 5000),
                 strict=True)]
    folder = tmp_path / "ml-10M100K"
    folder.mkdir()
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    fast, slow, kept = _movielens(folder, monkeypatch, "ml-10m")
    assert fast == slow and kept and len(fast[0]) == 5000
    archive = tmp_path / "ml-10m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "ratings.dat", "ml-10M100K/ratings.dat")
    fast_zip, slow_zip, kept = _movielens(archive, monkeypatch, "ml-10m")
    assert fast_zip == slow_zip == fast and kept


# ---------------------------------------------------------------------------
# movies.dat / genre splitting: vectorised versions of the pandas string code
# ---------------------------------------------------------------------------
def _split_text_pandas(lines: list[str], names: list[str], n_left: int) -> pd.DataFrame:
    """The pandas implementation ``_split_text`` used before (the reference)."""
    s = pd.Series(lines, dtype=object).str.rstrip("\r")
    left = s.str.split("::", n=n_left, regex=False, expand=True)
    left = left.reindex(columns=range(n_left + 1))
    right = left[n_left].str.rsplit("::", n=len(names) - n_left - 1, expand=True)
    right = right.reindex(columns=range(len(names) - n_left))
    df = pd.concat([left.iloc[:, :n_left], right], axis=1, ignore_index=True)
    df.columns = list(names)
    return df


def _split_multi_pandas(col: pd.Series, sep: str) -> pd.Series:
    """The pandas implementation ``split_multi`` used before (the reference)."""
    s = col.reset_index(drop=True)
    s = s.where(s.notna(), "").astype(str)
    ex = s.str.split(sep, regex=False).explode().str.strip()
    ex = ex[ex.notna() & (ex != "")]
    out = readers.group_lists(ex.index.to_numpy(dtype=np.int64), ex.to_numpy(dtype=object),
                              len(s))
    out.index = col.index
    return out


_PIECES = st.sampled_from([":", "::", "a", "é", " ", "\r", "|", "(1995)", "x:y", "", "a::b::c"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=7).map("".join), min_size=1, max_size=6),
       st.integers(1, 3), st.integers(1, 3))
def test_split_fields_matches_pandas(lines: list[str], n_left: int, n_right: int) -> None:
    names = [f"c{k}" for k in range(n_left + 1 + n_right)]
    new = pd.DataFrame(dict(zip(names, ml._split_fields(lines, n_left, n_right), strict=True)),
                       dtype=object)
    try:
        old = _split_text_pandas(lines, names, n_left)
    except AttributeError:  # pandas' str accessor on an all-missing column: now a DataError
        return

    def outcome(df: pd.DataFrame) -> Any:
        try:
            ml._require(df, inter_mod.RowOrigin("f", 1), "'::'-separated")
        except DataError as exc:
            return str(exc)
        return df.to_numpy().tolist(), df.dtypes.tolist()

    assert outcome(new) == outcome(old)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.none() | st.lists(st.sampled_from(
    ["|", "a", "é", " ", "\t", "\x1c", "\xa0", "\u3000", "||", "x y", "\u200b", "\r"]),
    max_size=6).map("".join), min_size=1, max_size=6), st.sampled_from(["|", "||", " "]))
def test_split_multi_matches_pandas(values: list[str | None], sep: str) -> None:
    col = pd.Series(values, index=np.arange(len(values)) * 3 + 1, dtype=object)
    new, old = readers.split_multi(col, sep), _split_multi_pandas(col, sep)
    assert new.index.equals(old.index) and new.tolist() == old.tolist()


def test_trim_characters_are_pythons_whitespace() -> None:
    assert readers._PY_SPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
