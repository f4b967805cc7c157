"""MovieLens loaders for GroupLens' 100K, 1M, 10M, 20M, 25M and "latest" releases.

Each release has its own layout (tab and pipe files for 100K, ``::`` files for
1M and 10M, CSV files from 20M on); :func:`load_movielens` reads any of them
from a folder or straight from the ``.zip`` and returns one
:class:`~rectune.data.Dataset` shape: explicit interactions in file order with
users and items numbered in ascending raw-id order (PROTOCOLS.md), item features
(title without the year, year, genres as lists, tags where the release has
them), user demographics for 100K and 1M, and the predefined u1..u5/ua/ub folds
of 100K.

``::`` files are split on single ``:``: every ``::`` becomes two fields around
an empty one, so the data sits in even columns and the odd columns must be
empty, which also catches a stray single ``:``. ratings.dat is read that way by
pyarrow's multi-threaded parser (typed columns, nothing else accepted); any
problem hands it to the pandas C parser (``sep=":"``), whose path names the
line. The regex-separator alternative (``sep="::"``) runs in pandas' Python
engine, ~25x slower. Titles and tags may contain ``:``, so movies.dat and
tags.dat are split with bounded, vectorised string splits instead.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from rectune._errors import DataError
from rectune.data import download as dl
from rectune.data.dataset import Dataset
from rectune.data.interactions import Interactions, RowOrigin
from rectune.data.readers import (
    _C_ERROR,
    _drop_trailing_blank,
    _parser_error,
    check_unique_keys,
    group_lists,
    read_features,
    read_interactions,
    read_table,
    split_multi,
)

__all__ = ["ENV_DATA", "load_movielens"]

ENV_DATA = "RECTUNE_DATA"
_LAYOUT = {"ml-100k": "100k", "ml-1m": "1m", "ml-10m": "10m", "ml-20m": "csv",
           "ml-25m": "csv", "ml-latest": "csv", "ml-latest-small": "csv"}
_SCALE = {"100k": (1.0, 5.0), "1m": (1.0, 5.0), "10m": (0.5, 5.0), "csv": (0.5, 5.0)}
_RATINGS = {"100k": "u.data", "1m": "ratings.dat", "10m": "ratings.dat", "csv": "ratings.csv"}
_GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                "Romance", "Sci-Fi", "Thriller", "War", "Western")
#: ML-1M README: occupation codes 0..20 and age-group codes.
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin",
                  "college/grad student", "customer service", "doctor/health care",
                  "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
                  "programmer", "retired", "sales/marketing", "scientist", "self-employed",
                  "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
AGE_GROUPS_1M = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49",
                 50: "50-55", 56: "56+"}
_FOLDS_100K = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
_NO_GENRES = "(no genres listed)"
_TITLE_YEAR = r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$"


# ---------------------------------------------------------------------------
# where the files are: a folder or a zip archive
# ---------------------------------------------------------------------------
class _Source:
    """The files of one GroupLens release, in a folder (or one level below) or a zip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if path.is_dir():
            self._dir = self._find_dir(path)
        elif path.is_file():
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{path} is neither a folder nor a zip archive ({exc})") from None
            prefixes = sorted(
                (n[: -len(f)] for n in self._zip.namelist() for f in set(_RATINGS.values())
                 if n == f or n.endswith("/" + f)), key=len)
            if not prefixes:
                raise DataError(f"{path}: no MovieLens ratings file "
                                f"({', '.join(sorted(set(_RATINGS.values())))}) in the archive")
            self._prefix = prefixes[0]
        else:
            raise DataError(f"{path}: no such file or folder")
        self.layout = self._detect_layout()

    @staticmethod
    def _find_dir(path: Path) -> Path:
        def holds(p: Path) -> bool:
            return any((p / f).is_file() for f in _RATINGS.values())

        if holds(path):
            return path
        subs = [p for p in sorted(path.iterdir()) if p.is_dir() and holds(p)]
        if len(subs) == 1:
            return subs[0]
        raise DataError(f"{path}: no MovieLens ratings file "
                        f"({', '.join(sorted(set(_RATINGS.values())))}) in this folder")

    def _detect_layout(self) -> str:
        if self.has("u.data"):
            return "100k"
        if self.has("ratings.csv"):
            return "csv"
        return "1m" if self.has("users.dat") else "10m"

    def has(self, name: str) -> bool:
        if self._zip is not None:
            try:
                self._zip.getinfo(self._prefix + name)
            except KeyError:
                return False
            return True
        return (self._dir / name).is_file()

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if not self.has(name):
            raise DataError(f"{self.label(name)}: file not found")
        if self._zip is not None:
            try:
                with self._zip.open(self._prefix + name) as fh:
                    yield fh
            except zipfile.BadZipFile as exc:  # CRC mismatch while reading a member
                raise DataError(f"{self.label(name)}: corrupt archive member ({exc})") from None
        else:
            with open(self._dir / name, "rb") as fh:
                yield fh

    def text(self, name: str) -> str:
        """Whole file as text: UTF-8 if it decodes, else Latin-1 (1M and 100K titles)."""
        with self.open(name) as fh:
            data = fh.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")

    def file(self, name: str) -> Path | None:
        """The file's path when the release is a folder (parsers then map it), else None."""
        if self._zip is None and self.has(name):
            return self._dir / name
        return None

    def label(self, name: str) -> str:
        if self._zip is not None:
            return f"{self.path}:{self._prefix}{name}"
        return str(self._dir / name)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


