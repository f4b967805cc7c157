"""Sequence batching: time order and ties, windows, targets, chunks, negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rectune import DataError
from rectune.data import Interactions
from rectune.data.split import leave_last_n
from rectune.models.neural.sequence import (
    PAD,
    KnownPairs,
    Sequences,
    right_align,
    sample_negatives,
)

torch.set_num_threads(1)


def hand_data() -> Interactions:
    """Three users; user "a" has a tie at t=20 (rows 1 and 3), row order decides."""
    df = pd.DataFrame({
        "user": ["a", "a", "b", "a", "a", "c", "b"],
        "item": [10, 11, 12, 13, 14, 15, 10],
        "rating": [1.0] * 7,
        "timestamp": [30, 20, 5, 20, 10, 1, 6],
    })
    return Interactions.from_frame(df)


def raw(data: Interactions, seqs: Sequences, user: str) -> list[int]:
    u = int(data.user_map.encode([user])[0])
    return data.item_map.decode(seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]]).tolist()


def test_time_order_with_ties_broken_by_row_order() -> None:
    data = hand_data()
    seqs = Sequences.from_interactions(data)
    # a: t=10 (14), t=20 row 1 (11), t=20 row 3 (13), t=30 (10)
    assert raw(data, seqs, "a") == [14, 11, 13, 10]
    assert raw(data, seqs, "b") == [12, 10]
    assert raw(data, seqs, "c") == [15]
    np.testing.assert_array_equal(seqs.lengths, data.user_counts())


def test_without_timestamps_row_order_is_time() -> None:
    data = hand_data()
    no_time = Interactions.from_indices(data.user, data.item, None, data.user_map,
                                        data.item_map)
    seqs = Sequences.from_interactions(no_time)
    assert raw(data, seqs, "a") == [10, 11, 13, 14]


def test_last_item_is_the_one_leave_last_n_holds_out() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({"user": rng.integers(0, 60, n), "item": rng.integers(0, 400, n),
                       "rating": 1.0, "timestamp": rng.integers(0, 5, n)})  # many ties
    data = Interactions.from_frame(df.drop_duplicates(["user", "item"]))
    split = leave_last_n(data, 1, short_users="drop")
    seqs = Sequences.from_interactions(data)
    last = seqs.items[seqs.indptr[1:][seqs.lengths > 0] - 1]
    users = np.flatnonzero(seqs.lengths > 0)
    held = dict(zip(split.test.user.tolist(), split.test.item.tolist(), strict=True))
    assert split.info["tied_at_cut"] > 0
    for u, i in zip(users.tolist(), last.tolist(), strict=True):
        if u in held:
            assert held[u] == i


def test_windows_targets_and_positions_by_hand() -> None:
    seqs = Sequences.from_lists([[4, 5, 6, 7], [8], [], [1, 2]])
    np.testing.assert_array_equal(
        seqs.last_windows(np.array([0, 1, 2, 3]), 3),
        [[5, 6, 7], [PAD, PAD, 8], [PAD, PAD, PAD], [PAD, 1, 2]])
    # positions: 0..3 user 0, 4 user 1, 5..6 user 3
    pos = seqs.target_positions(min_context=1)
    np.testing.assert_array_equal(pos, [1, 2, 3, 6])
    np.testing.assert_array_equal(
        seqs.windows_before(pos, 2), [[PAD, 4], [4, 5], [5, 6], [PAD, 1]])
    np.testing.assert_array_equal(
        seqs.targets_from(pos, 3), [[5, 6, 7], [6, 7, PAD], [7, PAD, PAD], [2, PAD, PAD]])
    np.testing.assert_array_equal(seqs.target_positions(min_context=2), [2, 3])


def test_chunks_cover_every_target_once_newest_with_longest_context() -> None:
    seqs = Sequences.from_lists([[0, 1, 2, 3, 4, 5, 6], [7], [8, 9]])
    ends = seqs.chunk_ends(3)
    np.testing.assert_array_equal(ends, [7, 4, 10])  # user 0: two chunks, user 2: one
    inputs, targets = seqs.chunks(ends, 3)
    np.testing.assert_array_equal(inputs, [[3, 4, 5], [0, 1, 2], [PAD, PAD, 8]])
    np.testing.assert_array_equal(targets, [[4, 5, 6], [1, 2, 3], [PAD, PAD, 9]])
    got = np.sort(targets[targets != PAD])
    np.testing.assert_array_equal(got, [1, 2, 3, 4, 5, 6, 9])  # each non-first item once
    with pytest.raises(DataError):
        seqs.chunk_ends(0)


def test_chunk_end_after_an_empty_user_maps_to_the_right_user() -> None:
    seqs = Sequences.from_lists([[1, 2], [], [3, 4]])
    ends = seqs.chunk_ends(5)
    inputs, targets = seqs.chunks(ends, 5)
    np.testing.assert_array_equal(inputs[:, -1], [1, 3])
    np.testing.assert_array_equal(targets[:, -1], [2, 4])


def test_right_align_keeps_order_and_shifts_others_alike() -> None:
    w = np.array([[PAD, PAD, 3, 4], [1, 2, 3, 4], [PAD, PAD, PAD, PAD]])
    t = np.array([[PAD, PAD, 4, 5], [2, 3, 4, 5], [PAD, PAD, PAD, PAD]])
    aligned, lens, (ta,) = right_align(w, t)
    np.testing.assert_array_equal(aligned, [[3, 4, PAD, PAD], [1, 2, 3, 4], [PAD] * 4])
    np.testing.assert_array_equal(ta, [[4, 5, PAD, PAD], [2, 3, 4, 5], [PAD] * 4])
    np.testing.assert_array_equal(lens, [2, 4, 0])


def test_sequences_validate_their_layout() -> None:
    with pytest.raises(DataError):
        Sequences(np.array([0, 3]), np.array([1, 2]))
    with pytest.raises(DataError):
        Sequences(np.array([0, 1]), np.array([-4]))
    sub = Sequences.from_lists([[1], [2, 3], [4]]).take_users(np.array([2, 1]))
    np.testing.assert_array_equal(sub.items, [4, 2, 3])
    np.testing.assert_array_equal(sub.indptr, [0, 1, 3])


def test_negatives_are_never_known_and_full_users_get_none() -> None:
    n_items = 12
    # user 0 knows 10 of 12 items, user 1 knows every item, user 2 knows one
    seqs = Sequences.from_lists([list(range(10)), list(range(12)), [5]])
    known = KnownPairs.from_sequences(seqs, n_items)
    users = np.array([0, 1, 2, 0, 2])
    neg, ok = sample_negatives(np.random.default_rng(0), users, 50, known)
    assert neg.shape == ok.shape == (5, 50)
    assert not known.contains(np.broadcast_to(users[:, None], neg.shape)[ok], neg[ok]).any()
    assert not ok[1].any() and ok[[0, 2, 3, 4]].all()
    assert set(neg[0].tolist()) <= {10, 11}
    again, _ = sample_negatives(np.random.default_rng(0), users, 50, known)
    np.testing.assert_array_equal(neg, again)  # seeded
    probs = np.zeros(n_items)
    probs[[5, 11]] = 0.5  # user 2 knows 5: only 11 remains
    neg_p, ok_p = sample_negatives(np.random.default_rng(1), np.array([2]), 20, known,
                                   probs=probs)
    assert ok_p.all() and set(neg_p.ravel().tolist()) == {11}


def test_known_pairs_membership() -> None:
    known = KnownPairs.from_sequences(Sequences.from_lists([[0, 2], [1]]), 3)
    got = known.contains(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 1, 2]))
    np.testing.assert_array_equal(got, [True, False, True, True, False])
    empty = KnownPairs.from_sequences(Sequences.from_lists([[], []]), 3)
    assert not empty.contains(np.array([0]), np.array([1])).any()
