"""Readers for interaction and feature tables in CSV, TSV and Parquet files.

Why not just ``pandas.read_csv``: a recommender trained on a silently mangled
file is worse than no recommender. These readers keep the speed of the pandas
C parser but turn every problem into a :class:`~rectune.DataError` that names
the file and the line: a line with too many fields (the parser's own report),
a missing column (with the columns that *are* there), a NaN or out-of-range
rating, a duplicate (user, item) pair or a duplicate feature key.

Line numbers are exact because blank lines are kept as rows while parsing
(``skip_blank_lines=False``) and only trailing blank lines are dropped; the one
exception is a quoted field that spans several lines, after which numbers count
records. For Parquet files, "line N" is the N-th row (1-based).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from rectune._errors import DataError
from rectune.data.idmap import IdMap
from rectune.data.interactions import DuplicatePolicy, Interactions, Kind, RowOrigin

__all__ = ["read_features", "read_interactions", "read_table"]

_SEPS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_PARQUET = {".parquet", ".pq"}
_COMPRESSED = {".gz", ".bz2", ".xz", ".zst", ".zip"}
_C_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")

Source = str | Path | IO[bytes]


def _infer_sep(path: Path, sep: str | None) -> str | None:
    """Separator for a text table, or None for Parquet (from ``sep`` or the extension)."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    ext = suffixes[-1] if suffixes else ""
    if ext in _PARQUET:
        return None
    if sep is not None:
        return sep
    if ext in _SEPS:
        return _SEPS[ext]
    raise DataError(
        f"cannot tell the format of {path} from its extension {ext or '(none)'!r}: "
        "use .csv, .tsv, .parquet or .pq, or pass sep=',' (or '\\t', ';', ...)"
    )


def _drop_trailing_blank(df: pd.DataFrame) -> pd.DataFrame:
    """Drop the empty rows that blank lines at the end of a file produce."""
    n = len(df)
    while n and bool(df.iloc[n - 1].isna().all()):
        n -= 1
    return df if n == len(df) else df.iloc[:n]


def _parser_error(label: str, exc: Exception) -> DataError:
    msg = str(exc).strip()
    m = _C_ERROR.search(msg)
    if m:
        expected, line, saw = m.groups()
        return DataError(f"{label} line {line}: malformed line with {saw} fields, "
                         f"expected {expected}")
    return DataError(f"{label}: cannot parse: {msg}")


def _read_csv(
    src: Source, label: str, *, sep: str, header: bool, names: Sequence[str] | None,
    columns: Sequence[Any] | None, encoding: str, dtype: Mapping[str, Any] | None,
) -> pd.DataFrame:
    # No usecols=: with it the C parser silently ignores lines with extra fields.
    try:
        df = pd.read_csv(
            src, sep=sep, header=0 if header else None,
            names=None if names is None else list(names), index_col=False,
            skip_blank_lines=False, encoding=encoding, dtype=dict(dtype) if dtype else None,
        )
    except FileNotFoundError:
        raise DataError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{label} is a folder, not a file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{label} is empty (no header, no rows)") from None
    except pd.errors.ParserError as exc:
        raise _parser_error(label, exc) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{label}: not valid {encoding} text ({exc.reason} at byte "
                        f"{exc.start}); pass encoding='latin-1' if that is its encoding") from None
    except (ValueError, TypeError) as exc:  # e.g. a dtype= conversion that fails
        raise DataError(f"{label}: {exc}") from None
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(f"{label}: missing column(s) {missing}; the file has "
                            f"{list(df.columns)}")
        if len(columns) < df.shape[1]:
            df = df[list(columns)]
    return _drop_trailing_blank(df)


def _read_parquet(path: Path, label: str, columns: Sequence[Any] | None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"{label}: no such file")
    try:
        available = pq.read_schema(path).names
        if columns is not None:
            missing = [c for c in columns if c not in available]
            if missing:
                raise DataError(f"{label}: missing column(s) {missing}; the file has {available}")
        return pd.read_parquet(path, columns=None if columns is None else list(columns))
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for bad files
        raise DataError(f"{label}: not a readable Parquet file ({exc})") from None


def read_table(
    path: Source,
    *,
    sep: str | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    columns: Sequence[Any] | None = None,
    encoding: str = "utf-8",
    dtype: Mapping[str, Any] | None = None,
    label: str | None = None,
) -> tuple[pd.DataFrame, RowOrigin]:
    """Read a CSV/TSV/Parquet table and say where its rows came from.

    ``path`` may be an open binary file (then ``sep`` is required and ``label``
    names it in errors). ``columns`` restricts (and requires) the columns read.
    Returns the frame and the :class:`RowOrigin` that maps row ``i`` to its line.
    """
    if isinstance(path, str | Path):
        p = Path(path)
        label = label or str(p)
        fmt = _infer_sep(p, sep)
        if fmt is None:
            if names is not None:
                raise DataError(f"{label}: names= only applies to CSV/TSV files")
            df = _read_parquet(p, label, columns)
            if dtype:
                try:
                    df = df.astype(dict(dtype))
                except (ValueError, TypeError) as exc:
                    raise DataError(f"{label}: cannot apply dtype={dict(dtype)}: {exc}") from None
            return df, RowOrigin(label, first_line=1)
        src: Source = p
    else:
        if sep is None:
            raise DataError("sep= is required when reading from an open file")
        fmt, src = sep, path
        label = label or str(getattr(path, "name", "<stream>"))
    df = _read_csv(src, label, sep=fmt, header=header, names=names, columns=columns,
                   encoding=encoding, dtype=dtype)
    return df, RowOrigin(label, first_line=2 if header else 1)


