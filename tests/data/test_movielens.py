"""MovieLens loaders: the real 100K set, and small synthetic files in every GroupLens layout."""

from __future__ import annotations

import dataclasses
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectune._errors import ChecksumError, DataError
from rectune.data import download as dl
from rectune.data.download import UnverifiedDownloadWarning
from rectune.data.movielens import load_movielens


# ---------------------------------------------------------------------------
# synthetic releases (GroupLens formats, made-up values)
# ---------------------------------------------------------------------------
def _write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        data = body.encode("utf-8") if isinstance(body, str) else body
        (folder / name).write_bytes(data)
    return folder


def _flags(*on: int) -> str:
    return "|".join("1" if k in on else "0" for k in range(19))


def make_100k(folder: Path, **override: str) -> Path:
    rows = ["3\t20\t5\t881250949", "1\t10\t4\t891717742", "1\t30\t3\t878887116",
            "2\t10\t1\t880606923", "3\t10\t2\t886397596"]
    files: dict[str, str | bytes] = {
        "u.data": "\n".join(rows) + "\n",
        "u.item": (f"10|Toy Story (1995)|01-Jan-1995||http://x/1|{_flags(3, 4, 5)}\n"
                   f"20|Heat (1995)|15-Dec-1995||http://x/2|{_flags(1, 6, 16)}\n"
                   f"30|unknown|||http://x/3|{_flags(0)}\n").encode("latin-1"),
        "u.user": "1|24|M|technician|85711\n2|53|F|other|02460\n3|23|M|writer|T8H1N\n",
        "u.genre": "".join(f"{g}|{k}\n" for k, g in enumerate(
            ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
             "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
             "Romance", "Sci-Fi", "Thriller", "War", "Western"])) + "\n",
        "u1.base": "\n".join(rows[:3]) + "\n",
        "u1.test": "\n".join(rows[3:]) + "\n",
    }
    files.update(override)
    return _write(folder, files)


def make_1m(folder: Path, **override: str | bytes) -> Path:
    files: dict[str, str | bytes] = {
        "ratings.dat": "3::20::5::978300760\n1::10::4::978302109\n1::30::3::978301968\n"
                       "2::10::1::978300275\n3::10::2::978824291\n",
        "movies.dat": ("10::Toy Story: Part A (1995)::Animation|Children's|Comedy\n"
                       "20::Misérables, Les (1995)::Drama\n30::Untitled::Action\n"
                       "40::Never Rated (2000)::Horror\n").encode("latin-1"),
        "users.dat": "1::F::1::10::48067\n2::M::56::16::02460\n3::M::25::15::55117\n",
    }
    files.update(override)
    return _write(folder, files)


def make_10m(folder: Path) -> Path:
    return _write(folder, {
        "ratings.dat": "5::7::3.5::1100000000\n4::7::0.5::1100000001\n5::9::5::1100000002\n",
        "movies.dat": "7::Alien (1979)::Horror|Sci-Fi\n9::Short Film::(no genres listed)\n",
        "tags.dat": "5::7::sci-fi: classic::1\n4::7::creepy::2\n5::7::creepy::3\n"
                    "5::99::orphan::4\n4::9:: space ::5\n",
    })


def make_csv(folder: Path) -> Path:
    return _write(folder, {
        "ratings.csv": "userId,movieId,rating,timestamp\n2,1,4.5,10\n1,2,3.0,20\n1,1,5.0,30\n",
        "movies.csv": 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                      '2,"Sister, Sister (1990)",(no genres listed)\n'
                      '3,Band of Brothers (2001–2001),War\n',
        "links.csv": "movieId,imdbId,tmdbId\n1,0114709,862\n2,0113497,\n3,0185906,4613\n",
        "tags.csv": 'userId,movieId,tag,timestamp\n1,1,pixar,1\n2,1,pixar,2\n'
                    '2,2,"fun, family",3\n',
    })