# ---------------------------------------------------------------------------
# parsing helpers
# ---------------------------------------------------------------------------
def _require(df: pd.DataFrame, origin: RowOrigin, what: str) -> None:
    """Every field present: a short line or an empty field names its line."""
    missing = df.isna().to_numpy().any(axis=1)
    if missing.any():
        r = int(np.flatnonzero(missing)[0])
        col = df.columns[df.iloc[r].isna().to_numpy()][0]
        raise DataError(f"{origin.describe(r)}: expected {df.shape[1]} {what} fields "
                        f"({', '.join(map(str, df.columns))}); field {col!r} is missing or empty")


def _int_ids(df: pd.DataFrame, cols: Sequence[str], origin: RowOrigin) -> None:
    """MovieLens ids are integers: convert in place or name the first bad line."""
    for c in cols:
        col = df[c]
        if col.dtype.kind in "iu":
            continue
        num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(num) | (num != np.round(num))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DataError(f"{origin.describe(r)}: field {c!r} is not an integer id: "
                            f"{col.iloc[r]!r}")
        df[c] = num.astype(np.int64)


def _read_colon(src: _Source, name: str, names: Sequence[str],
                str_cols: Sequence[str] = ()) -> tuple[pd.DataFrame, RowOrigin]:
    """A ``::`` file of fields without ``:`` (ratings.dat, users.dat), C parser speed."""
    label, k = src.label(name), len(names)
    origin = RowOrigin(label, first_line=1)
    dtype = {2 * names.index(c): str for c in str_cols}
    with src.open(name) as fh:
        try:
            raw = pd.read_csv(fh, sep=":", header=None, names=range(2 * k - 1), index_col=False,
                              skip_blank_lines=False, encoding="latin-1", dtype=dtype or None)
        except pd.errors.ParserError as exc:
            m = _C_ERROR.search(str(exc))
            if m is None:
                raise _parser_error(label, exc) from None
            raise DataError(f"{label} line {m.group(2)}: malformed line with more than {k} "
                            f"'::'-separated fields ({', '.join(names)})") from None
        except pd.errors.EmptyDataError:
            raise DataError(f"{label} is empty") from None
    raw = _drop_trailing_blank(raw)
    if len(raw) == 0:
        raise DataError(f"{label} is empty")
    df = raw.iloc[:, 0::2].set_axis(list(names), axis=1)
    _require(df, origin, "'::'-separated")
    stray = raw.iloc[:, 1::2].notna().to_numpy().any(axis=1)
    if stray.any():
        raise DataError(f"{origin.describe(int(np.flatnonzero(stray)[0]))}: fields must be "
                        "separated by '::' (found a single ':')")
    return df, origin


