"""Save a fine-tuned model as a delta of its pre-trained base, and load it back.

Why: a fine-tune often moves a small part of a big model (new users' rows, a
few thousand touched users, frozen item tables), yet a whole save copies
every table again. A delta (peft's ``save_pretrained`` of an adapter, in
spirit) stores only what differs from the base it names by checksum
(:func:`rectune.finetune.model_checksum`):

- per array of the saved state (parameter groups, extra arrays, item
  popularity): the rows appended after the base's rows and the base rows
  whose bytes changed (``<key>@rows`` indices, ``<key>@values``,
  ``<key>@tail``); an array whose shape or dtype no longer lines up with the
  base's, or whose rows mostly changed (KNN statistics, say), is stored whole;
- the seen pairs as the pairs added to and removed from the base's (whole
  when that is not smaller);
- the id maps as the ids appended to the base's maps;
- the JSON part of the model (class, hyper-parameters, scalars, metadata).

``load_delta(path, base)`` checks the base's checksum, applies the delta and
rebuilds the model through the same code path as ``Recommender.load``, so it
predicts exactly like the whole saved model. The folder holds
``config.json`` (with ``"delta_of": <checksum>``) and ``arrays.safetensors``,
never a pickle; :meth:`Recommender.load` refuses it and points here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rectune._errors import ModelFileError, RectuneError
from rectune.data.idmap import IdMap
from rectune.finetune.engine import model_checksum
from rectune.models.base import (
    ARRAYS_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    Recommender,
    _jsonable_tree,
    _library_version,
    _resolve_class,
)

__all__ = ["delta_size", "load_delta", "save_delta"]

_SEEN = ("base/seen_indptr", "base/seen_indices")


def _index_dtype(n: int) -> type[np.signedinteger[Any]]:
    """int32 indices where they fit (half the bytes of a delta's index arrays)."""
    return np.int32 if n < 2**31 - 1 else np.int64


def _row_bytes(a: np.ndarray) -> np.ndarray:
    """Each first-axis row of ``a`` as a row of bytes (exact comparison, NaN included)."""
    flat = np.ascontiguousarray(a).reshape(a.shape[0], -1)
    return flat.view(np.uint8).reshape(a.shape[0], -1)


def _diff_array(key: str, new: np.ndarray, old: np.ndarray | None,
                out: dict[str, np.ndarray]) -> str:
    """Store ``new`` against ``old`` into ``out``; returns how ("rows" or "full")."""
    if (old is None or new.ndim == 0 or old.ndim == 0 or new.dtype != old.dtype
            or new.shape[1:] != old.shape[1:] or new.shape[0] < old.shape[0]):
        out[key] = new
        return "full"
    n = old.shape[0]
    head = new[:n]
    if head.size:
        changed = np.flatnonzero((_row_bytes(head) != _row_bytes(old)).any(axis=1))
    else:
        changed = np.zeros(0, dtype=np.int64)
    parts = {f"{key}@rows": changed.astype(_index_dtype(n)),
             f"{key}@values": np.ascontiguousarray(head[changed]),
             f"{key}@tail": np.ascontiguousarray(new[n:])}
    if sum(v.nbytes for v in parts.values()) >= new.nbytes:  # most rows moved
        out[key] = new
        return "full"
    out.update(parts)
    return "rows"


def _apply_array(key: str, how: str, old: np.ndarray | None,
                 arrays: dict[str, np.ndarray], where: Path) -> np.ndarray:
    if how == "full":
        return arrays[key]
    if old is None:
        raise ModelFileError(f"{where}: the base has no array {key!r} to apply the delta to")
    rows = arrays[f"{key}@rows"].astype(np.int64)
    full = np.concatenate([old, arrays[f"{key}@tail"]], axis=0)
    full[rows] = arrays[f"{key}@values"]
    return full


def _seen_pairs(indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int]) -> sp.csr_array:
    return sp.csr_array((np.ones(len(indices), dtype=np.int8), indices, indptr), shape=shape)


def _pad(m: sp.csr_array, shape: tuple[int, int]) -> sp.csr_array:
    indptr = np.r_[m.indptr, np.full(shape[0] - m.shape[0], m.indptr[-1])]
    return sp.csr_array((m.data, m.indices, indptr), shape=shape)


def _map_tail(new: IdMap, old: IdMap) -> dict[str, Any]:
    if old.is_prefix_of(new):
        return {"tail": IdMap(new.ids[len(old):]).to_json()}
    return {"full": new.to_json()}


def _map_apply(obj: dict[str, Any], old: IdMap) -> IdMap:
    if "full" in obj:
        return IdMap.from_json(obj["full"])
    tail = IdMap.from_json(obj["tail"])
    return old.extend(tail.ids) if len(tail) else old


