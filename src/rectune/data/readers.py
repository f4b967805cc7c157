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

Speed: :func:`read_interactions` first reads a plain UTF-8 CSV/TSV with pyarrow's
multi-threaded parser and keeps the result only when it is provably the frame the
pandas C parser would give (same columns, no missing value, integer/float columns as
pandas would type them, string columns that pandas could not have read as numbers);
anything else -- and any error found afterwards -- goes through the pandas path, so
every message stays the one described above.
"""

from __future__ import annotations

import io
import mmap
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from rectune._errors import DataError
from rectune.data.idmap import IdMap
from rectune.data.interactions import (
    DuplicatePolicy,
    Interactions,
    Kind,
    RowOrigin,
    _encode,
)

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


#: pandas' default ``na_values`` (``pandas._libs.parsers.STR_NA_VALUES``): the arrow
#: path must notice a missing value wherever pandas would, to hand such files back to it.
_PANDAS_NA = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
#: A string pandas' C parser may turn into a number or a bool (RE2 syntax, any case).
#: Deliberately broad: a string column with such a value is left to pandas, which
#: types it chunk by chunk.
_NUMBER_LIKE = r"^\s*[-+]?(\d|\.\d|inf|nan|true|false)"
_UTF8 = {"utf-8", "utf8", "utf_8"}
#: Parse blocks of 4 MiB: big enough that per-block overhead is small, small enough that
#: the 2+ parser threads share a file of a few tens of MB.
_BLOCK = 1 << 22


def _arrow_table(
    src: Source, *, sep: str, header: bool, names: Sequence[str] | None,
    wanted: Sequence[str], text_cols: Sequence[str], encoding: str,
) -> Any:
    """The wanted columns, parsed by pyarrow, if pandas' C parser would read the same; or None.

    None means "not provably the same values": not UTF-8, compressed, a parse or
    conversion error, a missing value (pandas keeps blank lines as empty rows and
    drops trailing ones), a duplicate or empty header name, a column type other
    than int64/float64/string, or a string column holding a number-like value (pandas
    would have typed it, chunk by chunk). ``text_cols`` are read as strings as-is
    (``dtype={col: str}``). The caller then reads the file with pandas.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    if encoding.lower() not in _UTF8 or len(sep) != 1 or sep in "\"\r\n":
        return None
    if names is not None and (len(set(names)) != len(names) or not names):
        return None
    if isinstance(src, str | Path):
        p = Path(src)
        if p.suffix.lower() in _COMPRESSED or not p.is_file():
            return None
        source: Any = str(p)
        quoted = _quoted_rows(p)
    else:
        source = src  # a seekable binary stream, rewound by the caller if we decline
        quoted = True
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(
                use_threads=True, block_size=_BLOCK,
                column_names=None if names is None else list(names),
                skip_rows=1 if (header and names is not None) else 0),
            # A quoted field may hold a newline: then blocks must be cut between
            # records, which costs ~20% of the parse; files without quotes skip it.
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=quoted,
                                             ignore_empty_lines=False),
            # Only "" is null here (matching 19 strings in every cell costs ~10% of the
            # parse); pandas' other missing-value strings cannot be numbers, so they
            # leave a string column, which is checked for them below.
            convert_options=pacsv.ConvertOptions(
                null_values=[""], strings_can_be_null=True,
                column_types={c: pa.string() for c in text_cols}),
            memory_pool=_parse_pool(),
        )
    except (pa.ArrowException, OSError, ValueError):
        return None
    cols = table.column_names
    if len(set(cols)) != len(cols) or "" in cols or any(c not in cols for c in wanted):
        return None
    keep = list(dict.fromkeys(wanted))
    for c in keep:
        col = table[c]
        if col.null_count:
            return None
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if pc.any(pc.is_in(col, value_set=pa.array(_PANDAS_NA))).as_py():
                return None  # a value pandas reads as missing
            if c not in text_cols and pc.any(pc.match_substring_regex(
                    col, _NUMBER_LIKE, ignore_case=True)).as_py():
                return None
        elif not (pa.types.is_int64(t) or pa.types.is_float64(t)):
            return None
    return table.select(keep)


