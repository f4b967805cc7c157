"""Bootstrap intervals and paired tests: coverage, power and null behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from rectune import DataError
from rectune.evaluate import bootstrap_ci, paired_test


def test_bootstrap_ci_basics() -> None:
    x = np.array([1.0, 2.0, 3.0, np.nan, 4.0])
    ci = bootstrap_ci(x, n_boot=2000, seed=1)
    assert ci.mean == pytest.approx(2.5)  # NaN dropped
    assert 1.0 <= ci.lo < 2.5 < ci.hi <= 4.0
    assert bootstrap_ci(x, n_boot=2000, seed=1) == ci  # deterministic for a seed
    m, lo, hi = bootstrap_ci([3.0], n_boot=10)  # a single value: a degenerate interval
    assert m == lo == hi == 3.0
    with pytest.raises(DataError, match="no non-NaN value"):
        bootstrap_ci([np.nan, np.nan])
    with pytest.raises(DataError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)


def test_bootstrap_ci_coverage() -> None:
    """A 95% interval should contain the true mean in most of 50 independent samples."""
    true_mean = 0.3  # Bernoulli(0.3), like a per-user hit rate
    hits = 0
    for seed in range(50):
        x = (np.random.default_rng(100 + seed).random(300) < true_mean).astype(float)
        _, lo, hi = bootstrap_ci(x, n_boot=400, seed=seed)
        hits += lo <= true_mean <= hi
    assert 42 <= hits <= 50  # expected ≈ 47.5; a broken interval (too narrow/wide) fails


def test_bootstrap_ci_width_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(size=100), n_boot=500)
    large = bootstrap_ci(rng.normal(size=10000), n_boot=500)
    assert (large.hi - large.lo) < (small.hi - small.lo) / 5  # ≈ 1/√100 = 1/10


@pytest.mark.parametrize("method", ["bootstrap", "permutation", "t", "wilcoxon"])
def test_paired_test_detects_real_difference(method: str) -> None:
    rng = np.random.default_rng(5)
    base = rng.random(400)
    a = base + 0.05 + rng.normal(0, 0.1, 400)  # A better by 0.05 on the same users
    b = base + rng.normal(0, 0.1, 400)
    a[7] = np.nan  # user 7 not evaluated for A: dropped from both
    res = paired_test(a, b, method=method, n_boot=2000)  # type: ignore[arg-type]
    assert res.n == 399
    assert res.p_value < 0.001 and res.significant
    assert 0.03 < res.mean_diff < 0.07
    assert res.ci_low < res.mean_diff < res.ci_high and res.ci_low > 0
    assert res.to_dict()["method"] == method


@pytest.mark.parametrize("method", ["bootstrap", "permutation", "t", "wilcoxon"])
def test_paired_test_null_rarely_rejects(method: str) -> None:
    rejections = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        base = rng.random(200)
        a = base + rng.normal(0, 0.1, 200)
        b = base + rng.normal(0, 0.1, 200)
        rejections += paired_test(a, b, method=method, n_boot=500, seed=seed).significant  # type: ignore[arg-type]
    assert rejections <= 4  # expected 1 of 20 at alpha = 0.05


def test_paired_t_matches_scipy_and_identical_inputs() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.random(50), rng.random(50)
    res = paired_test(a, b, method="t")
    assert res.p_value == pytest.approx(st.ttest_rel(a, b).pvalue)
    half = st.t.ppf(0.975, 49) * np.std(a - b, ddof=1) / np.sqrt(50)
    assert res.ci_high - res.ci_low == pytest.approx(2 * half)
    for method in ("bootstrap", "permutation", "t", "wilcoxon"):
        same = paired_test(a, a, method=method)
        assert same.p_value == 1.0 and same.mean_diff == 0.0


def test_paired_test_validation() -> None:
    with pytest.raises(DataError, match="same length"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(DataError, match="at least 2 users"):
        paired_test([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(DataError, match="method must be"):
        paired_test([1.0, 2.0], [2.0, 1.0], method="z")  # type: ignore[arg-type]
