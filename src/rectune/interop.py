"""Import models pre-trained by peer libraries (Surprise, implicit) as rectune models.

Why: a team that already trains with Surprise or implicit can keep its
pre-trained model and use rectune to fine-tune it on new data, evaluate and
serve it, without retraining from scratch. The imported model is an ordinary
fitted rectune model -- it saves, loads and fine-tunes like a native one.

What is carried over: the learned arrays, the hyper-parameters that
fine-tuning continues with, the raw-id maps, the seen pairs (what
``recommend`` filters and SVD++'s implicit term sums over), item popularity
and, for ratings, the global mean and the rating scale. Predictions agree with
the peer's to float32 precision (rectune stores factors in float32, as its
own models do): Surprise's ``algo.predict(u, i).est`` (clipped to the rating
scale, unknown ids handled the same way) and implicit's
``user_factors @ item_factors.T``.

Supported: ``surprise.SVD`` (biased or not), ``SVDpp``, ``NMF``,
``BaselineOnly`` (Surprise >= 1.1); ``implicit`` (>= 0.7) ALS and BPR, CPU
models or GPU models through their ``to_cpu()``.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from rectune._errors import DataError, NotFittedError, RectuneError
from rectune.data.idmap import IdMap
from rectune.models.als import ALS
from rectune.models.base import Recommender
from rectune.models.baseline import Baseline
from rectune.models.bpr import BPR
from rectune.models.mf_nmf import NMF
from rectune.models.mf_svd import SVD, SVDpp

__all__ = ["from_implicit", "from_surprise"]

SURPRISE_MIN = (1, 1)
IMPLICIT_MIN = (0, 7)


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split(".")[:2]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        out.append(int(digits or 0))
    return tuple(out)


def _check_version(module: str, minimum: tuple[int, int]) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise RectuneError(f"{module} is not installed; install it to import its models "
                           "(pip install 'rectune[peers]')") from None
    version = str(getattr(mod, "__version__", "0"))
    if _version_tuple(version) < minimum:
        need = ".".join(map(str, minimum))
        raise RectuneError(f"{module} {version} is too old to import from; need >= {need}")


def _seed(value: Any) -> int | None:
    return int(value) if isinstance(value, int | np.integer) and not isinstance(value, bool) \
        else None


def _idmap(raw2inner: dict[Any, int], n: int, what: str) -> IdMap:
    """Raw ids in inner-index order, from a peer's ``raw -> inner`` dict (no per-row loop)."""
    if len(raw2inner) != n:
        raise DataError(f"the trainset's {what} id map has {len(raw2inner)} ids for {n} {what}s")
    ids = np.empty(n, dtype=object)
    ids[np.fromiter(raw2inner.values(), dtype=np.int64, count=n)] = list(raw2inner.keys())
    if n and all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in ids):
        try:
            return IdMap(ids.astype(np.int64))
        except (TypeError, ValueError):
            pass
    return IdMap(ids)


def _base_state(model: Recommender, umap: IdMap, imap: IdMap, users: np.ndarray,
                items: np.ndarray, values: np.ndarray, *, kind: Literal["explicit", "implicit"],
                rating_scale: tuple[float, float] | None, global_mean: float) -> None:
    """What ``Recommender._set_base_state`` sets during ``fit``, from the peer's data."""
    n_u, n_i = len(umap), len(imap)
    seen = sp.csr_array((np.ones(len(users), dtype=np.float32), (users, items)),
                        shape=(n_u, n_i))
    seen.sum_duplicates()
    seen.data[:] = 1.0
    seen.sort_indices()
    model.user_map_, model.item_map_ = umap, imap
    model.seen_ = seen
    model.global_mean_ = float(global_mean)
    model.item_popularity_ = np.bincount(seen.indices, minlength=n_i).astype(np.float32)
    model.rating_scale_ = rating_scale
    model.kind_ = kind
    model.meta_ = {}


