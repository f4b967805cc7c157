"""Fine-tuning the PyTorch family: L2-SP, freezing, growth, extended sequences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rectune import RectuneError
from rectune.data import Interactions
from rectune.finetune import FinetuneConfig, finetune, supports
from rectune.finetune.neural import extended_sequences
from rectune.models.neural.gru4rec import GRU4Rec
from rectune.models.neural.ncf import GMF, NeuMF
from rectune.models.neural.sequence import Sequences
from tests.models.contract import small_ratings

torch.set_num_threads(1)


def _split() -> tuple[Interactions, Interactions]:
    """Old data (users 1..30) and new data (users 21..40: 10 returning, 10 new)."""
    d = small_ratings(seed=3)
    df = pd.DataFrame({"user": d.user_map.decode(d.user), "item": d.item_map.decode(d.item),
                       "rating": d.value, "timestamp": d.timestamp})
    old = df[df.user <= 30]
    new = df[(df.user > 20) & ~df.index.isin(old.sample(frac=0.5, random_state=0).index)]
    new = new[new.user > 20]
    return (Interactions.from_frame(old, rating_scale=(1, 5)),
            Interactions.from_frame(new, rating_scale=(1, 5)))


@pytest.fixture(scope="module")
def pre() -> tuple[GMF, Interactions, Interactions]:
    old, new = _split()
    return GMF(n_factors=8, loss="mse", epochs=15, lr=1e-2, batch_size=64,
               random_state=0).fit(old), old, new


def _cfg(**kw: object) -> FinetuneConfig:
    base: dict[str, object] = {"epochs": 5, "learning_rate": 5e-3, "verbose": False,
                               "early_stopping": False}
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def test_pretrained_unchanged_and_new_ids_grow(pre: tuple[GMF, Interactions, Interactions]
                                               ) -> None:
    m, _, new = pre
    before = {k: v.copy() for k, v in m.parameters().items()}
    out = finetune(m, new, _cfg())
    for k, v in m.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    assert len(out.user_map_) == len(m.user_map_) + 10  # users 31..40 are new
    assert out.user_map_.ids[: len(m.user_map_)].tolist() == m.user_map_.ids.tolist()
    p = out.parameters()
    assert p["user_embedding"].shape[0] == len(out.user_map_)
    assert out.known([35], [out.item_map_.ids[0]]).all()


def test_huge_l2sp_keeps_old_rows(pre: tuple[GMF, Interactions, Interactions]) -> None:
    m, _, new = pre
    plain = finetune(m, new, _cfg(l2sp=0.0)).parameters()
    held = finetune(m, new, _cfg(l2sp=1e6)).parameters()
    p0 = m.parameters()
    n = p0["user_embedding"].shape[0]
    d_plain = np.abs(plain["user_embedding"][:n] - p0["user_embedding"]).max()
    d_held = np.abs(held["user_embedding"][:n] - p0["user_embedding"]).max()
    assert d_plain > 1e-3
    assert d_held < 0.1 * d_plain
    assert np.abs(held["head.weight"] - p0["head.weight"]).max() < 0.1 * max(
        np.abs(plain["head.weight"] - p0["head.weight"]).max(), 1e-6)


def test_frozen_groups_are_bit_identical(pre: tuple[GMF, Interactions, Interactions]) -> None:
    m, _, new = pre
    out = finetune(m, new, _cfg(freeze=["item_*", "head.*"]))
    p0, p1 = m.parameters(), out.parameters()
    np.testing.assert_array_equal(p1["item_embedding"][: p0["item_embedding"].shape[0]],
                                  p0["item_embedding"])
    np.testing.assert_array_equal(p1["head.weight"], p0["head.weight"])
    n = p0["user_embedding"].shape[0]
    assert not np.array_equal(p1["user_embedding"][:n], p0["user_embedding"])


def test_finetune_beats_stale_on_new_data(pre: tuple[GMF, Interactions, Interactions]) -> None:
    m, _, new = pre
    out = finetune(m, new, _cfg(epochs=20, l2sp=1e-3))
    u, i, v = new.user_map.decode(new.user), new.item_map.decode(new.item), new.value

    def err(model: GMF) -> float:
        return float(np.sqrt(np.mean((model.predict(u, i) - v) ** 2)))

    assert err(out) < err(m)
    info = out.meta_["finetune"]
    assert len(info["history"]) == 20 and info["learning_rate"] == 5e-3
    assert info["base_checksum"] and "trainable params" in info["trainable"]


def test_save_load_after_finetune(pre: tuple[GMF, Interactions, Interactions],
                                  tmp_path: object) -> None:
    from pathlib import Path

    from rectune.models.base import Recommender

    m, _, new = pre
    out = finetune(m, new, _cfg())
    path = out.save(Path(str(tmp_path)) / "m")
    back = Recommender.load(path)
    u = out.user_map_.ids[:5]
    i = out.item_map_.ids[:5]
    np.testing.assert_allclose(back.predict(u, i), out.predict(u, i))


def test_unsupported_requests_are_refused(pre: tuple[GMF, Interactions, Interactions]) -> None:
    m, _, new = pre
    assert supports(NeuMF, "l2sp") and not supports(NeuMF, "task_change")
    with pytest.raises(RectuneError, match="task_change"):
        finetune(m, new, _cfg(task={"head": "click"}))
    with pytest.raises(RectuneError, match="matches no parameter group"):
        finetune(m, new, _cfg(freeze=["mlp.*"]))


def test_extended_sequences_appends_new_events_per_user() -> None:
    old = Sequences.from_lists([[1, 2], [], [3]])
    new = Sequences.from_lists([[4], [5, 6], [], [7]])
    ext = extended_sequences(old, new)
    got = [ext.items[ext.indptr[u]:ext.indptr[u + 1]].tolist() for u in range(4)]
    assert got == [[1, 2, 4], [5, 6], [3], [7]]


def test_gru4rec_finetune_extends_history() -> None:
    old, new = _split()
    m = GRU4Rec(n_factors=8, hidden_size=8, epochs=2, batch_size=16, random_state=0,
                patience=None).fit(old)
    out = finetune(m, new, _cfg(epochs=2))
    user = new.user_map.decode(new.user[:1])[0]
    assert len(out.user_history(user)) >= len(m.user_history(user))
    if len(m.user_history(user)):
        hist = out.user_history(user)
        assert hist[: len(m.user_history(user))].tolist() == m.user_history(user).tolist()
    ids, _ = out.recommend([user], k=3)
    assert ids.shape == (1, 3)
