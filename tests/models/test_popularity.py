from __future__ import annotations

import numpy as np

from rectune.models import Popularity
from tests.models.contract import ContractTests, small_ratings


class TestPopularityContract(ContractTests):
    def make_model(self) -> Popularity:
        return Popularity()


def test_popularity_ranks_by_count() -> None:
    data = small_ratings()
    m = Popularity().fit(data)
    counts = data.item_counts()
    ids, scores = m.recommend([10**9], 5)  # unknown user: plain popularity
    expect = data.item_map.decode(np.argsort(-counts, kind="stable")[:5])
    np.testing.assert_array_equal(ids[0], expect)
    np.testing.assert_array_equal(scores[0], np.sort(counts)[::-1][:5])