def _zip(folder: Path, archive: Path, top: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{top}/{p.name}")
    return archive


# ---------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_ml100k(ml100k_dir: Path) -> None:
    ds = load_movielens("ml-100k", path=ml100k_dir)
    x = ds.interactions
    assert (len(x), x.n_users, x.n_items) == (100_000, 943, 1682)
    assert x.kind == "explicit" and x.rating_scale == (1.0, 5.0)
    assert x.user_map.ids.tolist() == list(range(1, 944))  # ascending raw ids
    first = pd.read_csv(ml100k_dir / "u.data", sep="\t", header=None, nrows=3)
    assert x.user_map.decode(x.user[:3]).tolist() == first[0].tolist()  # file order
    assert x.timestamp is not None and int(x.timestamp[0]) == int(first[3][0])
    assert ds.info["n_genres"] == 19 and ds.info["genres"][0] == "unknown"
    assert ds.info["synthetic"] is False and ds.info["name"] == "ml-100k"
    it = ds.item_features
    assert it is not None and len(it) == 1682
    assert it.loc[1, "title"] == "Toy Story" and it.loc[1, "year"] == 1995
    assert it.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    assert str(it["year"].dtype) == "Int64"
    assert {"release_date", "imdb_url"} <= set(it.columns)
    uf = ds.user_features
    assert uf is not None and len(uf) == 943
    assert set(uf["gender"]) == {"M", "F"} and uf["age"].dtype.kind == "i"
    assert uf.loc[1, "occupation"] == "technician" and uf.loc[1, "zip"] == "85711"
    tests = []
    for f in ("u1", "u2", "u3", "u4", "u5"):
        tr, te = ds.folds[f]
        assert (len(tr), len(te)) == (80_000, 20_000)
        assert len(np.intersect1d(tr, te)) == 0
        tests.append(te)
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(100_000))
    assert [len(p) for p in ds.folds["ua"]] == [90_570, 9_430]
    tr, te = ds.fold("u1")
    raw = pd.read_csv(ml100k_dir / "u1.test", sep="\t", header=None)
    pairs = set(zip(raw[0], raw[1], strict=True))
    got = set(zip(te.user_map.decode(te.user), te.item_map.decode(te.item), strict=True))
    assert got == pairs


# ---------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------
def test_100k_layout(tmp_path: Path) -> None:
    ds = load_movielens("ml-100k", path=make_100k(tmp_path / "ml-100k"))
    x = ds.interactions
    assert x.user_map.ids.tolist() == [1, 2, 3] and x.item_map.ids.tolist() == [10, 20, 30]
    assert x.user_map.decode(x.user).tolist() == [3, 1, 1, 2, 3]
    assert x.value.tolist() == [5, 4, 3, 1, 2]
    it = ds.item_features
    assert it is not None
    assert it.loc[10, "genres"] == ["Animation", "Children's", "Comedy"]
    assert it.loc[30, "genres"] == ["unknown"] and pd.isna(it.loc[30, "year"])
    assert it.loc[20, "release_date"] == pd.Timestamp("1995-12-15")
    uf = ds.user_features
    assert uf is not None and uf.loc[2, "zip"] == "02460" and uf.loc[3, "zip"] == "T8H1N"
    assert sorted(ds.folds) == ["u1"]
    assert ds.folds["u1"][0].tolist() == [0, 1, 2] and ds.folds["u1"][1].tolist() == [3, 4]


def test_1m_layout(tmp_path: Path) -> None:
    ds = load_movielens("ml-1m", path=make_1m(tmp_path / "ml-1m"))
    x = ds.interactions
    assert x.rating_scale == (1.0, 5.0) and len(x) == 5
    assert x.user_map.decode(x.user).tolist() == [3, 1, 1, 2, 3]
    assert x.item_map.ids.tolist() == [10, 20, 30]
    assert x.timestamp is not None and x.timestamp.tolist()[0] == 978300760
    it = ds.item_features
    assert it is not None and it.index.tolist() == [10, 20, 30, 40]  # every movie, rated or not
    assert it.loc[10, "title"] == "Toy Story: Part A" and it.loc[10, "year"] == 1995
    assert it.loc[20, "title"] == "Misérables, Les"  # Latin-1 decoded
    assert it.loc[30, "title"] == "Untitled" and pd.isna(it.loc[30, "year"])
    assert it.loc[10, "genres"] == ["Animation", "Children's", "Comedy"]
    uf = ds.user_features
    assert uf is not None
    assert uf.loc[1].to_dict() == {"age": 1, "age_group": "Under 18", "gender": "F",
                                   "occupation": "K-12 student", "zip": "48067"}
    assert uf.loc[2, "occupation"] == "self-employed" and uf.loc[2, "zip"] == "02460"
    assert uf.loc[3, "occupation"] == "scientist" and uf.loc[3, "age_group"] == "25-34"
    assert ds.folds == {} and ds.info["layout"] == "1m"