def _parse_pool() -> Any:
    """The allocator pyarrow parses into: the C library's (malloc), not mimalloc.

    Measured on a 2-core VM: the parse of a 10M-row file took ~0.85 s with the system
    allocator and ~1.8 s (median of repeated loads; 1.7 s vs 2.2-3.4 s for a first
    load in a fresh process) with pyarrow's default mimalloc, whose freed pages go
    back to the OS and must be faulted in again. Every parsed column is copied into
    numpy arrays and freed right after, so malloc's reuse is what the reader needs.
    """
    import pyarrow as pa

    return pa.system_memory_pool()


def _quoted_rows(path: Path) -> bool:
    """Whether a ``"`` occurs after the first line (a memchr over the mapped file)."""
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            first = mm.find(b"\n")
            return first < 0 or mm.find(b'"', first) >= 0
    except (OSError, ValueError):  # empty or unmappable: let the parser decide
        return True


def interactions_from_arrow(
    table: Any, origin: RowOrigin, *, user: str, item: str, value: str | None,
    timestamp: str | None, context: Sequence[str] = (), kind: Kind = "explicit",
    rating_scale: tuple[float, float] | None = None, duplicates: DuplicatePolicy = "error",
    user_map: IdMap | None = None, item_map: IdMap | None = None,
) -> Interactions | None:
    """:meth:`Interactions.from_frame` over a clean pyarrow table, or None if it is not clean.

    The table has no missing value and only int64, float64 and string columns (what
    :func:`_arrow_table` returns). Values and times are checked here, on the arrays
    (no DataFrame is built: that would copy every column once more); any problem
    returns None, so that the caller's pandas path reports it with its usual message.
    """
    import pyarrow as pa

    # Column by column, block by block into the final arrays: concatenating the
    # parser's blocks first would touch every column's memory once more.
    n = table.num_rows
    if n == 0 or any(not (pa.types.is_int64(table[c].type) or pa.types.is_float64(table[c].type))
                     for c in (value, timestamp) if c is not None):
        return None  # e.g. a time written as a date: pandas' messages say what is wrong
    encoded = []
    for c, existing in ((user, user_map), (item, item_map)):
        col = table[c]
        if pa.types.is_int64(col.type):
            chunks = [ch.to_numpy() for ch in col.chunks]
            encoded.append(IdMap._factorize_ints(chunks) if existing is None else
                           _encode(_joined(chunks, np.int64), existing))
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            encoded.append(_encode(pd.Series(pd.arrays.ArrowStringArray(col), copy=False),
                                   existing))  # hashed in arrow memory, no str per row
        else:
            return None
    if value is None:
        vals = np.ones(n, dtype=np.float32)
    else:
        vals = np.empty(n, dtype=np.float32)
        pos = 0
        for ch in table[value].chunks:
            raw = np.asarray(ch.to_numpy(), dtype=np.float64)
            if rating_scale is not None:
                ok = bool(((raw >= rating_scale[0]) & (raw <= rating_scale[1])).all())
            else:
                ok = bool(np.isfinite(raw).all())
            if not ok:
                return None
            vals[pos:pos + len(raw)] = raw  # the same float64 -> float32 rounding as astype
            pos += len(raw)
    ts = None
    if timestamp is not None:
        chunks = [ch.to_numpy() for ch in table[timestamp].chunks]
        if pa.types.is_float64(table[timestamp].type):
            if not all(bool(np.isfinite(c).all()) for c in chunks):
                return None
        ts = _joined(chunks, np.int64)
    ctx: dict[str, np.ndarray] = {}
    for c in context:
        col = table[c]
        if pa.types.is_float64(col.type):
            arr = _joined([ch.to_numpy() for ch in col.chunks], np.float64)
            # pandas reads "+5" or " 5" as int64 where arrow says float64: whole numbers
            # are left to pandas, so that context arrays keep pandas' dtype.
            if bool((arr == np.round(arr)).all()) or not bool(np.isfinite(arr).all()):
                return None
            ctx[c] = arr
        elif pa.types.is_int64(col.type):
            ctx[c] = _joined([ch.to_numpy() for ch in col.chunks], np.int64)
        else:
            ctx[c] = np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
    (umap, u), (imap, i) = encoded
    try:
        return Interactions._assemble(
            umap, u, imap, i, vals, ts, ctx, kind=kind, rating_scale=rating_scale,
            duplicates=duplicates, origin=origin, df=None, user=user, item=item)
    except DataError:
        return None