def read_interactions(
    path: Source,
    *,
    user: str = "user",
    item: str = "item",
    rating: str | None = "rating",
    timestamp: str | None = "timestamp",
    context: Sequence[str] = (),
    sep: str | None = None,
    kind: Kind = "explicit",
    rating_scale: tuple[float, float] | None = None,
    duplicates: DuplicatePolicy = "error",
    header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    dtype: Mapping[str, Any] | None = None,
    label: str | None = None,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
) -> Interactions:
    """Read user-item events from a CSV, TSV or Parquet file.

    Parameters
    ----------
    user, item, rating, timestamp, context:
        Column names. ``rating=None`` reads implicit events (value 1);
        ``timestamp=None`` reads no time column.
    sep:
        Field separator; inferred from the extension when None
        (``.csv`` ``,``; ``.tsv``/``.tab`` tab; ``.parquet``/``.pq`` Parquet;
        ``.gz``/``.bz2``/``.xz``/``.zst`` compression is looked through).
    header, names:
        ``header=False`` means the first line is data; ``names`` then names
        every column of the file and defaults to
        ``(user, item, rating, timestamp, *context)`` in that order.
        With ``header=True``, ``names`` replaces the file's header.
    kind, rating_scale, duplicates:
        Passed to :meth:`Interactions.from_frame`: values outside
        ``rating_scale`` and duplicate (user, item) pairs (unless
        ``duplicates="last"`` or ``"mean"``) raise a :class:`DataError`
        naming the line.
    dtype:
        Column dtypes for the parser, e.g. ``{"user": str}`` to keep ids such
        as ``"007"`` as strings.
    user_map, item_map:
        Encode against existing maps (e.g. a pre-trained model's); unseen ids
        are appended, so existing indices never change.

    Users and items are numbered in ascending raw-id order; rows keep file order.
    """
    wanted = [c for c in (user, item, rating, timestamp, *context) if c is not None]
    if not header and names is None:
        names = wanted
    df, origin = read_table(path, sep=sep, header=header, names=names, columns=wanted,
                            encoding=encoding, dtype=dtype, label=label)
    return Interactions.from_frame(
        df, user=user, item=item, value=rating, timestamp=timestamp, context=tuple(context),
        kind=kind, rating_scale=rating_scale, duplicates=duplicates, origin=origin,
        user_map=user_map, item_map=item_map,
    )


def read_features(
    path: Source,
    *,
    key: str,
    multi_valued: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
    sep: str | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    dtype: Mapping[str, Any] | None = None,
    label: str | None = None,
) -> pd.DataFrame:
    """Read a user or item feature table, indexed by ``key`` (rows in file order).

    ``multi_valued`` maps a column to its separator (``{"genres": "|"}``); such
    columns become lists of stripped, non-empty strings (an empty field gives
    ``[]``). ``columns`` limits the columns read (``key`` is always read).
    A missing or duplicate key raises :class:`DataError` naming the line(s).
    """
    multi = dict(multi_valued or {})
    wanted = None if columns is None else list(dict.fromkeys([key, *columns, *multi]))
    df, origin = read_table(path, sep=sep, header=header, names=names, columns=wanted,
                            encoding=encoding, dtype=dtype, label=label)
    label = origin.source or "features"
    needed = [key, *multi]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{label}: missing column(s) {missing}; the file has {list(df.columns)}")
    if len(df) == 0:
        raise DataError(f"{label}: no rows")
    keys = df[key]
    na = keys.isna().to_numpy()
    if na.any():
        raise DataError(f"{origin.describe(int(np.flatnonzero(na)[0]))}: key {key!r} is missing")
    check_unique_keys(keys, origin, f"key {key!r} value")
    out = df.copy()
    for col, s in multi.items():
        out[col] = split_multi(df[col], s)
    return out.set_index(key)


def check_unique_keys(keys: pd.Series, origin: RowOrigin, what: str) -> None:
    """Raise :class:`DataError` naming the first repeated key and its first two lines."""
    dup = keys.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = keys.iloc[rows[0]]
        same = rows[(keys.iloc[rows] == first).to_numpy()]
        where = " and ".join(origin.describe(int(r)) for r in same[:2])
        raise DataError(f"{origin.source or 'table'}: {what} {_plain(first)!r} appears more "
                        f"than once: {where} ({int(dup.sum())} rows share a key with another)")


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def group_lists(rows: np.ndarray, values: np.ndarray, n: int) -> pd.Series:
    """Lists of ``values`` grouped by ``rows`` (ascending ints in ``0..n-1``); empty -> ``[]``.

    One ``np.split`` instead of a groupby: the list objects are the only
    per-row Python work, which a column of lists cannot avoid.
    """
    counts = np.bincount(rows, minlength=n) if len(rows) else np.zeros(n, dtype=np.int64)
    chunks = np.split(np.asarray(values, dtype=object), np.cumsum(counts)[:-1])
    return pd.Series([c.tolist() for c in chunks], dtype=object)


def split_multi(col: pd.Series, sep: str) -> pd.Series:
    """Split a column of ``sep``-joined strings into lists (stripped, empties dropped)."""
    s = col.reset_index(drop=True)
    s = s.where(s.notna(), "").astype(str)
    ex = s.str.split(sep, regex=False).explode().str.strip()
    ex = ex[ex.notna() & (ex != "")]
    out = group_lists(ex.index.to_numpy(dtype=np.int64), ex.to_numpy(dtype=object), len(s))
    out.index = col.index
    return out