def test_10m_layout(tmp_path: Path) -> None:
    ds = load_movielens("ml-10m", path=make_10m(tmp_path / "ml-10M100K"))
    x = ds.interactions
    assert x.rating_scale == (0.5, 5.0) and x.value.tolist() == [3.5, 0.5, 5.0]
    it = ds.item_features
    assert it is not None
    assert it.loc[7, "tags"] == ["sci-fi: classic", "creepy"]
    assert it.loc[9, "tags"] == ["space"] and it.loc[9, "genres"] == []
    assert ds.user_features is None
    assert ds.info["genres"] == ["Horror", "Sci-Fi"]


def test_csv_layout(tmp_path: Path) -> None:
    ds = load_movielens("ml-20m", path=make_csv(tmp_path / "ml-20m"))
    x = ds.interactions
    assert x.user_map.decode(x.user).tolist() == [2, 1, 1]
    assert x.value.tolist() == [4.5, 3.0, 5.0] and x.rating_scale == (0.5, 5.0)
    it = ds.item_features
    assert it is not None
    assert it.loc[2, "title"] == "Sister, Sister" and it.loc[2, "genres"] == []
    assert it.loc[3, "title"] == "Band of Brothers" and it.loc[3, "year"] == 2001
    assert it.loc[1, "imdb_id"] == "0114709" and pd.isna(it.loc[2, "tmdb_id"])
    assert it.loc[1, "tags"] == ["pixar"] and it.loc[2, "tags"] == ["fun, family"]
    assert it.loc[3, "tags"] == []


def test_zip_and_parent_folder(tmp_path: Path) -> None:
    folder = make_1m(tmp_path / "src" / "ml-1m")
    archive = _zip(folder, tmp_path / "ml-1m.zip", "ml-1m")
    ds = load_movielens("ml-1m", path=archive)
    assert len(ds.interactions) == 5 and ds.user_features is not None
    assert str(archive) in ds.info["source"]
    # a folder that holds the release one level down is accepted too
    assert len(load_movielens("ml-1m", path=tmp_path / "src").interactions) == 5


def test_rectune_data_is_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "shared"
    make_1m(base / "ml-1m")
    before = sorted((p.relative_to(base), p.stat().st_mtime_ns) for p in base.rglob("*"))
    monkeypatch.setenv("RECTUNE_DATA", str(base))
    home = tmp_path / "home"
    ds = load_movielens("ml-1m", download=False, data_home=home)
    assert len(ds.interactions) == 5
    assert sorted((p.relative_to(base), p.stat().st_mtime_ns) for p in base.rglob("*")) == before
    assert not home.exists()


def test_cache_download_and_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _zip(make_10m(tmp_path / "src"), tmp_path / "mirror.zip", "ml-10M100K")
    entry = dataclasses.replace(dl.REGISTRY["ml-10m"], url=archive.as_uri(), md5_url=None)
    monkeypatch.setattr(dl, "REGISTRY", {**dl.REGISTRY, "ml-10m": entry})
    monkeypatch.delenv("RECTUNE_DATA", raising=False)
    home = tmp_path / "home"
    with pytest.raises(DataError, match="download=True"):
        load_movielens("ml-10m", download=False, data_home=home)
    with pytest.warns(UnverifiedDownloadWarning):
        ds = load_movielens("ml-10m", data_home=home, progress=False)
    assert len(ds.interactions) == 3 and ds.info["sha256"] == dl.sha256_file(archive)
    assert (home / "ml-10m" / "ratings.dat").is_file() and (home / "ml-10m.zip").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_movielens("ml-10m", data_home=home, download=False).interactions) == 3
    cached = home / "ml-10m.zip"
    cached.write_bytes(cached.read_bytes() + b"tampered")
    with pytest.raises(ChecksumError):
        load_movielens("ml-10m", data_home=home)
    os.remove(cached)  # the extracted copy alone still serves
    assert len(load_movielens("ml-10m", data_home=home, download=False).interactions) == 3


