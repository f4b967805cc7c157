"""Feature encoders: exact outputs on toy data, OOV, JSON round trips, context, tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectune import DataError, NotFittedError
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions
from rectune.data.synthetic import synthetic
from rectune.features import (
    CategoricalEncoder,
    ContextEncoder,
    FeatureSet,
    FeatureTable,
    MultiHotEncoder,
    NumericEncoder,
    encoder_from_json,
)


def _roundtrip(obj: dict) -> dict:
    """Through real JSON text, so anything non-JSON would fail here."""
    return json.loads(json.dumps(obj))


# --- categorical -------------------------------------------------------------------
def test_categorical_exact_codes_and_oov() -> None:
    enc = CategoricalEncoder(name="gender").fit(["M", "F", "M", None, "X", "M", "F"])
    assert enc.categories_ == ["M", "F", "X"]  # by count, ties by value
    assert enc.dim == 4
    got = enc.transform(pd.Series(["F", "M", "unseen", None, np.nan, "X"]))
    assert got.tolist() == [2, 1, 0, 0, 0, 3]
    assert got.dtype == np.int64
    assert enc.inverse_transform([0, 1, 3]).tolist() == [None, "M", "X"]


def test_categorical_min_count_and_max_categories() -> None:
    vals = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"]
    assert CategoricalEncoder(min_count=2).fit(vals).transform(["a", "b", "c", "d"]).tolist() \
        == [1, 2, 3, 0]
    enc = CategoricalEncoder(max_categories=2).fit(vals)
    assert enc.categories_ == ["a", "b"]  # b and c tie at 3: b wins by value
    assert enc.transform(["c", "d"]).tolist() == [0, 0]


def test_categorical_integers_with_nan_stay_integers() -> None:
    enc = CategoricalEncoder(name="zone").fit(pd.Series([3, 1, 3, np.nan]))  # float column
    assert enc.categories_ == [3, 1] and enc.kind_ == "int"
    assert enc.transform(np.array([1, 3, 7])).tolist() == [2, 1, 0]
    assert enc.transform(pd.Series([1.0, np.nan])).tolist() == [2, 0]


def test_categorical_type_errors_name_the_column() -> None:
    enc = CategoricalEncoder(name="occupation").fit(["doctor", "lawyer"])
    with pytest.raises(DataError, match=r"'occupation'.*fitted on str"):
        enc.transform([1, 2])
    with pytest.raises(DataError, match=r"'occupation'.*one type"):
        CategoricalEncoder(name="occupation").fit(["a", 1])
    with pytest.raises(DataError, match=r"'occupation'.*fractional"):
        CategoricalEncoder(name="occupation").fit([1.5, 2.0])
    with pytest.raises(NotFittedError):
        CategoricalEncoder().transform(["a"])


def test_fitted_on_train_only() -> None:
    train, test = ["student", "writer", "student"], ["writer", "doctor"]
    enc = CategoricalEncoder().fit(train)
    assert enc.transform(test).tolist() == [2, 0]  # doctor exists only in test -> OOV
    assert enc.categories_ == ["student", "writer"]


# --- numeric -----------------------------------------------------------------------
def test_numeric_standard_with_missing_indicator() -> None:
    enc = NumericEncoder(name="age", missing_indicator=True).fit([10, 20, 30, np.nan])
    assert enc.mean_ == 20.0 and np.isclose(enc.std_, np.sqrt(200 / 3))
    got = enc.transform([20, np.nan, 20 + np.sqrt(200 / 3)])
    assert got.dtype == np.float32 and got.shape == (3, 2)
    np.testing.assert_allclose(got, [[0, 0], [0, 1], [1, 0]], atol=1e-6)
    assert enc.dim == 2 and enc.output == "dense"
    plain = NumericEncoder().fit([5, 5, 5])  # zero variance: std falls back to 1
    assert plain.transform([6]).tolist() == [[1.0]]


def test_numeric_bucket_given_edges() -> None:
    enc = NumericEncoder(name="age", mode="bucket", edges=[18, 25, 35]).fit([1.0])
    got = enc.transform([5, 18, 24.9, 25, 35, 99, np.nan])
    assert got.tolist() == [1, 2, 2, 3, 4, 4, 0]
    assert enc.dim == 5 and enc.output == "index"


def test_numeric_bucket_quantile_edges() -> None:
    enc = NumericEncoder(mode="bucket", n_buckets=4).fit(np.arange(1, 101))
    assert enc.edges_ == [25.75, 50.5, 75.25]
    assert enc.transform([1, 30, 60, 100, 1000, -5]).tolist() == [1, 2, 3, 4, 4, 1]
    merged = NumericEncoder(mode="bucket", n_buckets=4).fit([1, 1, 1, 1, 2])
    assert merged.edges_ == [1.0]  # duplicate quantiles are merged


def test_numeric_errors_name_the_column() -> None:
    enc = NumericEncoder(name="age").fit([1, 2])
    with pytest.raises(DataError, match=r"'age'.*'old' .*not a number"):
        enc.transform(["3", "old"])
    with pytest.raises(DataError, match=r"'age'.*infinite"):
        enc.transform([np.inf])
    with pytest.raises(DataError, match="strictly increasing"):
        NumericEncoder(mode="bucket", edges=[3, 1]).fit([1])
    with pytest.raises(DataError, match="no non-missing"):
        NumericEncoder(name="age").fit([np.nan])


# --- multi-valued ------------------------------------------------------------------
def test_multi_hot_exact_matrix() -> None:
    enc = MultiHotEncoder(name="genres").fit([["a", "b"], ["b"], [], None, ["c", "b"]])
    assert enc.vocabulary_ == ["b", "a", "c"] and enc.dim == 4
    x = enc.transform([["b", "zzz"], [], None, ["a", "a"], ("c",), {"a", "c"}])
    assert x.format == "csr" and x.dtype == np.float32
    np.testing.assert_array_equal(x.toarray(), [
        [1, 1, 0, 0],  # zzz -> OOV column 0
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 1, 0],  # repeated token counted once
        [0, 0, 0, 1],
        [0, 0, 1, 1],
    ])


def test_multi_hot_vocabulary_limits_use_document_frequency() -> None:
    rows = [["x", "x", "x", "y"], ["y"], ["y", "z"], ["z"]]
    enc = MultiHotEncoder(min_count=2).fit(rows)
    assert enc.vocabulary_ == ["y", "z"]  # x is in one row only (repeats don't count)
    assert MultiHotEncoder(max_features=1).fit(rows).vocabulary_ == ["y"]


def test_multi_hot_bag_of_ids() -> None:
    enc = MultiHotEncoder().fit([["a", "b", "c"], ["a"]])
    ids, lengths = enc.transform_bag([["c", "a"], [], ["q", "b", "a"], None])
    pad = enc.pad_index
    assert pad == 4
    assert ids.tolist() == [[1, 3, pad], [pad, pad, pad], [0, 1, 2], [pad, pad, pad]]
    assert lengths.tolist() == [2, 0, 3, 0]
    ids2, len2 = enc.transform_bag([["c", "a", "b"]], max_len=2)
    assert ids2.tolist() == [[1, 2]] and len2.tolist() == [2]
    # CSR indices/indptr are an EmbeddingBag's input/offsets
    x = enc.transform([["c", "a"], ["b"]])
    assert x.indices.tolist() == [1, 3, 2] and x.indptr.tolist() == [0, 2, 3]


def test_multi_hot_strings_need_a_separator() -> None:
    with pytest.raises(DataError, match=r"'genres'.*row 1 is a string"):
        MultiHotEncoder(name="genres").fit([["a"], "Action|Drama"])
    enc = MultiHotEncoder(sep="|").fit(["Action|Drama", "Drama", None, ""])
    assert enc.vocabulary_ == ["Drama", "Action"]
    assert enc.transform(["Drama | Action", "Western"]).toarray().tolist() == [
        [0, 1, 1], [1, 0, 0]]
    with pytest.raises(DataError, match=r"'genres'.*row 0 is 5"):
        MultiHotEncoder(name="genres").fit([5, ["a"]])


def test_multi_hot_integer_tokens() -> None:
    enc = MultiHotEncoder(name="actors").fit([[10, 20], [20]])
    assert enc.vocabulary_ == [20, 10]
    assert enc.transform([[10, 99]]).toarray().tolist() == [[1, 0, 1]]
    with pytest.raises(DataError, match=r"'actors'.*fitted on int"):
        enc.transform([["bob"]])


# --- JSON --------------------------------------------------------------------------
@pytest.mark.parametrize("enc, data, probe", [
    (CategoricalEncoder(min_count=2), ["a", "a", "b", "c", "c"], ["a", "b", "c", None]),
    (CategoricalEncoder(), [3, 1, 1], [1, 3, 4]),
    (NumericEncoder(missing_indicator=True), [1.5, 2.5, np.nan], [0.0, np.nan, 9.1]),
    (NumericEncoder(mode="bucket", n_buckets=3), np.arange(30.0), [-1, 5, 15, 40, np.nan]),
    (MultiHotEncoder(max_features=2), [["a", "b"], ["b", "c"], ["b"]], [["a", "c"], None]),
])
def test_json_round_trip_gives_identical_transforms(enc, data, probe) -> None:
    enc.fit(data)
    back = encoder_from_json(_roundtrip(enc.to_json()))
    assert type(back) is type(enc) and back.get_params() == enc.get_params()
    a, b = enc.transform(probe), back.transform(probe)
    if hasattr(a, "toarray"):
        a, b = a.toarray(), b.toarray()
    np.testing.assert_array_equal(a, b)
    assert type(enc).from_json(enc.to_json()).dim == enc.dim


def test_unfitted_json_and_bad_json() -> None:
    back = encoder_from_json(_roundtrip(CategoricalEncoder(min_count=3).to_json()))
    assert not back.fitted and back.min_count == 3
    with pytest.raises(DataError, match="not an encoder"):
        encoder_from_json({"type": "Nope", "params": {}, "state": None})
    with pytest.raises(DataError, match="not a NumericEncoder"):
        NumericEncoder.from_json(CategoricalEncoder().fit(["a"]).to_json())


# --- context -----------------------------------------------------------------------
def test_context_hour_and_weekday_of_known_times() -> None:
    enc = ContextEncoder(recency=None).fit([0])
    t = [0, 3599, 3600, 86_399, 4 * 86_400 + 13 * 3600,
         int(pd.Timestamp("2024-02-29 23:30", tz="UTC").timestamp()), -1]
    out = enc.transform(t)
    assert out["hour"].tolist() == [0, 0, 1, 23, 13, 23, 23]
    # 1970-01-01 was a Thursday (Monday = 0); 1970-01-05 a Monday; 2024-02-29 a Thursday;
    # one second before the epoch is Wednesday 23:59:59
    assert out["weekday"].tolist() == [3, 3, 3, 3, 0, 3, 2]
    assert set(out) == {"hour", "weekday"} and enc.dims == {"hour": 24, "weekday": 7}
    dt = pd.to_datetime(pd.Series(t), unit="s")
    assert enc.transform(dt)["hour"].tolist() == out["hour"].tolist()


def test_context_recency_since_previous_event() -> None:
    users = [1, 2, 1, 1]
    t = [100, 50, 0, 100 + 3600]  # user 1: 0, 100, 3700 (unsorted input)
    enc = ContextEncoder(hour=False, weekday=False).fit(t, users=users)
    logs = np.log1p([100.0, 3600.0])
    mean, std = logs.mean(), logs.std()
    assert np.isclose(enc.recency_mean_, mean) and np.isclose(enc.recency_std_, std)
    r = enc.transform(t, users=users)["recency"]
    np.testing.assert_allclose(r[:, 0], [(logs[0] - mean) / std, 0, 0, (logs[1] - mean) / std],
                               rtol=1e-6)
    assert r[:, 1].tolist() == [0, 1, 1, 0]  # first events are missing
    # a test event gets its recency from the user's last training event
    last = np.array([np.nan, 3700.0, np.nan])
    r2 = enc.transform([3700 + 3600], users=[1], last_seen=last)["recency"]
    np.testing.assert_allclose(r2[0], [(logs[1] - mean) / std, 0], rtol=1e-6)
    with pytest.raises(DataError, match="needs the users"):
        enc.transform([1])


def test_context_reference_recency_and_location() -> None:
    enc = ContextEncoder(recency="reference", location="city", missing_indicator=False)
    enc.fit([0, 10, 1000], locations=["paris", "rome", "paris"])
    assert enc.reference_ == 1000  # latest training event
    out = enc.transform([1000, 0], locations=["rome", "oslo"])
    assert out["location"].tolist() == [2, 0]  # oslo unseen -> OOV
    z = np.log1p([1000.0, 990.0, 0.0])
    np.testing.assert_allclose(out["recency"][:, 0], (np.log1p([0.0, 1000.0]) - z.mean()) / z.std(),
                               rtol=1e-6)
    back = ContextEncoder.from_json(_roundtrip(enc.to_json()))
    again = back.transform([1000, 0], locations=["rome", "oslo"])
    for k in out:
        np.testing.assert_array_equal(out[k], again[k])
    assert back.dims == {"hour": 24, "weekday": 7, "recency": 1, "location": 3}


def test_context_on_interactions() -> None:
    df = pd.DataFrame({"user": ["a", "a", "b"], "item": [1, 2, 1], "rating": [1.0, 2.0, 3.0],
                       "timestamp": [0, 7200, 86_400], "city": ["x", "y", "x"]})
    data = Interactions.from_frame(df, context=["city"])
    enc = ContextEncoder(location="city").fit_interactions(data)
    out = enc.transform_interactions(data)
    assert out["hour"].tolist() == [0, 2, 0] and out["weekday"].tolist() == [3, 3, 4]
    assert out["location"].tolist() == [1, 2, 1]
    assert out["recency"][:, 1].tolist() == [1, 0, 1]
    np.testing.assert_array_equal(ContextEncoder.last_seen(data), [7200.0, 86_400.0])
    with pytest.raises(DataError, match="timestamp"):
        enc.transform(["noon"])
    with pytest.raises(NotFittedError):
        ContextEncoder().transform([0])


# --- feature tables ----------------------------------------------------------------
@pytest.fixture()
def users() -> pd.DataFrame:
    return pd.DataFrame(
        {"age": [20, 35, np.nan, 61], "gender": ["M", "F", "M", None],
         "occupation": ["student", "doctor", "student", "retired"],
         "tags": [["a", "b"], [], ["b"], None]},
        index=pd.Index([10, 20, 30, 40], name="user"))


SPEC = {
    "gender": "categorical",
    "job": {"kind": "categorical", "column": "occupation"},
    "age": {"kind": "numeric", "mode": "bucket", "edges": [25, 50]},
    "age_z": {"kind": "numeric", "column": "age", "missing_indicator": True},
    "tags": "multi",
}


def test_feature_table_aligns_to_the_idmap(users: pd.DataFrame) -> None:
    table = FeatureTable(SPEC).fit(users, ids=[10, 20, 30])  # user 40 is not training
    assert table.dims == {"gender": 3, "job": 3, "age": 4, "age_z": 2, "tags": 3}
    assert table.n_features == 15
    ids = IdMap([40, 30, 99, 10])  # 99 has no feature row
    enc = table.transform(users, ids)
    assert enc.ids.tolist() == [40, 30, 99, 10]
    assert enc.present.tolist() == [True, True, False, True]
    assert enc["gender"].tolist() == [0, 1, 0, 1]
    assert enc["job"].tolist() == [0, 1, 0, 1]  # retired only outside training -> OOV
    assert enc["age"].tolist() == [3, 0, 0, 1]
    np.testing.assert_allclose(enc["age_z"][:, 1], [0, 1, 1, 0])
    assert table.encoders["tags"].vocabulary_ == ["b", "a"]
    assert enc["tags"].toarray().tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1]]
    mat = enc.matrix()
    assert mat.shape == (4, 15)
    assert mat.sum(axis=1)[2] == 3 + 1  # missing row: OOV gender, job, age + indicator
    sl = enc.slices()
    assert sl["job"] == slice(3, 6) and mat[:, sl["job"]].toarray()[1].tolist() == [0, 1, 0]


def test_feature_table_json_round_trip(users: pd.DataFrame) -> None:
    table = FeatureSet(SPEC).fit(users)
    back = FeatureTable.from_json(_roundtrip(table.to_json()))
    ids = [40, 10, 77]
    a, b = table.transform(users, ids), back.transform(users, ids)
    for name in SPEC:
        x, y = a[name], b[name]
        if hasattr(x, "toarray"):
            x, y = x.toarray(), y.toarray()
        np.testing.assert_array_equal(x, y)
    assert back.dims == table.dims and back.fields == table.fields
    refit = FeatureTable(back.spec).fit(users).transform(users, ids)
    np.testing.assert_array_equal(refit["job"], a["job"])


def test_feature_table_errors(users: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"lacks column\(s\) \['salary'\]"):
        FeatureTable({"salary": "numeric"}).fit(users)
    with pytest.raises(DataError, match="kind must be one of"):
        FeatureTable({"age": "ordinal"}).fit(users)
    with pytest.raises(DataError, match=r"unknown option\(s\) \['bins'\]"):
        FeatureTable({"age": {"kind": "numeric", "bins": 3}}).fit(users)
    with pytest.raises(DataError, match=r"'gender'.*fitted on str"):
        bad = users.assign(gender=[1, 2, 1, 2])
        FeatureTable({"gender": "categorical"}).fit(users).transform(bad)
    with pytest.raises(DataError, match="ids are str"):
        FeatureTable({"gender": "categorical"}).fit(users).transform(users, ["10"])
    with pytest.raises(DataError, match="duplicate id 10"):
        FeatureTable({"gender": "categorical"}).fit(pd.concat([users, users]))
    with pytest.raises(NotFittedError):
        FeatureTable(SPEC).transform(users)


def test_feature_table_on_synthetic_movielens() -> None:
    ds = synthetic(20_000, seed=4)
    assert ds.user_features is not None and ds.item_features is not None
    items = FeatureTable({"genres": {"kind": "multi", "min_count": 1},
                          "year": {"kind": "numeric", "mode": "bucket", "n_buckets": 5}})
    enc = items.fit(ds.item_features).transform(ds.item_features, ds.interactions.item_map)
    assert enc["genres"].shape[0] == ds.interactions.n_items
    assert (enc["genres"].sum(axis=1) >= 1).all() and (enc["genres"][:, [0]].sum() == 0)
    assert enc.matrix().shape == (ds.interactions.n_items, items.n_features)


@pytest.mark.realdata
def test_feature_table_on_ml100k_users(ml100k_dir: Path) -> None:
    users = pd.read_csv(ml100k_dir / "u.user", sep="|", header=None, index_col=0,
                        names=["user", "age", "gender", "occupation", "zip"])
    train_ids = users.index[users.index <= 800]
    table = FeatureTable({"gender": "categorical", "occupation": "categorical",
                          "age": {"kind": "numeric", "mode": "bucket",
                                  "edges": [18, 25, 35, 45, 50, 56]}})
    enc = table.fit(users, ids=train_ids).transform(users, IdMap(users.index))
    assert table.dims["gender"] == 3 and table.dims["occupation"] <= 22
    assert enc["occupation"][:800].min() >= 1 and enc["age"].min() >= 1
    assert table.encoders["occupation"].categories_[0] == "student"