def _fast_ratings_dat(src: _Source, layout: str) -> Interactions | None:
    """ratings.dat read by pyarrow's multi-threaded parser, or None to take the pandas path.

    The file is split on single ``:`` into 7 columns; the even ones must be whole
    numbers (the rating a number) and the odd ones empty (pyarrow's ``null`` type
    accepts nothing else), with no quoting, since no field of a ratings line holds
    a ``:`` or a quote. Anything else -- a short or long line, a blank line, a stray
    ``:`` or a character that is not part of a number -- makes pyarrow raise or
    leaves a null, and any check that fails afterwards (range, duplicates, whole
    stars) returns None as well: :func:`_read_colon` and :func:`_interactions` then
    read the file again and name the line exactly as they always have.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from rectune.data.readers import _parse_pool, interactions_from_arrow

    name = "ratings.dat"
    path = src.file(name)
    if path is not None:
        source: Any = str(path)
    else:
        with src.open(name) as fh:  # a zip member: decompress once, parse from memory
            source = pa.BufferReader(fh.read())
    cols = [str(k) for k in range(2 * len(_UDATA) - 1)]
    types = {c: pa.int64() if k % 2 == 0 else pa.null() for k, c in enumerate(cols)}
    types["4"] = pa.float64()
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=cols, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(delimiter=":", quote_char=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""],
                                                 strings_can_be_null=False),
            memory_pool=_parse_pool(),
        )
    except (pa.ArrowException, OSError, ValueError):
        return None
    table = table.select(cols[0::2]).rename_columns(_UDATA)
    if any(col.null_count for col in table.columns):
        return None  # an empty field or a blank line
    inter = interactions_from_arrow(table, RowOrigin(src.label(name), first_line=1),
                                    user="user", item="item", value="rating",
                                    timestamp="timestamp", rating_scale=_SCALE[layout],
                                    duplicates="error")
    if inter is None or (layout == "1m" and bool((inter.value != np.round(inter.value)).any())):
        return None
    return inter


def _split_text(src: _Source, name: str, names: Sequence[str], n_left: int
                ) -> tuple[pd.DataFrame, RowOrigin]:
    """A ``::`` file whose free-text field may hold ``:`` (movies.dat, tags.dat).

    The first ``n_left`` fields are split from the left, the rest from the
    right, so the free-text field in between keeps any ``:`` it contains.
    """
    label = src.label(name)
    origin = RowOrigin(label, first_line=1)
    lines = src.text(name).split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{label} is empty")
    df = pd.DataFrame(dict(zip(names, _split_fields(lines, n_left, len(names) - n_left - 1),
                               strict=True)), dtype=object)
    _require(df, origin, "'::'-separated")
    return df, origin


def _split_fields(lines: list[str], n_left: int, n_right: int) -> list[np.ndarray]:
    """``line.split("::", n_left)`` then ``last.rsplit("::", n_right)``, as object columns.

    Vectorised with :mod:`numpy.strings` (``partition``/``rpartition``); a field a
    line lacks is None, like pandas' ``str.split(..., expand=True)`` pads it. The
    rsplit fields are left-aligned: ``"a::b"`` with ``n_right=2`` gives a, b, None.
    """
    sd = np.dtypes.StringDType()
    sep = np.array("::", dtype=sd)
    rest = np.strings.rstrip(np.array(lines, dtype=sd), "\r")
    has = np.ones(len(lines), dtype=bool)  # the line has the field being split off
    out: list[np.ndarray] = []
    for _ in range(n_left):
        head, found, rest = np.strings.partition(rest, sep)
        col = head.astype(object)
        col[~has] = None
        out.append(col)
        has &= found != ""
    pieces: list[np.ndarray] = []  # rsplit pieces, rightmost first
    count = np.zeros(len(lines), dtype=np.int64)  # how many of them a line has
    for _ in range(n_right):
        before, found, after = np.strings.rpartition(rest, sep)
        hit = found != ""
        pieces.append(after.astype(object))
        count += hit
        rest = np.where(hit, before, rest)
    first = rest.astype(object)
    first[~has] = None
    out.append(first)
    rows = np.arange(len(lines))
    stacked = np.array(pieces, dtype=object).reshape(n_right, len(lines))
    for t in range(1, n_right + 1):  # field t is piece count - t (from the right), if any
        col = stacked[np.clip(count - t, 0, n_right - 1), rows]
        col[(count < t) | ~has] = None
        out.append(col)
    return out


def _read_delimited(src: _Source, name: str, sep: str, names: Sequence[str],
                    dtype: dict[str, Any] | None = None) -> tuple[pd.DataFrame, RowOrigin]:
    """A headerless tab/pipe file of 100K (u.data, u.user, u1.base ...)."""
    with src.open(name) as fh:
        df, origin = read_table(fh, sep=sep, header=False, names=names, encoding="latin-1",
                                dtype=dtype, label=src.label(name))
    if len(df) == 0:
        raise DataError(f"{src.label(name)} is empty")
    return df, origin


def _interactions(df: pd.DataFrame, origin: RowOrigin, layout: str) -> Interactions:
    _int_ids(df, ["user", "item"], origin)
    inter = Interactions.from_frame(df, rating_scale=_SCALE[layout], duplicates="error",
                                    origin=origin)
    if layout in ("100k", "1m"):  # whole stars only (READMEs); rows are still in file order
        frac = np.flatnonzero(inter.value != np.round(inter.value))
        if len(frac):
            raise DataError(f"{origin.describe(int(frac[0]))}: rating {inter.value[frac[0]]:g} "
                            "is not a whole number of stars")
    return inter


def _title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; no year -> ``<NA>``."""
    t = titles.fillna("").astype(str).str.strip()
    m = t.str.extract(_TITLE_YEAR)
    title = m["title"].where(m["title"].notna(), t)
    return title, pd.to_numeric(m["year"]).astype("Int64")