# ---------------------------------------------------------------------------
# bad input names file and line
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(("udata", "pattern"), [
    ("1\t10\t4\t5\n2\t10\t3\n", r"u\.data line 2: expected 4 tab-separated fields.*timestamp"),
    ("1\t10\tx\t5\n", r"u\.data line 1: field 'rating' is not a finite number"),
    ("1\t10\t4\t5\n1\t20\t7\t5\n", r"u\.data line 2: .*outside the declared rating scale"),
    ("1\t10\t4\t5\n2\t10\t3\t5\t9\n", r"u\.data line 2: malformed line with 5 fields"),
    ("1\t10\t4\t5\n\n2\t10\t3\t5\n", r"u\.data line 2: expected 4"),
    ("1\t10\t4\t5\n1\t10\t3\t6\n", r"duplicate .*u\.data line 1 and .*line 2"),
    ("a1\t10\t4\t5\n", r"u\.data line 1: field 'user' is not an integer id"),
])
def test_100k_bad_lines(tmp_path: Path, udata: str, pattern: str) -> None:
    folder = _write(tmp_path / "ml-100k", {"u.data": udata})
    with pytest.raises(DataError, match=pattern):
        load_movielens("ml-100k", path=folder)


@pytest.mark.parametrize(("ratings", "pattern"), [
    ("1::10::4::5\n1:9:10::4::5\n", r"ratings\.dat line 2: .*single ':'"),
    ("1::10::4::5\n1::10::4::5::6\n", r"ratings\.dat line 2: malformed line with more than 4"),
    ("1::10::4::5\n2::10::4\n", r"ratings\.dat line 2: expected 4 '::'-separated"),
    ("1::10::4::5\n2::10::7::5\n", r"ratings\.dat line 2: .*outside"),
    ("1::10::4::5\n2::10::4.5::5\n", r"ratings\.dat line 2: rating 4.5 is not a whole"),
])
def test_1m_bad_lines(tmp_path: Path, ratings: str, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_movielens("ml-1m", path=make_1m(tmp_path / "d", **{"ratings.dat": ratings}))


def test_bad_metadata(tmp_path: Path) -> None:
    folder = make_1m(tmp_path / "a", **{"users.dat": "1::F::1::10::1\n2::M::1::21::2\n"})
    with pytest.raises(DataError, match=r"users\.dat line 2: occupation code 21"):
        load_movielens("ml-1m", path=folder)
    folder = make_1m(tmp_path / "b", **{"movies.dat": "10::A (1990)::Drama\n10::B::Drama\n"})
    with pytest.raises(DataError, match=r"movies\.dat: movie id 10 appears more than once: "
                                        r".*line 1 and .*line 2"):
        load_movielens("ml-1m", path=folder)
    folder = make_1m(tmp_path / "c", **{"movies.dat": "10::A (1990)::Drama\n20 A (1990)\n"})
    with pytest.raises(DataError, match=r"movies\.dat line 2: expected 3"):
        load_movielens("ml-1m", path=folder)


def test_bad_folds(tmp_path: Path) -> None:
    folder = make_100k(tmp_path / "a", **{"u1.test": "2\t10\t1\t880606923\n9\t10\t1\t1\n"})
    with pytest.raises(DataError, match=r"u1\.test line 2: .*does not match any line of u\.data"):
        load_movielens("ml-100k", path=folder)
    folder = make_100k(tmp_path / "b", **{"u1.test": "2\t10\t1\t880606923\n"})
    with pytest.raises(DataError, match=r"do not partition u\.data: 1 rows in neither"):
        load_movielens("ml-100k", path=folder)


def test_wrong_name_or_place(tmp_path: Path) -> None:
    folder = make_1m(tmp_path / "ml-1m")
    with pytest.raises(DataError, match="pass the matching name"):
        load_movielens("ml-100k", path=folder)
    with pytest.raises(DataError, match="unknown MovieLens release 'ml-2m'"):
        load_movielens("ml-2m")
    with pytest.raises(DataError, match="no such file or folder"):
        load_movielens("ml-1m", path=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MovieLens ratings file"):
        load_movielens("ml-1m", path=tmp_path / "empty")


def test_bad_genre_flag(tmp_path: Path) -> None:
    flags = _flags(1).replace("1", "2", 1)
    folder = make_100k(tmp_path / "a", **{"u.item": f"10|A (1990)|||u|{flags}\n"})
    with pytest.raises(DataError, match=r"u\.item line 1: genre flags must be 0 or 1"):
        load_movielens("ml-100k", path=folder)


def test_corrupt_zip_member(tmp_path: Path) -> None:
    archive = _zip(make_1m(tmp_path / "src"), tmp_path / "ml-1m.zip", "ml-1m")
    data = bytearray(archive.read_bytes())
    at = data.index(b"3::20::5")  # stored uncompressed: flip a digit of ratings.dat
    data[at] = ord("4")
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"ml-1m\.zip:ml-1m/ratings\.dat: corrupt archive member"):
        load_movielens("ml-1m", path=archive)
