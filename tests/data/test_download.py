"""Checksummed downloads against a local HTTP server serving a synthetic archive."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from rectune._errors import ChecksumError, DataError, DownloadError
from rectune.data import download as dl
from rectune.data.download import (
    REGISTRY,
    RemoteFile,
    UnverifiedDownloadWarning,
    data_home,
    extract,
    extracted_sha256,
    fetch,
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``directory``; fails the first ``fail_next`` requests with HTTP 503."""

    fail_next = 0
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        if type(self).fail_next > 0:
            type(self).fail_next -= 1
            self.send_error(503, "try later")
            return
        if self.path == "/short.zip":  # promises 1000 bytes, sends 10
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Path, type[_Handler]]]:
    """(base URL, folder it serves, handler class) of a server on 127.0.0.1:<ephemeral>."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = type("H", (_Handler,), {"fail_next": 0, "paths": []})

    def make(*args: object, **kw: object) -> _Handler:
        return handler(*args, directory=str(root), **kw)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "_BACKOFF_S", 0.0)


def _fake_archive(path: Path, top: str = "ml-fake") -> bytes:
    """A tiny zip in GroupLens' layout with synthetic ratings (not MovieLens data)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/ratings.dat", "1::10::4::100\n2::10::3::200\n2::11::5::300\n")
        zf.writestr(f"{top}/movies.dat", "10::Alpha (1999)::Drama\n11::Beta: B (2001)::Comedy\n")
        zf.writestr(f"{top}/README", "synthetic\n")
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if p.name.startswith(".") or
                  p.suffix == ".part")


def test_data_home_env_and_lazy_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cache" / "rectune"
    monkeypatch.setenv("RECTUNE_DATA_HOME", str(target))
    assert data_home() == target
    assert not target.exists()  # asking for the folder does not create it
    assert data_home(create=True) == target and target.is_dir()
    assert data_home(tmp_path / "other") == tmp_path / "other"
    monkeypatch.delenv("RECTUNE_DATA_HOME")
    assert "rectune" in str(data_home())


def test_registry_lists_grouplens_releases() -> None:
    for name in ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest", "ml-latest-small"):
        entry = REGISTRY[name]
        assert entry.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert entry.filename == f"{name}.zip"
        assert entry.sha256 is None or len(entry.sha256) == 64
    assert REGISTRY["ml-10m"].folder == "ml-10M100K"
    with pytest.raises(TypeError):
        REGISTRY["x"] = REGISTRY["ml-1m"]  # type: ignore[index]


def test_good_archive_with_known_checksum(served: tuple[str, Path, type[_Handler]],
                                          tmp_path: Path) -> None:
    url, root, handler = served
    data = _fake_archive(root / "fake.zip")
    entry = RemoteFile("fake", f"{url}/fake.zip", "fake.zip", sha256=_sha(data))
    home = tmp_path / "home"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known checksum never warns
        path = fetch(entry, data_home=home, progress=True)
    assert path == home / "fake.zip" and path.read_bytes() == data
    assert _leftovers(home) == []
    assert not (home / "checksums.json").exists()  # nothing recorded: the registry knows
    # second use: verified from the cache, no request
    n = len(handler.paths)
    assert fetch(entry, data_home=home, progress=False) == path
    assert len(handler.paths) == n


def test_corrupted_archive_raises_and_leaves_nothing(served: tuple[str, Path, type[_Handler]],
                                                      tmp_path: Path) -> None:
    url, root, _ = served
    data = _fake_archive(root / "fake.zip")
    wrong = _sha(data + b"x")
    entry = RemoteFile("fake", f"{url}/fake.zip", "fake.zip", sha256=wrong)
    home = tmp_path / "home"
    with pytest.raises(ChecksumError) as err:
        fetch(entry, data_home=home, progress=False)
    msg = str(err.value)
    assert "fake.zip" in msg and wrong in msg and _sha(data) in msg
    assert list(home.iterdir()) == []


def test_registry_checksum_applies_to_a_mirror(served: tuple[str, Path, type[_Handler]],
                                               tmp_path: Path) -> None:
    url, root, _ = served
    _fake_archive(root / "ml-100k.zip")  # not the real archive: must be refused
    with pytest.raises(ChecksumError, match=REGISTRY["ml-100k"].sha256 or "x"):
        fetch("ml-100k", data_home=tmp_path / "h", url=f"{url}/ml-100k.zip", progress=False)
    assert list((tmp_path / "h").iterdir()) == []


def test_trust_on_first_use_records_then_verifies(served: tuple[str, Path, type[_Handler]],
                                                  tmp_path: Path) -> None:
    url, root, handler = served
    data = _fake_archive(root / "ml-10m.zip", top="ml-10M100K")
    home = tmp_path / "home"
    assert REGISTRY["ml-10m"].sha256 is None
    with pytest.warns(UnverifiedDownloadWarning, match="trust on first use"):
        path = fetch("ml-10m", data_home=home, url=f"{url}/ml-10m.zip", progress=False)
    record = json.loads((home / "checksums.json").read_text())["files"]["ml-10m.zip"]
    assert record["sha256"] == _sha(data) and record["size"] == len(data)
    assert record["publisher_md5_matched"] is False  # no .md5 served
    assert "/ml-10m.zip.md5" in handler.paths
    assert dl.expected_sha256("ml-10m", data_home=home) == _sha(data)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # later uses are verified silently
        assert fetch("ml-10m", data_home=home, url=f"{url}/ml-10m.zip", progress=False) == path

    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # tamper with the cached copy
    with pytest.raises(ChecksumError, match="modified or corrupted"):
        fetch("ml-10m", data_home=home, progress=False)
    # a forced download is checked against the recorded hash and repairs the cache
    fetch("ml-10m", data_home=home, url=f"{url}/ml-10m.zip", force=True, progress=False)
    assert path.read_bytes() == data
    # the server now serves something else: the recorded hash refuses it
    _fake_archive(root / "ml-10m.zip", top="other")
    with pytest.raises(ChecksumError, match="recorded in"):
        fetch("ml-10m", data_home=home, url=f"{url}/ml-10m.zip", force=True, progress=False)
    assert path.read_bytes() == data and _leftovers(home) == []