def save_delta(model: Recommender, path: str | Path, base: Recommender) -> Path:
    """Write ``model`` into folder ``path`` as the difference from ``base``.

    ``model`` must be a fine-tune of ``base``: its
    ``meta_["finetune"]["base_checksum"]`` must equal ``model_checksum(base)``
    (a :class:`ModelFileError` names both otherwise).
    """
    from safetensors.numpy import save_file

    model._check_fitted()
    base._check_fitted()
    recorded = (getattr(model, "meta_", None) or {}).get("finetune", {}).get("base_checksum")
    if recorded is None:
        raise RectuneError("save_delta: this model is not the result of rectune.finetune "
                           "(no meta_['finetune']['base_checksum']); save it whole with .save()")
    checksum = model_checksum(base)
    if recorded != checksum:
        raise ModelFileError(f"save_delta: the model was fine-tuned from base {recorded}, but "
                             f"the base given has checksum {checksum}")
    full = model._state_arrays()
    old = base._state_arrays()
    arrays: dict[str, np.ndarray] = {}
    how: dict[str, str] = {}
    shape = (len(model.user_map_), len(model.item_map_))
    seen, base_seen = model.seen_, base.seen_
    if seen.has_sorted_indices and shape[0] >= base_seen.shape[0] \
            and shape[1] >= base_seen.shape[1]:
        a = _seen_pairs(seen.indptr, seen.indices, shape)
        b = _pad(_seen_pairs(base_seen.indptr, base_seen.indices, base_seen.shape), shape)
        b = sp.csr_array((b.data, b.indices, b.indptr), shape=shape)
        added = ((a - b) > 0).tocoo()
        removed = ((b - a) > 0).tocoo()
        idx = _index_dtype(max(shape))
        arrays["seen@added"] = np.stack([added.row, added.col]).astype(idx)
        arrays["seen@removed"] = np.stack([removed.row, removed.col]).astype(idx)
        how["seen"] = "pairs"
    if how.get("seen") != "pairs" or (arrays["seen@added"].nbytes + arrays["seen@removed"].nbytes
                                      >= full[_SEEN[0]].nbytes + full[_SEEN[1]].nbytes):
        arrays.pop("seen@added", None)
        arrays.pop("seen@removed", None)
        how.pop("seen", None)
        for k in _SEEN:
            arrays[k] = full[k]
            how[k] = "full"
    for key, value in full.items():
        if key in _SEEN:
            continue
        how[key] = _diff_array(key, np.asarray(value), old.get(key), arrays)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(out / ARRAYS_FILE))
    digest = hashlib.sha256((out / ARRAYS_FILE).read_bytes()).hexdigest()
    config = {
        "format": FORMAT_VERSION,
        "delta_of": checksum,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "base_class": f"{type(base).__module__}.{type(base).__qualname__}",
        "rectune_version": _library_version(),
        "params": model.get_params(),
        "state": model._state_json(),
        "user_map": _map_tail(model.user_map_, base.user_map_),
        "item_map": _map_tail(model.item_map_, base.item_map_),
        "arrays": how,
        "arrays_sha256": digest,
        "meta": _jsonable_tree(getattr(model, "meta_", {})),
    }
    tmp = out / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config))
    tmp.replace(out / CONFIG_FILE)
    return out


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelFileError(f"{folder}: no {CONFIG_FILE}; not a rectune delta folder")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{cfg_path}: not valid JSON ({exc})") from None
    if "delta_of" not in config:
        raise ModelFileError(f"{folder} holds a whole model, not a delta: load it with "
                             "Recommender.load(path)")
    if config.get("format") != FORMAT_VERSION:
        raise ModelFileError(f"{cfg_path}: format {config.get('format')!r} is not supported")
    arr_path = folder / ARRAYS_FILE
    if not arr_path.is_file():
        raise ModelFileError(f"{folder}: {ARRAYS_FILE} is missing")
    if hashlib.sha256(arr_path.read_bytes()).hexdigest() != config.get("arrays_sha256"):
        raise ModelFileError(f"{arr_path}: checksum mismatch (file changed or corrupt)")
    try:
        return config, load_file(str(arr_path))
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{arr_path}: unreadable ({exc})") from None


def load_delta(path: str | Path, base: Recommender) -> Recommender:
    """Rebuild the model saved by :func:`save_delta` from its delta and its ``base``."""
    folder = Path(path)
    config, arrays = _read(folder)
    base._check_fitted()
    checksum = model_checksum(base)
    if checksum != config["delta_of"]:
        raise ModelFileError(f"{folder} is a delta of the model with checksum "
                             f"{config['delta_of']}, but the base given has checksum {checksum} "
                             "(a different model, or one changed since)")
    cls = _resolve_class(config.get("class"), folder / CONFIG_FILE)
    old = base._state_arrays()
    umap = _map_apply(config["user_map"], base.user_map_)
    imap = _map_apply(config["item_map"], base.item_map_)
    how: dict[str, str] = config["arrays"]
    state: dict[str, np.ndarray] = {}
    for key, kind in how.items():
        if key == "seen":
            shape = (len(umap), len(imap))
            b = _pad(_seen_pairs(base.seen_.indptr, base.seen_.indices, base.seen_.shape),
                     shape)
            b = sp.csr_array((b.data, b.indices, b.indptr), shape=shape)
            add = arrays["seen@added"].astype(np.int64)
            rem = arrays["seen@removed"].astype(np.int64)
            a = b + sp.csr_array((np.ones(add.shape[1], dtype=np.int8), (add[0], add[1])),
                                 shape=shape)
            a = a - sp.csr_array((np.ones(rem.shape[1], dtype=np.int8), (rem[0], rem[1])),
                                 shape=shape)
            a = sp.csr_array(a > 0)
            a.sort_indices()
            state["base/seen_indptr"] = a.indptr.astype(np.int64)
            state["base/seen_indices"] = a.indices.astype(np.int64)
        else:
            state[key] = _apply_array(key, kind, old.get(key), arrays, folder)
    whole = {"state": config["state"], "user_map": umap.to_json(), "item_map": imap.to_json(),
             "meta": config.get("meta")}
    model = cls(**config["params"])
    model._restore(whole, state)
    return model


def delta_size(path: str | Path) -> int:
    """Bytes on disk of a saved folder (delta or whole model), to compare the two."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
