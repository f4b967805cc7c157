"""Caser: the contract, a deterministic cycle it must learn, serving from a history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rectune import DataError
from rectune.data import Interactions
from rectune.models.base import Recommender
from rectune.models.neural.caser import Caser
from tests.models.contract import ContractTests

torch.set_num_threads(1)


def cycle_data(n_users: int = 80, n_items: int = 12, length: int = 9,
               seed: int = 0) -> Interactions:
    """Each user walks the cycle 0 -> 1 -> ... -> n_items-1 -> 0 from a random start.

    The next item after any window is determined by the window's last item, so a
    sequence model must reach a top-1 next-item accuracy near 1 (popularity: ~1/n).
    """
    rng = np.random.default_rng(seed)
    start = rng.integers(0, n_items, n_users)
    steps = np.arange(length)
    items = (start[:, None] + steps[None, :]) % n_items
    users = np.repeat(np.arange(n_users), length)
    ts = np.tile(steps * 100, n_users) + np.repeat(rng.integers(0, 50, n_users), length)
    df = pd.DataFrame({"user": users, "item": items.ravel() + 1000, "rating": 1.0,
                       "timestamp": ts})
    return Interactions.from_frame(df.sample(frac=1.0, random_state=1), kind="implicit")


def cycle_accuracy(model: Recommender, data: Interactions, n_items: int = 12) -> float:
    """Top-1 accuracy of the next item after each user's last (cycle successor)."""
    frame = data.to_frame()
    last = frame.sort_values(["user", "timestamp"]).groupby("user")["item"].last()
    expected = (last.to_numpy() - 1000 + 1) % n_items + 1000
    ids, _ = model.recommend(last.index.to_numpy(), 1)
    return float(np.mean(ids[:, 0] == expected))


class TestCaserContract(ContractTests):
    def make_model(self) -> Caser:
        return Caser(n_factors=8, max_len=3, n_targets=2, n_h=4, n_v=2, epochs=3,
                     batch_size=64, random_state=0)


class TestCaserCEContract(ContractTests):
    def make_model(self) -> Caser:
        return Caser(n_factors=8, max_len=4, n_targets=1, n_h=2, n_v=0, loss="ce", epochs=2,
                     batch_size=64, random_state=1)


CYCLE = dict(n_factors=16, max_len=3, n_h=4, n_v=2, dropout=0.1, epochs=20, batch_size=64,
             lr=1e-2, random_state=0)


@pytest.fixture(scope="module")
def cycle_model() -> tuple[Caser, Interactions]:
    data = cycle_data()
    return Caser(n_targets=2, loss="bce", n_negatives=4, **CYCLE).fit(data), data  # type: ignore[arg-type]


def test_learns_a_deterministic_cycle_bce(cycle_model: tuple[Caser, Interactions]) -> None:
    m, data = cycle_model
    assert cycle_accuracy(m, data) >= 0.95
    assert m.history_[-1]["loss"] < m.history_[0]["loss"]


def test_learns_a_deterministic_cycle_ce() -> None:
    # a softmax over T = 2 targets splits its mass between the next two items, so the
    # top-1 item is only well defined for T = 1 there
    data = cycle_data()
    m = Caser(n_targets=1, loss="ce", **CYCLE).fit(data)  # type: ignore[arg-type]
    assert cycle_accuracy(m, data) >= 0.95


def test_serves_unseen_users_from_history_and_survives_save_load(
        cycle_model: tuple[Caser, Interactions], tmp_path: Path) -> None:
    m, data = cycle_model
    hist = [[1003, 1004, 1005], [1010, 1011], [999_999]]  # the last: only an unknown id
    ids, scores = m.recommend([10**6, 10**6 + 1, 10**7], 3, history=hist)
    assert ids[0, 0] == 1006 and ids[1, 0] == 1000
    assert not {1003, 1004, 1005} & set(ids[0].tolist())  # the given history is excluded
    pop_ids, _ = m.recommend([10**7], 3)
    np.testing.assert_array_equal(ids[2], pop_ids[0])  # empty usable history -> popularity
    m.save(tmp_path / "caser")
    m2 = Recommender.load(tmp_path / "caser")
    assert isinstance(m2, Caser)
    ids2, scores2 = m2.recommend([10**6, 10**6 + 1, 10**7], 3, history=hist)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    np.testing.assert_array_equal(m2.user_history(5), m.user_history(5))
    users = data.user_map.ids[:20]
    np.testing.assert_array_equal(m.recommend(users, 4)[0], m2.recommend(users, 4)[0])


def test_history_for_a_known_user_replaces_the_stored_one(
        cycle_model: tuple[Caser, Interactions]) -> None:
    m, data = cycle_model
    u = data.user_map.ids[0]
    stored = m.user_history(u).tolist()
    assert len(stored) == 9
    ids_default, s_default = m.recommend([u], 3)
    ids_same, s_same = m.recommend([u], 3, history=[stored])
    np.testing.assert_array_equal(ids_default, ids_same)
    np.testing.assert_allclose(s_default, s_same, rtol=1e-6)
    ids_other, _ = m.recommend([u], 1, history=[[1003, 1004]], exclude_seen=False)
    assert ids_other[0, 0] == 1005
    with pytest.raises(DataError):
        m.recommend([u, u], 1, history=[stored])
    with pytest.raises(DataError):
        m.recommend([u], 1, history=["1003"])


def test_user_who_knows_every_item_trains_without_nan() -> None:
    df = pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": [1, 2, 3, 1, 2], "rating": 1.0,
                       "timestamp": [1, 2, 3, 1, 2]})
    data = Interactions.from_frame(df, kind="implicit")
    m = Caser(n_factors=4, max_len=2, n_h=1, n_v=1, epochs=2, random_state=0).fit(data)
    assert all(np.isfinite(h["loss"]) for h in m.history_)


def test_validation_early_stopping_records_the_best_epoch() -> None:
    data = cycle_data(seed=2)
    frame = data.to_frame()
    last = frame.sort_values(["user", "timestamp"]).groupby("user").tail(1).index
    train = data.take(np.setdiff1d(np.arange(len(data)), last))
    valid = data.take(np.sort(last.to_numpy()))
    m = Caser(n_factors=16, max_len=3, n_targets=1, n_h=4, n_v=2, epochs=10, patience=2,
              batch_size=64, lr=1e-2, random_state=0).fit(train, valid=valid)
    scores = [h["valid"] for h in m.history_]
    assert m.best_epoch_ == int(np.argmax(scores)) + 1
    assert max(scores) > 0.8  # NDCG@10 of the held-out successor


@pytest.mark.parametrize("bad", [dict(n_factors=0), dict(max_len=1.5), dict(loss="mse"),
                                 dict(n_h=0, n_v=0), dict(dropout=1.0), dict(lr=0.0),
                                 dict(patience=0), dict(conv_activation="gelu")])
def test_bad_hyper_parameters_raise(bad: dict[str, object]) -> None:
    with pytest.raises(DataError):
        Caser(**bad).fit(cycle_data(n_users=5))  # type: ignore[arg-type]


def test_parameter_groups_are_named_by_design() -> None:
    data = cycle_data(n_users=20)
    m = Caser(n_factors=4, max_len=3, n_h=2, n_v=1, epochs=1).fit(data)
    p = m.parameters()
    assert p["item_embedding"].shape == (12, 4)
    assert p["user_embedding"].shape == (20, 4)
    assert p["item_output"].shape == (12, 8) and p["item_bias"].shape == (12, 1)
    assert {"conv.vertical.weight", "conv.horizontal.2.weight", "head.weight"} <= set(p)
