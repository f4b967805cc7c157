"""The contract every rectune model passes (DESIGN.md "Model", STYLE.md "Tests").

Use it by subclassing :class:`ContractTests` in a test module::

    class TestSVD(ContractTests):
        def make_model(self):
            return SVD(n_factors=8, n_epochs=5, random_state=0)

Override ``make_data`` for models that need implicit data or features.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rectune import ModelFileError, NotFittedError
from rectune.data import Interactions
from rectune.models.base import Recommender


def small_ratings(seed: int = 0, n_users: int = 40, n_items: int = 30,
                  density: float = 0.3) -> Interactions:
    """A small explicit rating set with a latent structure (every user has >= 3 ratings)."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n_users, 3))
    q = rng.normal(size=(n_items, 3))
    mask = rng.random((n_users, n_items)) < density
    mask[:, :3] = True  # every user rated the first three items
    mask[0, :] = True  # user 1 rated everything (empty candidate list after exclusion)
    uu, ii = np.nonzero(mask)
    r = np.clip(np.round(3 + (p[uu] * q[ii]).sum(1) + rng.normal(0, 0.3, len(uu))), 1, 5)
    df = pd.DataFrame({"user": uu + 1, "item": ii + 101, "rating": r,
                       "timestamp": rng.integers(0, 10**6, len(uu))})
    return Interactions.from_frame(df, rating_scale=(1, 5))


