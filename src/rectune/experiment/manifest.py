"""The reproducibility manifest written with every experiment's results.

Enough to rerun the experiment and to tell whether a rerun saw the same inputs:
package versions, Python and platform, seeds, the command line, the git commit
of the working tree (when there is one), checksums of the data (of the files
when they are known, and always of the encoded arrays, so a synthetic set or an
in-memory table is fingerprinted too) and wall times per step.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rectune.data.interactions import Interactions

__all__ = ["file_sha256", "git_commit", "interactions_sha256", "manifest", "package_versions"]

PACKAGES: tuple[str, ...] = (
    "rectune", "numpy", "scipy", "pandas", "pyarrow", "torch", "numba", "scikit-learn",
    "matplotlib", "optuna", "pydantic", "safetensors", "typer", "rich", "mlflow",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that can change a result (absent ones are omitted)."""
    out: dict[str, str] = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit(where: Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the work tree holding ``where``; None outside one."""
    cwd = str(where or Path.cwd())
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=cwd, capture_output=True, text=True, timeout=5,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(status.strip())} if sha else None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def interactions_sha256(x: Interactions) -> str:
    """SHA-256 of the encoded arrays and id maps: the exact table a model was fitted on."""
    h = hashlib.sha256()
    for arr in (x.user, x.item, x.value, x.timestamp):
        if arr is not None:
            a = np.ascontiguousarray(arr)
            h.update(str(a.dtype).encode())
            h.update(a.tobytes())
    for m in (x.user_map, x.item_map):
        ids = m.ids
        h.update(ids.tobytes() if ids.dtype != object else "\x1f".join(map(str, ids)).encode())
    h.update(f"{x.kind}|{x.rating_scale}".encode())
    return h.hexdigest()


def data_files_sha256(source: str | None) -> dict[str, str]:
    """Checksums of the rating files under a data folder or of a single data file."""
    if not source:
        return {}
    p = Path(source)
    if p.is_file():
        return {p.name: file_sha256(p)}
    if p.is_dir():
        names = ("u.data", "u.item", "u.user", "ratings.dat", "movies.dat", "users.dat",
                 "ratings.csv", "movies.csv")
        return {n: file_sha256(p / n) for n in names if (p / n).is_file()}
    return {}


def manifest(
    *,
    seeds: dict[str, Any],
    data: dict[str, Any],
    timings: dict[str, float],
    config_file: str | None,
    started: float,
) -> dict[str, Any]:
    """The manifest dictionary (JSON-safe)."""
    where = Path(config_file).resolve().parent if config_file else None
    return {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
        "cwd": os.getcwd(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "git": git_commit(where),
        "seeds": seeds,
        "data": data,
        "config_file": config_file,
        "config_sha256": file_sha256(Path(config_file)) if config_file
        and Path(config_file).is_file() else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": timings,
    }
