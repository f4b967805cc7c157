"""Neighbourhood models: contract, hand-computed similarities, exact updates, memory bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rectune import DataError
from rectune.data import Interactions
from rectune.models._knn_stats import (
    Baselines,
    EventBatch,
    SufficientStats,
    als_biases,
    blockwise_similarity,
)
from rectune.models.base import Recommender
from rectune.models.knn import ImplicitItemKNN, ItemKNN, UserKNN
from tests.models.contract import ContractTests, small_ratings

# ------------------------------------------------------------------ contract
COMBOS = [("cosine", "plain"), ("pearson", "mean"), ("msd", "zscore"),
          ("pearson_baseline", "baseline"), ("jaccard", "mean")]


def _contract(cls: Any, sim: str, rule: str, **extra: object) -> type:
    def make_model(self: ContractTests) -> Recommender:
        return cls(k=5, similarity=sim, rule=rule, **extra)

    return type(f"Test{cls.__name__}_{sim}_{rule}", (ContractTests,),
                {"make_model": make_model})


for _cls in (UserKNN, ItemKNN):
    for _sim, _rule in COMBOS:
        _t = _contract(_cls, _sim, _rule)
        globals()[_t.__name__] = _t
TestItemKNNBlockwise = _contract(ItemKNN, "pearson", "mean", keep_statistics=False,
                                 max_neighbors=6)


def implicit_data() -> Interactions:
    return small_ratings().binarize(3.0)


class TestImplicitItemKNNContract(ContractTests):
    def make_model(self) -> ImplicitItemKNN:
        return ImplicitItemKNN(k=5)

    def make_data(self) -> Interactions:
        return implicit_data()


class TestImplicitItemKNNBM25Contract(TestImplicitItemKNNContract):
    def make_model(self) -> ImplicitItemKNN:
        return ImplicitItemKNN(k=5, weighting="bm25", similarity="dot")


# ------------------------------------------------------- hand-computed values
# users x items; 0 = not rated
TOY = np.array([[5, 3, 0, 1],
                [4, 0, 0, 1],
                [1, 1, 0, 5],
                [0, 1, 5, 4]], dtype=float)


def toy_interactions() -> Interactions:
    u, i = np.nonzero(TOY)
    df = pd.DataFrame({"user": u, "item": i, "rating": TOY[u, i]})
    return Interactions.from_frame(df, timestamp=None, rating_scale=(1, 5))


def toy_stats(moments: tuple[str, ...] = ("dot", "sq", "lin"),
              baselines: Baselines | None = None) -> SufficientStats:
    # item-based orientation: raters = users (rows), entities = items (columns)
    return SufficientStats.from_ratings(sp.csr_array(TOY), moments=moments, baselines=baselines)


def test_cosine_on_common_raters_by_hand() -> None:
    s = toy_stats().similarity("cosine").toarray()
    # items 0 and 3, common users 0,1,2: (5,4,1).(1,1,5) = 5+4+5 = 14;
    # |(5,4,1)|^2 = 42, |(1,1,5)|^2 = 27  ->  14 / sqrt(42 * 27)
    assert s[0, 3] == pytest.approx(14 / np.sqrt(42 * 27), abs=1e-12)
    # items 0 and 1, common users 0,2: (5,1).(3,1) = 16; 26 and 10 -> 16/sqrt(260)
    assert s[0, 1] == pytest.approx(16 / np.sqrt(260), abs=1e-12)
    # items 0 and 2 share no rater: no entry at all
    assert s[0, 2] == 0 and np.all(np.diag(s) == 1)
    np.testing.assert_allclose(s, s.T)


def test_jaccard_msd_pearson_by_hand() -> None:
    st = toy_stats()
    jac = st.similarity("jaccard").toarray()
    # raters(i0) = {0,1,2}, raters(i3) = {0,1,2,3}: 3 / (3 + 4 - 3)
    assert jac[0, 3] == pytest.approx(0.75)
    # raters(i1) = {0,2,3}, raters(i2) = {3}: 1 / (3 + 1 - 1)
    assert jac[1, 2] == pytest.approx(1 / 3)
    msd = st.similarity("msd").toarray()
    # i0 vs i3 differences (4, 3, -4): mean square 41/3 -> 1 / (41/3 + 1)
    assert msd[0, 3] == pytest.approx(1 / (41 / 3 + 1))
    pear = st.similarity("pearson").toarray()
    # i0 (5,4,1) mean 10/3, i3 (1,1,5) mean 7/3 over common users 0,1,2:
    # centred (5,2,-7)/3 and (-4,-4,8)/3: sum prod -84/9, squares 78/9 and 96/9
    assert pear[0, 3] == pytest.approx(-84 / np.sqrt(78 * 96), abs=1e-12)
    # i1 vs i2 share one user: pearson of one point is 0 (Surprise), so no entry
    assert pear[1, 2] == 0
    # min_support=4 removes every off-diagonal pair (at most 3 common raters)
    ms = st.similarity("pearson", min_support=4).toarray()
    assert np.count_nonzero(ms - np.diag(np.diag(ms))) == 0


def test_pearson_baseline_shrinkage_by_hand() -> None:
    zero = Baselines(0.0, np.zeros(4), np.zeros(4))
    st = toy_stats(("res_dot", "res_sq"), zero)
    # zero baselines: residuals are the ratings, so rho = cosine; shrunk by (n-1)/(n-1+100)
    cos = 14 / np.sqrt(42 * 27)
    pb = st.similarity("pearson_baseline").toarray()
    assert pb[0, 3] == pytest.approx(cos * 2 / 102, abs=1e-12)
    assert pb[0, 3] == pytest.approx(st.similarity("pearson_baseline", shrinkage=0).toarray()
                                     [0, 3] * 2 / 102)
    # support 1 (items 1, 2) is below pearson_baseline's minimum support of 2
    assert pb[1, 2] == 0
    # the general shrinkage of the other similarities is n / (n + s)
    assert toy_stats().similarity("cosine", shrinkage=3).toarray()[0, 3] == \
        pytest.approx(cos * 3 / 6)


def test_item_prediction_by_hand() -> None:
    data = toy_interactions()
    m = ItemKNN(similarity="cosine", rule="plain").fit(data)
    # user 1 rated i0 = 4 and i3 = 1; sim(i1, i0) = 16/sqrt(260),
    # sim(i1, i3) = (3,1,1).(1,5,4) / sqrt(11 * 42) = 12 / sqrt(462)
    s0, s3 = 16 / np.sqrt(260), 12 / np.sqrt(462)
    assert m.predict([1], [1])[0] == pytest.approx((4 * s0 + 1 * s3) / (s0 + s3))
    # k=1 keeps only the most similar rated item (i0)
    assert ItemKNN(k=1, similarity="cosine", rule="plain").fit(data).predict([1], [1])[0] == 4
    # "mean": mu_i1 + sum s (r - mu_j) / sum s with item means 10/3 (i0), 11/4 (i3), 5/3 (i1)
    mm = ItemKNN(similarity="cosine", rule="mean").fit(data)
    expect = 5 / 3 + (s0 * (4 - 10 / 3) + s3 * (1 - 11 / 4)) / (s0 + s3)
    assert mm.predict([1], [1])[0] == pytest.approx(expect)


def test_min_k_fallback_marks_unknown() -> None:
    data = toy_interactions()
    m = ItemKNN(similarity="cosine", rule="mean", min_k=3).fit(data)
    # user 1 has 2 rated items -> at most 2 neighbours < min_k: the item mean, not known
    assert m.predict([1], [1])[0] == pytest.approx(5 / 3)
    assert not m.known([1], [1])[0]
    p = ItemKNN(similarity="cosine", rule="plain", min_k=3).fit(data)
    assert p.predict([1], [1])[0] == pytest.approx(data.value.mean())


@pytest.mark.parametrize("first,expect", [("A", 5.0), ("B", 1.0)])
def test_ties_go_to_the_earlier_rating(first: str, expect: float) -> None:
    # sim(T, A) = 15/sqrt(9*25) = 1 and sim(T, B) = 8/sqrt(16*4) = 1 exactly: with k=1
    # Surprise keeps whichever of the user's ratings came first (stable heapq.nlargest)
    rows = [(0, "T", 3.0), (0, "A", 5.0), (1, "T", 4.0), (1, "B", 2.0)]
    last = [(2, "A", 5.0), (2, "B", 1.0)]
    rows += last if first == "A" else last[::-1]
    df = pd.DataFrame(rows, columns=["user", "item", "rating"])
    m = ItemKNN(k=1, similarity="cosine", rule="plain").fit(
        Interactions.from_frame(df, timestamp=None, rating_scale=(1, 5)))
    assert m.predict([2], ["T"])[0] == expect


def test_model_update_with_decay_weights_old_events() -> None:
    old, new, _ = _split_with_rerate()
    m = ItemKNN(k=4, similarity="pearson", rule="mean").fit(old).update(new, decay=0.5)
    st = m.statistics
    coo = st.ratings.tocoo()
    fresh = np.isin(coo.row * 10**6 + coo.col,
                    new.with_maps(m.user_map_, m.item_map_).user * 10**6
                    + new.with_maps(m.user_map_, m.item_map_).item)
    np.testing.assert_array_equal(st.weights, np.where(fresh, 1.0, 0.5))
    ref = SufficientStats.from_events(coo.row, coo.col, coo.data, st.ratings.shape,
                                      moments=st.moments, weights=st.weights)
    np.testing.assert_allclose(st.similarity("pearson").toarray(),
                               ref.similarity("pearson").toarray(), atol=1e-9)
    # means are weighted by the event weights
    w_mean = np.bincount(coo.col, st.weights * coo.data, minlength=st.n_x) / np.maximum(
        np.bincount(coo.col, st.weights, minlength=st.n_x), 1e-300)
    has = np.bincount(coo.col, minlength=st.n_x) > 0
    np.testing.assert_allclose(m.parameters()["item_mean"][has], w_mean[has])


# ------------------------------------------------------------- exact updates
def _split_with_rerate(seed: int = 3) -> tuple[Interactions, Interactions, Interactions]:
    """old, new (new users, new items, one re-rated pair), and the refit data."""
    rng = np.random.default_rng(seed)
    full = small_ratings(seed=seed, n_users=30, n_items=25)
    df = full.to_frame()
    is_new = (df.user > 26) | (df.item > 122) | (rng.random(len(df)) < 0.1)
    old_df, new_df = df[~is_new], df[is_new].copy()
    fu, fi, fr = (int(old_df.user.iloc[0]), int(old_df.item.iloc[0]),
                  float(old_df.rating.iloc[0]))
    rerate = pd.DataFrame({"user": [fu], "item": [fi], "rating": [1.0 if fr > 3 else 5.0],
                           "timestamp": [10**7]})
    new_df = pd.concat([new_df, rerate], ignore_index=True)
    old = Interactions.from_frame(old_df, rating_scale=(1, 5))
    new = Interactions.from_frame(new_df, rating_scale=(1, 5))
    both = old.concat(new, duplicates="last")
    return old, new, both


@pytest.mark.parametrize("cls", [UserKNN, ItemKNN])
@pytest.mark.parametrize("sim,rule", [("cosine", "zscore"), ("pearson", "mean"),
                                      ("jaccard", "plain"), ("msd", "mean")])
def test_update_equals_refit(cls: type, sim: str, rule: str) -> None:
    old, new, both = _split_with_rerate()
    upd = cls(k=4, similarity=sim, rule=rule).fit(old).update(new)
    ref = cls(k=4, similarity=sim, rule=rule).fit(both)
    assert upd.user_map_.ids.tolist() == ref.user_map_.ids.tolist()
    assert upd.item_map_.ids.tolist() == ref.item_map_.ids.tolist()
    a, b = upd.statistics.similarity(sim).toarray(), ref.statistics.similarity(sim).toarray()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    for name, arr in ref.parameters().items():
        np.testing.assert_allclose(upd.parameters()[name], arr, rtol=0, atol=1e-9, err_msg=name)
    users = np.repeat(both.user_map.ids, both.n_items)
    items = np.tile(both.item_map.ids, both.n_users)
    np.testing.assert_allclose(upd.predict(users, items), ref.predict(users, items), atol=1e-9)
    np.testing.assert_array_equal(upd.known(users, items), ref.known(users, items))


@pytest.mark.parametrize("cls", [UserKNN, ItemKNN])
def test_update_with_rebaseline_equals_refit(cls: type) -> None:
    old, new, both = _split_with_rerate()
    kw = {"k": 4, "similarity": "pearson_baseline", "rule": "baseline"}
    frozen = cls(**kw).fit(old).update(new)
    upd = cls(**kw).fit(old).update(new, rebaseline=True)
    ref = cls(**kw).fit(both)
    users = np.repeat(both.user_map.ids, both.n_items)
    items = np.tile(both.item_map.ids, both.n_users)
    np.testing.assert_allclose(upd.predict(users, items), ref.predict(users, items), atol=1e-9)
    np.testing.assert_allclose(upd.statistics.similarity("pearson_baseline").toarray(),
                               ref.statistics.similarity("pearson_baseline").toarray(), atol=1e-9)
    # frozen baselines keep the pretrained biases of old users
    n_old = old.n_users
    np.testing.assert_array_equal(frozen.user_bias_[:n_old],
                                  cls(**kw).fit(old).user_bias_)


def test_stats_update_exact_with_decay_and_growth() -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((20, 9)) < 0.5) * rng.integers(1, 6, (20, 9)).astype(float)
    base = Baselines(3.0, rng.normal(size=9), rng.normal(size=20))
    moments = ("dot", "sq", "lin", "res_dot", "res_sq")
    st = SufficientStats.from_ratings(sp.csr_array(dense), moments=moments, baselines=base)
    rerated = (2, int(np.flatnonzero(dense[2])[0]))
    ys = np.array([0, 21, 22, rerated[0], 5, 21])
    xs = np.array([10, 1, 0, rerated[1], 3, 10])
    vs = np.array([4.0, 5.0, 1.0, 2.5, 3.0, 2.0])
    new_x, new_y = np.array([0.2, -0.1]), np.array([0.3, 0.0, -0.5])
    st.update(EventBatch(ys, xs, vs), decay=0.8, new_x_bias=new_x, new_y_bias=new_y)
    final = np.zeros((23, 11))
    final[:20, :9] = dense
    weights = np.where(final != 0, 0.8, 0.0)
    final[ys, xs], weights[ys, xs] = vs, 1.0
    r, w = sp.csr_array(final), sp.csr_array(weights)
    ref = SufficientStats.from_ratings(
        r, moments=moments, weights=w.data,
        baselines=Baselines(3.0, np.r_[base.x_bias, new_x], np.r_[base.y_bias, new_y]))
    assert np.array_equal(st.indices, ref.indices) and np.array_equal(st.indptr, ref.indptr)
    for m in ref.moments:
        np.testing.assert_allclose(st.data[m], ref.data[m], rtol=0, atol=1e-9, err_msg=m)
    for kind in ("cosine", "pearson", "pearson_baseline", "jaccard", "msd"):
        np.testing.assert_allclose(st.similarity(kind).toarray(), ref.similarity(kind).toarray(),
                                   atol=1e-9, err_msg=kind)


def test_update_after_save_load_is_exact(tmp_path: Path) -> None:
    old, new, both = _split_with_rerate()
    ItemKNN(k=4, similarity="pearson").fit(old).save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, ItemKNN)
    loaded.update(new)
    ref = ItemKNN(k=4, similarity="pearson").fit(both)
    users, items = both.user_map.decode(both.user), both.item_map.decode(both.item)
    np.testing.assert_allclose(loaded.predict(users, items), ref.predict(users, items), atol=1e-9)


def test_implicit_update_equals_refit() -> None:
    old, new, _ = _split_with_rerate()
    upd = ImplicitItemKNN(k=4).fit(old.binarize(3)).update(new.binarize(3))
    ref = ImplicitItemKNN(k=4).fit(old.binarize(3).concat(new.binarize(3), duplicates="last"))
    np.testing.assert_allclose(upd.neighbours_.toarray(), ref.neighbours_.toarray(), atol=1e-9)
    ids = ref.user_map_.ids[:8]
    np.testing.assert_array_equal(upd.recommend(ids, 5)[0], ref.recommend(ids, 5)[0])


# ------------------------------------------------------- sparsity and memory
def test_similarity_is_sparse_and_bounded_by_cooccurrence() -> None:
    # two disjoint communities: half of all item pairs never co-occur
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.integers(0, 50, 600), rng.integers(50, 100, 600)])
    i = np.concatenate([rng.integers(0, 40, 600), rng.integers(40, 80, 600)])
    df = pd.DataFrame({"user": u, "item": i, "rating": rng.integers(1, 6, 1200)})
    data = Interactions.from_frame(df.drop_duplicates(["user", "item"]), timestamp=None)
    m = ItemKNN(similarity="cosine").fit(data)
    b = sp.csr_array((np.ones(len(data)), (data.user, data.item)), shape=data.shape)
    co = sp.csr_array(b.T @ b)
    assert sp.issparse(m.similarity_) and sp.issparse(m.statistics.similarity("cosine"))
    assert m.statistics.nnz == co.nnz <= data.n_items**2 / 2 + data.n_items
    assert m.similarity_.nnz <= co.nnz
    assert all(isinstance(v, np.ndarray) and v.ndim == 1 for v in m.statistics.data.values())


def test_memory_limit_refuses_and_blockwise_matches() -> None:
    data = small_ratings()
    with pytest.raises(DataError, match="keep_statistics=False"):
        ItemKNN(memory_limit=1000).fit(data)
    full = ItemKNN(similarity="pearson").fit(data)
    r = full.statistics.ratings
    blocks = blockwise_similarity(r, "pearson", shrinkage=None, min_support=1, baselines=None,
                                  budget_pairs=50, prune=None)
    np.testing.assert_allclose(blocks.toarray(), full.statistics.similarity("pearson").toarray(),
                               atol=1e-12)
    no_stats = ItemKNN(similarity="pearson", keep_statistics=False).fit(data)
    users, items = data.user_map.decode(data.user), data.item_map.decode(data.item)
    np.testing.assert_allclose(no_stats.predict(users, items), full.predict(users, items),
                               atol=1e-12)
    pruned = ItemKNN(similarity="pearson", max_neighbors=3).fit(data)
    assert np.diff(pruned.similarity_.indptr).max() <= 4  # 3 neighbours + itself


# ------------------------------------------------------------------- misc
def test_similar_items_uses_learned_similarity() -> None:
    m = ItemKNN(similarity="cosine").fit(toy_interactions())
    ids, scores = m.similar_items([0], k=3)
    # sims of i0: i1 = 16/sqrt(260) = 0.992, i3 = 14/sqrt(1134) = 0.416, i2 none
    assert ids[0].tolist() == [1, 3, -1]
    np.testing.assert_allclose(scores[0, :2], [16 / np.sqrt(260), 14 / np.sqrt(1134)])
    u = UserKNN(similarity="cosine").fit(toy_interactions())
    uids, _ = u.similar_users([0], k=2)
    assert 0 not in uids[0]


def test_implicit_scores_and_weighting_by_hand() -> None:
    x = (TOY > 0).astype(float)
    u, i = np.nonzero(x)
    data = Interactions.from_frame(pd.DataFrame({"user": u, "item": i}), value=None,
                                   timestamp=None, kind="implicit")
    m = ImplicitItemKNN(k=3).fit(data)
    norms = np.sqrt(x.sum(0))
    cos = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(cos, 0)
    np.testing.assert_allclose(m.neighbours_.toarray(), cos, atol=1e-12)
    np.testing.assert_allclose(m.predict([1, 1], [1, 2]), (x[1] @ cos)[[1, 2]], atol=1e-12)
    # BM25 as implicit's bm25_weight on the items x users view
    b = ImplicitItemKNN(k=3, weighting="bm25", similarity="dot").fit(data)
    idf = np.log(4) - np.log1p(x.sum(1))  # per user (the "terms")
    length = 0.25 + 0.75 * x.sum(0) / x.sum(0).mean()  # per item (the "documents")
    w = x * 2.2 / (1.2 * length[None, :] + x) * idf[:, None]
    dot = w.T @ w
    np.fill_diagonal(dot, 0)
    expect = np.where(dot > 0, dot, 0)
    np.testing.assert_allclose(b.neighbours_.toarray(), expect, atol=1e-12)


def test_bad_hyper_parameters() -> None:
    data = small_ratings()
    for bad in ({"similarity": "euclid"}, {"rule": "median"}, {"k": 0}, {"min_k": -1},
                {"shrinkage": -1.0}, {"max_neighbors": 0}):
        with pytest.raises(DataError):
            ItemKNN(**bad).fit(data)
    with pytest.raises(DataError):
        ImplicitItemKNN(weighting="okapi").fit(data)
    with pytest.raises(DataError, match="decay"):
        ItemKNN().fit(data).update(data, decay=1.5)


def test_als_biases_match_closed_form_single_epoch() -> None:
    u, i = np.array([0, 0, 1]), np.array([0, 1, 0])
    v, w = np.array([5.0, 3.0, 4.0]), np.ones(3)
    bu, bi = als_biases(u, i, v, w, 2, 2, 4.0, reg_user=15, reg_item=10, n_epochs=1)
    # items first with bu = 0: bi0 = (1 + 0) / (10 + 2), bi1 = -1 / 11
    np.testing.assert_allclose(bi, [1 / 12, -1 / 11])
    # then users: bu0 = ((1 - 1/12) + (-1 + 1/11)) / (15 + 2)
    np.testing.assert_allclose(bu[0], ((1 - 1 / 12) + (-1 + 1 / 11)) / 17)


@pytest.mark.realdata
def test_ml100k_quality_band(ml100k_dir: Path) -> None:
    df = pd.read_csv(ml100k_dir / "u.data", sep="\t",
                     names=["user", "item", "rating", "timestamp"])
    data = Interactions.from_frame(df, rating_scale=(1, 5))
    perm = np.random.default_rng(0).permutation(len(df))
    train, test = data.take(perm[20000:]), df.iloc[perm[:20000]]
    m = ItemKNN(similarity="pearson_baseline", rule="baseline").fit(train)
    pred = m.predict(test.user.to_numpy(), test.item.to_numpy())
    rmse = float(np.sqrt(np.mean((pred - test.rating.to_numpy()) ** 2)))
    assert 0.90 < rmse < 0.935, rmse


# ------------------------------------------------------------------ kernels
def test_select_k_takes_the_best_and_breaks_ties_by_arrival() -> None:
    from rectune.models._knn_kernels import _select_k

    rng = np.random.default_rng(0)
    for n, k in ((50, 7), (9, 9), (30, 1), (200, 40)):
        sim = rng.integers(0, 4, n).astype(np.float64)  # many ties
        order = rng.permutation(n).astype(np.int64)
        cand = rng.permutation(n).astype(np.int64)
        hs, ho, hp = np.empty(k), np.empty(k, np.int64), np.empty(k, np.int64)
        assert _select_k(sim, order, cand, n, k, hs, ho, hp) == k
        best = sorted(range(n), key=lambda c: (-sim[c], order[c]))[:k]
        assert sorted(hp.tolist()) == sorted(best)


def test_pair_pattern_equals_the_product_pattern() -> None:
    from rectune.models._knn_kernels import pair_pattern

    # a rater of the first 100 makes their rows dense (the scan path), the rest are sparse
    r = sp.csr_array(sp.vstack([sp.csr_array((np.arange(300) < 100)[None, :] * 1.0),
                                sp.random_array((40, 300), density=0.05, random_state=2)]))
    r.sort_indices()
    lt = sp.csr_array(r.T)
    lt.sort_indices()
    base = sp.csr_array(sp.random_array((300, 300), density=0.01, random_state=3,
                                        format="csr"))
    base.sort_indices()
    for rows in (slice(0, 300), slice(17, 90)):
        ptr, idx = pair_pattern(lt.indptr[rows.start:rows.stop + 1].astype(np.int64),
                                lt.indices.astype(np.int64), r.indptr.astype(np.int64),
                                r.indices.astype(np.int64),
                                base.indptr[rows.start:rows.stop + 1] - base.indptr[rows.start],
                                base.indices[base.indptr[rows.start]:].astype(np.int64), 300)
        want = (abs(lt @ r) + abs(base)).tocsr()[rows]
        want.sort_indices()
        np.testing.assert_array_equal(ptr, want.indptr)
        np.testing.assert_array_equal(idx, want.indices)