class ContractTests:
    """Tests every model must pass. Subclasses define ``make_model``."""

    def make_model(self) -> Recommender:
        raise NotImplementedError

    def make_data(self) -> Interactions:
        return small_ratings()

    def fit_model(self, data: Interactions | None = None) -> Recommender:
        return self.make_model().fit(data if data is not None else self.make_data())

    # -- unfitted ------------------------------------------------------------
    def test_unfitted_raises(self) -> None:
        m = self.make_model()
        with pytest.raises(NotFittedError):
            m.predict([1], [101])
        with pytest.raises(NotFittedError):
            m.recommend([1], 5)
        with pytest.raises(NotFittedError):
            m.parameters()
        with pytest.raises(NotFittedError):
            m.save("/nonexistent-never-created")

    def test_constructor_does_no_work(self) -> None:
        m = self.make_model()
        assert not m.is_fitted
        assert m.clone().get_params() == m.get_params()
        json.dumps(m.get_params())  # hyper-parameters are JSON-safe

    # -- predictions -----------------------------------------------------------
    def test_predict_shape_and_finite(self) -> None:
        data = self.make_data()
        m = self.fit_model(data)
        users = data.user_map.decode(data.user[:50])
        items = data.item_map.decode(data.item[:50])
        p = m.predict(users, items)
        assert p.shape == (50,)
        assert np.all(np.isfinite(p))
        assert m.known(users, items).all()

    def test_unknown_ids_fall_back(self) -> None:
        data = self.make_data()
        m = self.fit_model(data)
        known_u = data.user_map.ids[0]
        known_i = data.item_map.ids[0]
        unknown_u = 10**9 if data.user_map.kind == "int" else "nobody"
        unknown_i = 10**9 if data.item_map.kind == "int" else "nothing"
        p = m.predict([unknown_u, known_u, unknown_u], [known_i, unknown_i, unknown_i])
        assert np.all(np.isfinite(p))
        assert not m.known([unknown_u, known_u, unknown_u], [known_i, unknown_i, unknown_i]).any()
        ids, scores = m.recommend([unknown_u], 5)
        assert ids.shape == (1, 5)
        assert np.all(np.isfinite(scores))

    def test_parameters_follow_naming(self) -> None:
        data = self.make_data()
        m = self.fit_model(data)
        params = m.parameters()
        assert params, "a fitted model exposes at least one parameter group"
        for name, arr in params.items():
            a = np.asarray(arr)
            if name.startswith("user_"):
                assert a.shape[0] == data.n_users, name
            if name.startswith("item_"):
                assert a.shape[0] == data.n_items, name

    # -- recommend -------------------------------------------------------------
    def test_recommend_excludes_seen_and_respects_candidates(self) -> None:
        data = self.make_data()
        m = self.fit_model(data)
        users = data.user_map.ids[:10]
        ids, scores = m.recommend(users, 5)
        assert ids.shape == (10, 5) and scores.shape == (10, 5)
        seen = data.csr()
        for row, u in enumerate(users):
            uidx = data.user_map.encode([u])[0]
            seen_items = set(data.item_map.decode(seen[[uidx]].indices))
            got = [x for x in ids[row] if x != -1 and x is not None]
            assert not seen_items & set(got)
            s = scores[row][np.isfinite(scores[row])]
            assert np.all(np.diff(s) <= 1e-12), "scores are sorted descending"
        cand = data.item_map.ids[-6:]
        ids, _ = m.recommend(users, 3, items=cand, exclude_seen=False)
        assert set(ids.ravel().tolist()) <= set(cand.tolist())

    def test_user_with_everything_seen_gets_padding(self) -> None:
        data = self.make_data()
        m = self.fit_model(data)
        u = int(np.argmax(data.user_counts()))
        seen = data.item_map.decode(data.csr()[[u]].indices)
        # candidates = the user's own history: after excluding seen items nothing is left
        ids, scores = m.recommend([data.user_map.ids[u]], 5, items=seen)
        assert np.all(ids == -1) and np.all(np.isnan(scores))

    def test_k_larger_than_catalogue(self) -> None:
        data = self.make_data()
        m = self.fit_model(data)
        k = data.n_items + 7
        ids, scores = m.recommend(data.user_map.ids[:3], k, exclude_seen=False)
        assert ids.shape == (3, k)
        assert np.all(ids[:, data.n_items:] == -1)
        assert np.isnan(scores[:, data.n_items:]).all()
        assert len(set(ids[0, : data.n_items].tolist())) == data.n_items

    def test_bad_k_raises(self) -> None:
        m = self.fit_model()
        with pytest.raises(ValueError):
            m.recommend([1], 0)

    # -- determinism and persistence -------------------------------------------
    def test_seeded_determinism(self) -> None:
        data = self.make_data()
        a = self.fit_model(data)
        b = self.fit_model(data)
        for k, v in a.parameters().items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(b.parameters()[k]), err_msg=k)

    def test_save_load_roundtrip(self, tmp_path: Path) -> None:
        data = self.make_data()
        m = self.fit_model(data)
        m.save(tmp_path / "m")
        m2 = Recommender.load(tmp_path / "m")
        assert type(m2) is type(m)
        assert m2.get_params() == m.get_params()
        users = data.user_map.decode(data.user[:100])
        items = data.item_map.decode(data.item[:100])
        np.testing.assert_array_equal(m.predict(users, items), m2.predict(users, items))
        ids1, s1 = m.recommend(data.user_map.ids[:5], 5)
        ids2, s2 = m2.recommend(data.user_map.ids[:5], 5)
        np.testing.assert_array_equal(ids1, ids2)
        np.testing.assert_array_equal(s1, s2)

    def test_saved_files_are_not_pickles(self, tmp_path: Path) -> None:
        m = self.fit_model()
        folder = m.save(tmp_path / "m")
        names = sorted(p.name for p in folder.iterdir())
        assert "config.json" in names and "arrays.safetensors" in names
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["rectune_version"] and cfg["class"].startswith("rectune.")
        for p in folder.iterdir():
            head = p.read_bytes()[:2]
            assert head != b"\x80\x04" and head[:1] != b"\x80", f"{p.name} looks like a pickle"
            assert not zipfile.is_zipfile(p) or p.suffix not in (".npy", ".pkl")

    def test_corrupt_model_file_is_refused(self, tmp_path: Path) -> None:
        m = self.fit_model()
        folder = m.save(tmp_path / "m")
        blob = bytearray((folder / "arrays.safetensors").read_bytes())
        blob[-1] ^= 0xFF
        (folder / "arrays.safetensors").write_bytes(bytes(blob))
        with pytest.raises(ModelFileError):
            Recommender.load(folder)

    def test_fit_rejects_non_interactions(self) -> None:
        m = self.make_model()
        bad: Any = pd.DataFrame({"user": [1], "item": [2], "rating": [3.0]})
        with pytest.raises(ValueError):
            m.fit(bad)