def _items(ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    title, year = _title_year(titles)
    out = pd.DataFrame({"title": title.array, "year": year.array, "genres": genres.array},
                       index=pd.Index(ids.to_numpy(dtype=np.int64), name="item"))
    return out.sort_index(kind="stable")


def _genre_lists(col: pd.Series) -> pd.Series:
    return split_multi(col.where(col.str.strip() != _NO_GENRES, ""), "|")


def _tags(df: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Distinct tags of each item in ``index`` (first-seen order); tags of unknown items dropped."""
    t = df[["item", "tag"]].dropna()
    t = t.assign(tag=t["tag"].astype(str).str.strip())
    t = t[t["tag"] != ""].drop_duplicates()
    pos = index.get_indexer(pd.Index(pd.to_numeric(t["item"], errors="coerce")))
    keep = pos >= 0
    order = np.argsort(pos[keep], kind="stable")
    out = group_lists(pos[keep][order], t["tag"].to_numpy(dtype=object)[keep][order], len(index))
    out.index = index
    return out


# ---------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------
_UDATA = ["user", "item", "rating", "timestamp"]


def _load_100k(src: _Source) -> tuple[Interactions, pd.DataFrame | None, pd.DataFrame | None,
                                      dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    df, origin = _read_delimited(src, "u.data", "\t", _UDATA)
    _require(df, origin, "tab-separated")
    inter = _interactions(df, origin, "100k")
    info: dict[str, Any] = {}

    genres = list(_GENRES_100K)
    if src.has("u.genre"):
        g, g_origin = _read_delimited(src, "u.genre", "|", ["genre", "code"])
        _require(g, g_origin, "'|'-separated")
        genres = g.sort_values("code", kind="stable")["genre"].astype(str).tolist()
    item_f: pd.DataFrame | None = None
    if src.has("u.item"):
        cols = ["item", "title", "release_date", "video_release_date", "imdb_url", *genres]
        it, it_origin = _read_delimited(src, "u.item", "|", cols,
                                        dtype={"title": str, "imdb_url": str})
        _require(it[["item", *genres]], it_origin, "'|'-separated")
        _int_ids(it, ["item"], it_origin)
        check_unique_keys(it["item"], it_origin, "movie id")
        raw_flags = it[genres].to_numpy()
        odd = ~np.isin(raw_flags, (0, 1)).all(axis=1)
        if odd.any():
            raise DataError(f"{it_origin.describe(int(np.flatnonzero(odd)[0]))}: genre flags "
                            "must be 0 or 1")
        flags = raw_flags == 1
        rows, cols_ = np.nonzero(flags)
        lists = group_lists(rows, np.asarray(genres, dtype=object)[cols_], len(it))
        item_f = _items(it["item"], it["title"], lists)
        extra = pd.DataFrame({
            "release_date": pd.to_datetime(it["release_date"], format="%d-%b-%Y",
                                           errors="coerce").to_numpy(),
            "imdb_url": it["imdb_url"].array,
        }, index=pd.Index(it["item"].to_numpy(dtype=np.int64), name="item"))
        item_f = item_f.join(extra)
    user_f = None
    if src.has("u.user"):
        us, us_origin = _read_delimited(src, "u.user", "|",
                                        ["user", "age", "gender", "occupation", "zip"],
                                        dtype={"gender": str, "occupation": str, "zip": str})
        _require(us, us_origin, "'|'-separated")
        _int_ids(us, ["user", "age"], us_origin)
        check_unique_keys(us["user"], us_origin, "user id")
        user_f = us.set_index("user").sort_index(kind="stable")
    if src.has("u.occupation"):
        info["occupations"] = [x for x in src.text("u.occupation").split() if x]
    info["genres"] = genres
    folds = _folds_100k(src, df, inter)
    return inter, item_f, user_f, folds, info


def _folds_100k(src: _Source, data: pd.DataFrame, inter: Interactions
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """u1..u5, ua, ub as row positions into u.data, checked to partition it."""
    n = len(data)
    base = np.int64(max(int(data["item"].max()), 0) + 1)
    index = pd.Index(data["user"].to_numpy(np.int64) * base + data["item"].to_numpy(np.int64))
    folds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for fold in _FOLDS_100K:
        if not (src.has(f"{fold}.base") and src.has(f"{fold}.test")):
            continue
        parts = []
        for part in ("base", "test"):
            df, origin = _read_delimited(src, f"{fold}.{part}", "\t", _UDATA)
            _require(df, origin, "tab-separated")
            _int_ids(df, ["user", "item"], origin)
            u, i = df["user"].to_numpy(np.int64), df["item"].to_numpy(np.int64)
            pos = np.where(i < base, index.get_indexer(pd.Index(u * base + i)), -1)
            bad = np.flatnonzero(pos < 0)
            if len(bad) == 0:
                r = pd.to_numeric(df["rating"], errors="coerce").to_numpy(np.float64)
                bad = np.flatnonzero(r != inter.value[pos])
            if len(bad):
                b = int(bad[0])
                raise DataError(f"{origin.describe(b)}: rating (user {u[b]}, item {i[b]}) "
                                "does not match any line of u.data")
            parts.append(np.sort(pos))
        cover = np.bincount(np.concatenate(parts), minlength=n)
        if (cover != 1).any():
            raise DataError(
                f"{src.label(fold + '.base')} and {fold}.test do not partition u.data: "
                f"{int((cover == 0).sum())} rows in neither, {int((cover > 1).sum())} repeated")
        folds[fold] = (parts[0], parts[1])
    return folds


def _load_dat(src: _Source, layout: str) -> tuple[Interactions, pd.DataFrame | None,
                                                  pd.DataFrame | None, dict[str, Any]]:
    inter = _fast_ratings_dat(src, layout)
    if inter is None:  # the pandas path names the problem in ratings.dat
        df, origin = _read_colon(src, "ratings.dat", _UDATA)
        inter = _interactions(df, origin, layout)
    item_f = None
    if src.has("movies.dat"):
        mv, mv_origin = _split_text(src, "movies.dat", ["item", "title", "genres"], 1)
        _int_ids(mv, ["item"], mv_origin)
        check_unique_keys(mv["item"], mv_origin, "movie id")
        item_f = _items(mv["item"], mv["title"], _genre_lists(mv["genres"]))
        if src.has("tags.dat"):
            tg, tg_origin = _split_text(src, "tags.dat", ["user", "item", "tag", "timestamp"], 2)
            _int_ids(tg, ["item"], tg_origin)
            item_f["tags"] = _tags(tg, item_f.index)
    user_f = None
    if src.has("users.dat"):
        us, us_origin = _read_colon(src, "users.dat", ["user", "gender", "age", "occupation",
                                                       "zip"], str_cols=("gender", "zip"))
        _int_ids(us, ["user", "age", "occupation"], us_origin)
        check_unique_keys(us["user"], us_origin, "user id")
        occ = us["occupation"].to_numpy()
        bad = np.flatnonzero((occ < 0) | (occ >= len(OCCUPATIONS_1M)))
        if len(bad):
            raise DataError(f"{us_origin.describe(int(bad[0]))}: occupation code "
                            f"{occ[bad[0]]} is not one of 0..{len(OCCUPATIONS_1M) - 1}")
        user_f = pd.DataFrame({
            "age": us["age"].to_numpy(),
            "age_group": us["age"].map(AGE_GROUPS_1M).astype(object).to_numpy(),
            "gender": us["gender"].astype(object).to_numpy(),
            "occupation": np.asarray(OCCUPATIONS_1M, dtype=object)[occ],
            "zip": us["zip"].astype(object).to_numpy(),
        }, index=pd.Index(us["user"].to_numpy(), name="user")).sort_index(kind="stable")
    return inter, item_f, user_f, {}


def _load_csv(src: _Source) -> tuple[Interactions, pd.DataFrame | None, dict[str, Any]]:
    path = src.file("ratings.csv")
    if path is not None:  # a path lets the reader map the file and check it for quotes
        inter = read_interactions(path, user="userId", item="movieId", sep=",",
                                  rating_scale=_SCALE["csv"], label=src.label("ratings.csv"))
    else:
        with src.open("ratings.csv") as fh:
            inter = read_interactions(fh, user="userId", item="movieId", sep=",",
                                      rating_scale=_SCALE["csv"],
                                      label=src.label("ratings.csv"))
    item_f = None
    if src.has("movies.csv"):
        with src.open("movies.csv") as fh:
            mv = read_features(fh, key="movieId", sep=",", dtype={"title": str, "genres": str},
                               label=src.label("movies.csv")).reset_index()
        mv_origin = RowOrigin(src.label("movies.csv"), first_line=2)
        _int_ids(mv, ["movieId"], mv_origin)
        item_f = _items(mv["movieId"], mv["title"], _genre_lists(mv["genres"]))
        if src.has("links.csv"):
            with src.open("links.csv") as fh:
                ln = read_features(fh, key="movieId", sep=",",
                                   dtype={"imdbId": str, "tmdbId": "Int64"},
                                   label=src.label("links.csv"))
            ln = ln.reindex(item_f.index)
            item_f["imdb_id"] = ln["imdbId"].astype(object).where(ln["imdbId"].notna(), None)
            item_f["tmdb_id"] = ln["tmdbId"].astype("Int64")
        if src.has("tags.csv"):
            with src.open("tags.csv") as fh:
                tg, _ = read_table(fh, sep=",", columns=["movieId", "tag"], dtype={"tag": str},
                                   label=src.label("tags.csv"))
            item_f["tags"] = _tags(tg.rename(columns={"movieId": "item"}), item_f.index)
    return inter, item_f, {}


# ---------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------
def _read(path: Path, name: str, source: str, sha256: str | None) -> Dataset:
    layout = _LAYOUT[name]
    src = _Source(path)
    try:
        if src.layout != layout:
            raise DataError(
                f"{path} holds a MovieLens data set with the {src.layout!r} layout "
                f"({_RATINGS[src.layout]}{', users.dat' if src.layout == '1m' else ''}), "
                f"not the {layout!r} layout of {name!r}; pass the matching name=")
        folds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        user_f: pd.DataFrame | None = None
        if layout == "100k":
            inter, item_f, user_f, folds, extra = _load_100k(src)
        elif layout == "csv":
            inter, item_f, extra = _load_csv(src)
        else:
            inter, item_f, user_f, extra = _load_dat(src, layout)
    finally:
        src.close()
    genres = extra.pop("genres", None)
    if genres is None and item_f is not None:
        genres = sorted(item_f["genres"].explode().dropna().unique().tolist())
    info: dict[str, Any] = {
        "name": name, "source": source, "synthetic": False, "layout": layout,
        "rating_scale": list(_SCALE[layout]), "n_genres": len(genres or []),
        "genres": genres or [], "sha256": sha256, **extra,
    }
    return Dataset(name, inter, user_features=user_f, item_features=item_f, folds=folds,
                   info=info)


def load_movielens(
    name: str = "ml-100k",
    path: str | Path | None = None,
    *,
    download: bool = True,
    data_home: str | Path | None = None,
    progress: bool = True,
) -> Dataset:
    """Load a MovieLens release as a :class:`Dataset`.

    Where the files come from, first match wins:

    1. ``path``: a folder in GroupLens' layout (or holding one such folder) or the ``.zip``;
    2. ``$RECTUNE_DATA/<name>/`` (or ``<name>.zip`` there), read-only, never written to;
    3. the cache in :func:`~rectune.data.download.data_home` (the archive is
       verified against its checksum on every use and re-extracted if it changed);
    4. a download from GroupLens when ``download=True`` (see
       :func:`~rectune.data.download.fetch`), else a :class:`DataError` saying
       how to provide the data.

    Ratings keep file order; ``rating_scale`` is (1, 5) for 100K/1M and
    (0.5, 5) for the others; a duplicate (user, item) pair, a rating outside
    the scale or a malformed line raises :class:`DataError` naming the line.
    ``item_features`` (indexed by raw movie id, every movie of the movies file)
    has ``title``, ``year`` (Int64), ``genres`` (lists), plus ``release_date`` and
    ``imdb_url`` (100K), ``tags`` (10M and CSV releases), ``imdb_id``/``tmdb_id``
    (CSV releases with links.csv). ``user_features`` (100K, 1M) has ``age``,
    ``gender``, ``occupation``, ``zip`` (and ``age_group`` for 1M's age codes).
    ``folds`` holds 100K's u1..u5, ua, ub as ``(train_rows, test_rows)``.
    """
    if name not in _LAYOUT:
        raise DataError(f"unknown MovieLens release {name!r}; known: {sorted(_LAYOUT)}")
    if path is not None:
        return _read(Path(path).expanduser(), name, str(path), None)
    entry = dl.REGISTRY[name]
    env = os.environ.get(ENV_DATA)
    if env:
        base = Path(env).expanduser()
        for cand in (base / name, base / (entry.folder or name), base / entry.filename):
            if cand.exists():
                return _read(cand, name, str(cand), None)
    home = dl.data_home(data_home)
    folder, archive = home / name, home / entry.filename
    cached = (folder / _RATINGS[_LAYOUT[name]]).is_file()
    if archive.exists() or (download and not cached):
        dl.fetch(name, data_home=home, progress=progress)  # verifies the checksum
        sha = dl.expected_sha256(name, data_home=home)
        if not cached or dl.extracted_sha256(folder) != sha:
            dl.extract(archive, folder, folder=entry.folder, sha256=sha)
        return _read(folder, name, entry.url, sha)
    if cached:
        return _read(folder, name, str(folder), dl.extracted_sha256(folder))
    raise DataError(
        f"MovieLens {name!r} is not available locally and download=False: pass path= (a "
        f"folder in GroupLens' layout or {entry.filename}), put the files in "
        f"${ENV_DATA}/{name}/, or call load_movielens({name!r}, download=True) to fetch "
        f"{entry.url} into {home}")