# -------------------------------------------------------------------------- Surprise
def _surprise_ratings(trainset: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, rating) arrays of a Surprise trainset, user by user."""
    n_u = int(trainset.n_users)
    counts = np.fromiter((len(trainset.ur[u]) for u in range(n_u)), dtype=np.int64, count=n_u)
    flat = np.fromiter(itertools.chain.from_iterable(
        itertools.chain.from_iterable(trainset.ur[u] for u in range(n_u))), dtype=np.float64,
        count=2 * int(counts.sum()))
    pairs = flat.reshape(-1, 2)
    return np.repeat(np.arange(n_u), counts), pairs[:, 0].astype(np.int64), pairs[:, 1]


def _f32(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def from_surprise(algo: Any, trainset: Any = None) -> Recommender:
    """A fitted rectune model equal to a trained Surprise algorithm.

    ``surprise.SVD`` -> :class:`~rectune.models.SVD`, ``SVDpp`` ->
    :class:`~rectune.models.SVDpp`, ``NMF`` -> :class:`~rectune.models.NMF`,
    ``BaselineOnly`` -> :class:`~rectune.models.Baseline`. ``trainset``
    defaults to ``algo.trainset`` (the one it was fitted on); raw ids are kept
    as they are (Surprise's built-in data sets use strings). The result can be
    passed straight to :func:`rectune.finetune.finetune`.
    """
    _check_version("surprise", SURPRISE_MIN)
    import surprise

    kinds = (surprise.SVDpp, surprise.SVD, surprise.NMF, surprise.BaselineOnly)
    if not isinstance(algo, kinds):
        raise RectuneError(f"from_surprise expects a trained surprise SVD, SVDpp, NMF or "
                           f"BaselineOnly, got {type(algo).__module__}.{type(algo).__name__}")
    name = type(algo).__name__
    ts = trainset if trainset is not None else getattr(algo, "trainset", None)
    needed = ("bu", "bi") if isinstance(algo, surprise.BaselineOnly) else ("pu", "qi")
    if ts is None or any(getattr(algo, a, None) is None for a in needed):
        raise NotFittedError(f"this surprise {name} is not trained; call algo.fit(trainset)")
    if not isinstance(ts, surprise.Trainset):
        raise RectuneError(f"trainset must be a surprise.Trainset, got {type(ts).__name__}")
    n_u, n_i = int(ts.n_users), int(ts.n_items)
    table = algo.bu if isinstance(algo, surprise.BaselineOnly) else algo.pu
    if len(table) != n_u or len(algo.bi if hasattr(algo, "bi") else algo.qi) != n_i:
        raise DataError(f"the {name} was trained on another trainset ({len(table)} users) "
                        f"than the one given ({n_u} users, {n_i} items)")
    umap = _idmap(ts._raw2inner_id_users, n_u, "user")
    imap = _idmap(ts._raw2inner_id_items, n_i, "item")
    users, items, ratings = _surprise_ratings(ts)
    model = _surprise_model(algo, surprise)
    _base_state(model, umap, imap, users, items, ratings, kind="explicit",
                rating_scale=(float(ts.rating_scale[0]), float(ts.rating_scale[1])),
                global_mean=float(ts.global_mean))
    mu = np.array([float(ts.global_mean)], dtype=np.float64)
    if isinstance(model, Baseline):
        model.global_bias_ = mu
        model.user_bias_ = np.asarray(algo.bu, dtype=np.float64).copy()
        model.item_bias_ = np.asarray(algo.bi, dtype=np.float64).copy()
        model.history_ = {}
    else:
        model.user_factors_, model.item_factors_ = _f32(algo.pu), _f32(algo.qi)
        model.history_ = {}
        if getattr(algo, "biased", True):
            model.user_bias_, model.item_bias_ = _f32(algo.bu), _f32(algo.bi)
            model.global_bias_ = mu
        if isinstance(model, SVDpp):
            model.item_implicit_ = _f32(algo.yj)
        if isinstance(model, NMF):
            model.rating_offset_ = 0.0  # Surprise's NMF predicts on the raw scale
    model.meta_ = {"imported_from": {"library": "surprise", "version": surprise.__version__,
                                     "class": name}}
    return model


def _surprise_model(algo: Any, surprise: Any) -> Any:
    """An unfitted rectune model with the Surprise algorithm's hyper-parameters."""
    seed = _seed(getattr(algo, "random_state", None))
    if isinstance(algo, surprise.BaselineOnly):
        opts = dict(getattr(algo, "bsl_options", {}) or {})
        method = opts.get("method", "als")
        return Baseline(method=method, n_epochs=opts.get("n_epochs"),
                        reg_u=float(opts.get("reg_u", 15)), reg_i=float(opts.get("reg_i", 10)),
                        reg=float(opts.get("reg", 0.02)),
                        learning_rate=float(opts.get("learning_rate", 0.005)))
    common: dict[str, Any] = dict(n_factors=int(algo.n_factors), n_epochs=int(algo.n_epochs),
                                  random_state=seed, shuffle=False)
    if isinstance(algo, surprise.NMF):
        return NMF(biased=bool(algo.biased), reg_pu=float(algo.reg_pu),
                   reg_qi=float(algo.reg_qi), reg_bu=float(algo.reg_bu),
                   reg_bi=float(algo.reg_bi), lr_bu=float(algo.lr_bu), lr_bi=float(algo.lr_bi),
                   init_low=float(algo.init_low), init_high=float(algo.init_high), **common)
    terms = ["bu", "bi", "pu", "qi"] + (["yj"] if isinstance(algo, surprise.SVDpp) else [])
    rates = {f"{kind}_{t}": float(getattr(algo, f"{kind}_{t}")) for t in terms
             for kind in ("lr", "reg")}
    kw: dict[str, Any] = dict(init_mean=float(algo.init_mean),
                              init_std_dev=float(algo.init_std_dev),
                              lr_all=rates["lr_pu"], reg_all=rates["reg_pu"], **rates, **common)
    if isinstance(algo, surprise.SVDpp):
        return SVDpp(**kw)
    return SVD(biased=bool(algo.biased), **kw)


# -------------------------------------------------------------------------- implicit
def _cpu_model(model: Any) -> Any:
    mod = type(model).__module__
    if mod.startswith("implicit.gpu") and hasattr(model, "to_cpu"):
        return model.to_cpu()
    return model


def from_implicit(model: Any, user_items: Any, user_ids: Any = None,
                  item_ids: Any = None) -> Recommender:
    """A fitted rectune model equal to a trained implicit ALS or BPR model.

    ``implicit.als.AlternatingLeastSquares`` -> :class:`~rectune.models.ALS`,
    ``implicit.bpr.BayesianPersonalizedRanking`` -> :class:`~rectune.models.BPR`
    (implicit's extra bias column becomes the ``item_bias`` group). GPU models
    are converted with their ``to_cpu()``. ``user_items`` is the users x items
    matrix the model was fitted on (scipy sparse): its nonzeros become the seen
    pairs that ``recommend`` filters, as implicit's
    ``filter_already_liked_items`` does. ``user_ids`` / ``item_ids`` are the raw
    ids of the rows and columns (default ``0..n-1``).

    Confidence: implicit weighs an observed cell by ``alpha·r``, rectune's ALS
    by ``1 + alpha·r``; the imported ALS gets ``alpha = implicit_alpha − 1``,
    the same confidences on binary data (clamped at 0 with a warning when
    implicit's alpha is below 1). Scores do not depend on it; fine-tuning does.
    """
    _check_version("implicit", IMPLICIT_MIN)
    import implicit
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    cpu = _cpu_model(model)
    if not isinstance(cpu, AlternatingLeastSquares | BayesianPersonalizedRanking):
        raise RectuneError(f"from_implicit expects a trained implicit AlternatingLeastSquares "
                           f"or BayesianPersonalizedRanking, got "
                           f"{type(model).__module__}.{type(model).__name__}")
    uf, vf = getattr(cpu, "user_factors", None), getattr(cpu, "item_factors", None)
    if uf is None or vf is None:
        raise NotFittedError(f"this implicit {type(cpu).__name__} is not trained; call "
                             "model.fit(user_items)")
    uf, vf = np.asarray(uf), np.asarray(vf)
    if not sp.issparse(user_items):
        raise DataError(f"user_items must be a scipy sparse users x items matrix, got "
                        f"{type(user_items).__name__}")
    ui = sp.csr_array(user_items)
    if ui.shape != (uf.shape[0], vf.shape[0]):
        raise DataError(f"user_items has shape {ui.shape} but the model has {uf.shape[0]} "
                        f"users and {vf.shape[0]} items")
    umap = user_ids if isinstance(user_ids, IdMap) else \
        IdMap(np.arange(ui.shape[0]) if user_ids is None else user_ids)
    imap = item_ids if isinstance(item_ids, IdMap) else \
        IdMap(np.arange(ui.shape[1]) if item_ids is None else item_ids)
    if (len(umap), len(imap)) != ui.shape:
        raise DataError(f"{len(umap)} user ids and {len(imap)} item ids for a "
                        f"{ui.shape[0]} x {ui.shape[1]} user_items matrix")
    ui.eliminate_zeros()
    coo = ui.tocoo()
    dtype = "float64" if uf.dtype == np.float64 else "float32"
    seed = _seed(getattr(cpu, "random_state", None))
    out: ALS | BPR
    if isinstance(cpu, AlternatingLeastSquares):
        alpha = float(cpu.alpha) - 1.0
        if alpha < 0:
            warnings.warn(f"implicit alpha={cpu.alpha} < 1 has no rectune equivalent "
                          "(confidence 1 + alpha·r); the imported ALS uses alpha=0",
                          stacklevel=2)
            alpha = 0.0
        out = ALS(factors=int(uf.shape[1]), regularization=float(cpu.regularization),
                  alpha=alpha, iterations=int(cpu.iterations),
                  solver="cg" if getattr(cpu, "use_cg", True) else "cholesky",
                  dtype=dtype, random_state=seed)
        out.user_factors_ = np.ascontiguousarray(uf, dtype=dtype)
        out.item_factors_ = np.ascontiguousarray(vf, dtype=dtype)
        out.n_iter_ = int(cpu.iterations)
    else:
        f = int(uf.shape[1]) - 1
        out = BPR(factors=f, learning_rate=float(cpu.learning_rate),
                  regularization=float(cpu.regularization), iterations=int(cpu.iterations),
                  verify_negative_samples=bool(cpu.verify_negative_samples),
                  negative_sampling="popularity", dtype=dtype, random_state=seed)
        out.user_factors_ = np.ascontiguousarray(uf[:, :f], dtype=dtype)
        out.item_factors_ = np.ascontiguousarray(vf[:, :f], dtype=dtype)
        # implicit's user side carries a constant 1 against the item bias column
        if len(uf) and not np.all(uf[:, f] == 1):
            raise DataError("this implicit BPR model's last user column is not the constant 1 "
                            "that carries the item bias; it cannot be imported exactly")
        out.item_bias_ = np.ascontiguousarray(vf[:, f], dtype=dtype)
        out.n_iter_ = int(cpu.iterations)
        out.train_auc_ = float("nan")
    _base_state(out, umap, imap, coo.row.astype(np.int64), coo.col.astype(np.int64),
                coo.data.astype(np.float64), kind="implicit", rating_scale=None,
                global_mean=float(np.mean(coo.data)) if coo.nnz else 0.0)
    out.meta_ = {"imported_from": {"library": "implicit", "version": implicit.__version__,
                                   "class": type(cpu).__name__}}
    return out