def _joined(chunks: list[np.ndarray], dtype: type[np.generic]) -> np.ndarray:
    """One new ``dtype`` array from a column's blocks (numpy memory, writable, owned)."""
    out = np.empty(sum(len(c) for c in chunks), dtype=dtype)
    pos = 0
    for c in chunks:
        out[pos:pos + len(c)] = c
        pos += len(c)
    return out


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
    build: dict[str, Any] = dict(
        user=user, item=item, value=rating, timestamp=timestamp, context=tuple(context),
        kind=kind, rating_scale=rating_scale, duplicates=duplicates, user_map=user_map,
        item_map=item_map)
    if not isinstance(path, str | Path) and sep is not None and not _seekable(path):
        path = io.BytesIO(path.read())  # read twice if the fast path hands it back
    start = None if isinstance(path, str | Path) else path.tell()
    fast = _fast_interactions(path, sep=sep, header=header, names=names, wanted=wanted,
                              encoding=encoding, dtype=dtype, label=label, build=build)
    if fast is not None:
        return fast
    if start is not None:
        path.seek(start)  # type: ignore[union-attr]  # a stream: rewind for pandas
    df, origin = read_table(path, sep=sep, header=header, names=names, columns=wanted,
                            encoding=encoding, dtype=dtype, label=label)
    return Interactions.from_frame(df, origin=origin, **build)


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _fast_interactions(
    path: Source, *, sep: str | None, header: bool, names: Sequence[str] | None,
    wanted: Sequence[str], encoding: str, dtype: Mapping[str, Any] | None, label: str | None,
    build: dict[str, Any],
) -> Interactions | None:
    """:meth:`Interactions.from_frame` over the pyarrow-parsed frame, or None to use pandas.

    None whenever :func:`_arrow_frame` declines the file and whenever the data holds
    an error: the pandas path then finds the same error and reports it with the
    exact message (and line) it always has.
    """
    if isinstance(path, str | Path):
        p = Path(path)
        try:
            fmt = _infer_sep(p, sep)
        except DataError:
            return None
        if fmt is None:  # Parquet: already read by arrow
            return None
        label = label or str(p)
    else:
        if sep is None:
            return None
        fmt = sep
        label = label or str(getattr(path, "name", "<stream>"))
    text_cols: list[str] = []
    for col, kind in (dtype or {}).items():
        if kind not in (str, "str") or col not in wanted:
            return None  # other dtypes: pandas converts them its own way
        text_cols.append(col)
    table = _arrow_table(path, sep=fmt, header=header, names=names, wanted=wanted,
                         text_cols=text_cols, encoding=encoding)
    if table is None:
        return None
    return interactions_from_arrow(table, RowOrigin(label, first_line=2 if header else 1),
                                   **build)


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


#: The characters ``str.strip()`` removes (``str.isspace()``), for arrow's trim kernel.
_PY_SPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
             "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def split_multi(col: pd.Series, sep: str) -> pd.Series:
    """Split a column of ``sep``-joined strings into lists (stripped, empties dropped).

    Split, trimmed (exactly the characters ``str.strip()`` removes) and filtered by
    pyarrow kernels; only the final lists are Python objects.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not sep:
        raise ValueError("empty separator")  # what str.split says
    text = col.where(col.notna(), "").astype(str)
    parts = pc.split_pattern(pa.array(text.to_numpy(dtype=object), type=pa.string()), sep)
    flat = pc.utf8_trim(parts.flatten(), _PY_SPACE)
    keep = pc.not_equal(flat, "")
    rows = pc.list_parent_indices(parts).filter(keep).to_numpy()
    offsets = np.zeros(len(text) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(text)), out=offsets[1:])
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), flat.filter(keep)).to_pylist()
    return pd.Series(lists, dtype=object, index=col.index)