def test_publisher_md5_is_checked_on_first_use(served: tuple[str, Path, type[_Handler]],
                                               tmp_path: Path) -> None:
    url, root, _ = served
    data = _fake_archive(root / "ml-10m.zip")
    (root / "ml-10m.zip.md5").write_text("MD5 (ml-10m.zip) = " + "0" * 32 + "\n")
    home = tmp_path / "home"
    with pytest.raises(ChecksumError, match="publisher"):
        fetch("ml-10m", data_home=home, url=f"{url}/ml-10m.zip", progress=False)
    assert list(home.iterdir()) == []
    (root / "ml-10m.zip.md5").write_text(hashlib.md5(data).hexdigest() + "  ml-10m.zip\n")
    with pytest.warns(UnverifiedDownloadWarning, match="matched the publisher's MD5"):
        fetch("ml-10m", data_home=home, url=f"{url}/ml-10m.zip", progress=False)
    record = json.loads((home / "checksums.json").read_text())["files"]["ml-10m.zip"]
    assert record["publisher_md5_matched"] is True


def test_404_is_a_download_error_with_the_url(served: tuple[str, Path, type[_Handler]],
                                              tmp_path: Path) -> None:
    url, _, handler = served
    entry = RemoteFile("gone", f"{url}/missing.zip", "missing.zip", sha256="0" * 64)
    with pytest.raises(DownloadError, match=r"missing\.zip.*HTTP 404") as err:
        fetch(entry, data_home=tmp_path / "h", progress=False)
    assert f"{url}/missing.zip" in str(err.value)
    assert not isinstance(err.value, ChecksumError)
    assert handler.paths == ["/missing.zip"]  # client errors are not retried
    assert list((tmp_path / "h").iterdir()) == []


def test_transient_errors_are_retried(served: tuple[str, Path, type[_Handler]],
                                      tmp_path: Path) -> None:
    url, root, handler = served
    data = _fake_archive(root / "fake.zip")
    entry = RemoteFile("fake", f"{url}/fake.zip", "fake.zip", sha256=_sha(data))
    handler.fail_next = 2
    path = fetch(entry, data_home=tmp_path / "h", progress=False, retries=3)
    assert path.read_bytes() == data and handler.paths.count("/fake.zip") == 3
    handler.fail_next = 5
    with pytest.raises(DownloadError, match="after 2 attempt"):
        fetch(entry, data_home=tmp_path / "h2", progress=False, retries=1)


def test_truncated_body_is_retried_then_fails(served: tuple[str, Path, type[_Handler]],
                                              tmp_path: Path) -> None:
    url, _, handler = served
    entry = RemoteFile("short", f"{url}/short.zip", "short.zip", sha256="0" * 64)
    with pytest.raises(DownloadError, match="10 of 1000 bytes"):
        fetch(entry, data_home=tmp_path / "h", progress=False, retries=2)
    assert handler.paths.count("/short.zip") == 3
    assert list((tmp_path / "h").iterdir()) == []


def test_unknown_name_and_bad_checksum_store(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown remote file 'ml-5k'"):
        fetch("ml-5k", data_home=tmp_path)
    (tmp_path / "checksums.json").write_text("{not json")
    with pytest.raises(DataError, match=r"checksums\.json is not a valid"):
        fetch("ml-10m", data_home=tmp_path, url="http://127.0.0.1:9/none.zip")


def test_file_url_mirror(tmp_path: Path) -> None:
    data = _fake_archive(tmp_path / "mirror.zip")
    entry = RemoteFile("m", (tmp_path / "mirror.zip").as_uri(), "m.zip", sha256=_sha(data))
    assert fetch(entry, data_home=tmp_path / "h", progress=False).read_bytes() == data


def test_extract_is_atomic_and_replaces(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    _fake_archive(archive, top="ml-10M100K")
    dest = tmp_path / "home" / "ml-10m"
    assert extract(archive, dest, folder="ml-10M100K", sha256="abc") == dest
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [
        "README", "movies.dat", "ratings.dat"]
    assert extracted_sha256(dest) == "abc"
    (dest / "stale.txt").write_text("old")
    extract(archive, dest, sha256="def")  # single top folder found without folder=
    assert not (dest / "stale.txt").exists() and extracted_sha256(dest) == "def"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["ml-10m"]  # no temp folders left


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_extract_refuses_escaping_paths(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/ratings.dat", "1::1::1::1\n")
        zf.writestr(zipfile.ZipInfo(member), "pwned")
    dest = tmp_path / "out" / "ds"
    with pytest.raises(DataError, match="escapes the target folder"):
        extract(archive, dest)
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_extract_refuses_symlinks_and_bad_zips(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("ds/link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        extract(archive, tmp_path / "out")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        extract(tmp_path / "bad.zip", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_remote_file_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["ml-1m"].url = "x"  # type: ignore[misc]
