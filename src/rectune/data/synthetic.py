"""A MovieLens-shaped synthetic data set whose right answer is known.

Why: tests and benchmarks need data with the *shape* of MovieLens (demographics,
titles, multi-valued genres, Zipf popularity, heavy-tailed activity, bursts of
timestamps, ratings 1..5) at any size up to ML-25M, and with knobs that real data
lacks: how much side features explain, how fast tastes drift, and how related two
item domains are (to provoke positive or negative transfer on purpose).

The generative model (on the 1..5 scale; other scales are an affine map of it)::

    r_ui = clip(round(mu + b_u^d + b_i + (p_u^d + m(t) * g_u^d) . q_i + eps), scale)

* ``q_i = s_q (sqrt(a) * genre_year_i + sqrt(1 - a) * e_i)``: item factors are partly
  a function of the item's genres and year (``a = genre_signal``), so item side
  features carry signal;
* ``p_u = s_p (sqrt(b) * demo_u + sqrt(1 - b) * e_u)`` and the bias ``b_u`` likewise
  (``b = demographic_signal``), so cold start from demographics is learnable;
* ``m(t) = 2 tau - 1`` with ``tau`` the event's position in the time span, and
  ``g_u`` a per-user drift vector (a shared direction plus a personal one) of norm
  ``drift * s_p * sqrt(k)``: tastes move over time, so temporal splits see a shift;
* ``d`` is the item's domain. With ``second_domain=True`` a user's domain-1
  parameters are ``c * x_u + sqrt(1 - c^2) * x'_u`` with ``x'`` independent of
  ``x`` and of demographics (``c = domain_correlation``) for the factors, the bias
  and the drift, so at ``c = 0`` the domains share nothing but the users' ids;
* ``b_i`` correlates with popularity (popular movies are rated higher, as in ML);
  ``eps ~ N(0, noise^2)``.

Which pairs are rated: each user rates a heavy-tailed number of distinct items
(at least ``min_user_ratings`` when feasible), drawn by successive sampling
without replacement from a Zipf-like popularity law (a Zipf-Mandelbrot head with
a geometric tail, which traces ML's rank curve). The sampler is vectorised: it
draws a calibrated surplus of items with replacement for all users at once,
keeps first occurrences of each (user, item) key (exactly successive sampling),
tops up the few users left short, and finishes stragglers with exact
exponential-key sampling. Timestamps follow user sessions: most users rate in one
sitting, a minority over weeks, with a diurnal hour-of-day profile.

Rows are grouped by user (ascending id) and sorted by time within a user; sort by
``timestamp`` for temporal work. The same arguments give the same data on every
machine (independent ``SeedSequence`` streams per stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rectune._errors import DataError
from rectune.data.dataset import Dataset
from rectune.data.idmap import IdMap
from rectune.data.interactions import Interactions

__all__ = ["GENRES", "OCCUPATIONS", "SyntheticTruth", "default_sizes", "synthetic",
           "synthetic_truth"]

# --- MovieLens 100K marginals (statistics of u.user / u.item / u.data) ---------------
#: The 19 ML-100K genres, in the file's order.
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
_GENRE_FREQ = np.array([0.0012, 0.149, 0.080, 0.025, 0.073, 0.300, 0.065, 0.030, 0.431,
                        0.013, 0.014, 0.055, 0.033, 0.036, 0.147, 0.060, 0.149, 0.042, 0.016])
_N_GENRES_P = np.array([0.50, 0.36, 0.14])  # items with 1, 2, 3 genres
#: ML-100K's 21 occupations with their share of users.
OCCUPATIONS: dict[str, float] = {
    "student": 0.2078, "other": 0.1113, "educator": 0.1007, "administrator": 0.0838,
    "engineer": 0.0710, "programmer": 0.0700, "librarian": 0.0541, "writer": 0.0477,
    "executive": 0.0339, "scientist": 0.0329, "artist": 0.0297, "technician": 0.0286,
    "marketing": 0.0276, "entertainment": 0.0191, "healthcare": 0.0170, "retired": 0.0148,
    "lawyer": 0.0127, "salesman": 0.0127, "none": 0.0095, "homemaker": 0.0074,
    "doctor": 0.0074,
}
_AGE_EDGES = np.array([7, 18, 25, 35, 45, 50, 56, 74])
_AGE_P = np.array([0.038, 0.210, 0.329, 0.206, 0.085, 0.077, 0.055])
_HOUR_P = np.array([0.052, 0.051, 0.046, 0.049, 0.042, 0.042, 0.035, 0.015, 0.011, 0.020,
                    0.012, 0.006, 0.010, 0.017, 0.031, 0.031, 0.054, 0.063, 0.068, 0.071,
                    0.063, 0.082, 0.072, 0.057])
# (n_ratings, n_users, n_items) of ML-100K, 1M, 10M and 25M: default sizes interpolate
# these in log-log space.
_ANCHORS = np.array([[1e5, 943, 1682], [1e6, 6040, 3706], [1e7, 69878, 10677],
                     [2.5e7, 162541, 59047]])
_DAY = 86_400


@dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """The parameters that generated a synthetic data set (index = id - 1).

    Domain-indexed arrays have a leading axis of length 1 (one domain) or 2. A
    user's factors at time fraction ``tau`` in domain ``d`` are
    ``user_factors[d, u] + (2 * tau - 1) * user_drift[d, u]``.
    """

    global_mean: float
    user_bias: np.ndarray          # (n_domains, n_users)
    user_factors: np.ndarray       # (n_domains, n_users, k)
    user_drift: np.ndarray         # (n_domains, n_users, k)
    item_bias: np.ndarray          # (n_items,)
    item_factors: np.ndarray       # (n_items, k)
    item_popularity: np.ndarray    # (n_items,) sampling probabilities
    item_domain: np.ndarray        # (n_items,) int8
    user_features: pd.DataFrame
    item_features: pd.DataFrame


@dataclass(frozen=True)
class _Config:
    """The validated arguments of :func:`synthetic` (``start`` as epoch seconds)."""

    n_ratings: int
    n_users: int
    n_items: int
    n_factors: int
    noise: float
    rating_scale: tuple[float, float]
    rating_step: float | None
    seed: int
    drift: float
    second_domain: bool
    domain_correlation: float
    domain_fraction: float
    start: int
    span_days: int
    popularity_exponent: float
    popularity_decay: float
    min_user_ratings: int
    max_user_fraction: float
    activity_sigma: float
    genre_signal: float
    demographic_signal: float
    global_mean: float
    user_bias_std: float
    item_bias_std: float
    interaction_std: float
    popularity_bias_corr: float


def default_sizes(n_ratings: int) -> tuple[int, int]:
    """MovieLens-like ``(n_users, n_items)`` for ``n_ratings`` (log-log interpolation).

    Exact at the ML anchors: 100K -> (943, 1682), 1M -> (6040, 3706),
    10M -> (69878, 10677), 25M -> (162541, 59047); end slopes extrapolate.
    """
    x = np.log(_ANCHORS[:, 0])
    lx = math.log(max(n_ratings, 1))
    out = []
    for col in (1, 2):
        y = np.log(_ANCHORS[:, col])
        j = int(np.clip(np.searchsorted(x, lx) - 1, 0, len(x) - 2))
        slope = (y[j + 1] - y[j]) / (x[j + 1] - x[j])
        out.append(max(1, round(math.exp(y[j] + slope * (lx - x[j])))))
    return out[0], out[1]


def _is_count(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool) and int(v) >= 1


def _config(kw: dict[str, Any]) -> _Config:
    """Validate the arguments once, naming the bad one; fill in default sizes."""
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise DataError(f"synthetic(): {msg}")

    n = kw["n_ratings"]
    need(_is_count(n), f"n_ratings must be a positive integer, not {n!r}")
    du, di = default_sizes(int(n))
    kw["n_users"] = du if kw["n_users"] is None else kw["n_users"]
    kw["n_items"] = di if kw["n_items"] is None else kw["n_items"]
    for name in ("n_users", "n_items", "n_factors", "span_days", "min_user_ratings"):
        need(_is_count(kw[name]), f"{name} must be a positive integer, not {kw[name]!r}")
    seed = kw["seed"]
    need(bool(isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0),
         f"seed must be a non-negative integer, not {seed!r}")
    cells = int(kw["n_users"]) * int(kw["n_items"])
    need(n <= cells, f"n_ratings={n} exceeds n_users * n_items = {cells}")
    lo, hi = (float(v) for v in kw["rating_scale"])
    need(lo < hi, f"rating_scale must be (low, high) with low < high, not {kw['rating_scale']}")
    kw["rating_scale"] = (lo, hi)
    step = kw["rating_step"]
    need(step is None or step > 0, f"rating_step must be positive or None, not {step!r}")
    for name in ("noise", "drift", "user_bias_std", "item_bias_std", "interaction_std",
                 "popularity_exponent", "popularity_decay", "activity_sigma"):
        need(kw[name] >= 0, f"{name} must be >= 0, not {kw[name]!r}")
    for name in ("domain_correlation", "genre_signal", "demographic_signal",
                 "domain_fraction", "max_user_fraction"):
        need(0 <= kw[name] <= 1, f"{name} must lie in [0, 1], not {kw[name]!r}")
    need(-1 <= kw["popularity_bias_corr"] <= 1, "popularity_bias_corr must lie in [-1, 1]")
    try:
        ts = pd.Timestamp(kw["start"])
    except (ValueError, TypeError) as exc:
        raise DataError(f"synthetic(): cannot read start={kw['start']!r} as a date: {exc}"
                        ) from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    kw["start"] = int(ts.timestamp())
    return _Config(**kw)


# --- side features and true parameters ---------------------------------------------
def _users(cfg: _Config, rng: np.random.Generator) -> pd.DataFrame:
    n = cfg.n_users
    band = rng.choice(len(_AGE_P), size=n, p=_AGE_P / _AGE_P.sum())
    age = rng.integers(_AGE_EDGES[band], _AGE_EDGES[band + 1])
    gender = np.where(rng.random(n) < 0.71, "M", "F")
    occ_p = np.array(list(OCCUPATIONS.values()))
    occ = np.array(list(OCCUPATIONS), dtype=object)[
        rng.choice(len(occ_p), size=n, p=occ_p / occ_p.sum())]
    zips = pd.Series(rng.integers(0, 100_000, size=n)).astype(str).str.zfill(5)
    return pd.DataFrame(
        {"age": age.astype(np.int64), "gender": gender.astype(object),
         "occupation": occ, "zip": zips.to_numpy(dtype=object)},
        index=pd.Index(np.arange(1, n + 1, dtype=np.int64), name="user"),
    )


def _items(cfg: _Config, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Item table and its genre incidence matrix (n_items x 19, bool)."""
    n = cfg.n_items
    start_year = pd.Timestamp(cfg.start, unit="s").year
    # ~60% recent releases (geometric age), the rest an older catalogue (ML's shape)
    recent = rng.random(n) < 0.6
    age = np.where(recent, rng.geometric(0.45, size=n) - 1,
                   np.minimum(rng.exponential(14.0, size=n) + 3, 75)).astype(np.int64)
    year = start_year + 1 - age
    # genres: 1-3 distinct per item by weighted sampling without replacement (Gumbel top-k)
    w = _GENRE_FREQ[1:] ** 1.15
    keys = np.log(w)[None, :] + rng.gumbel(size=(n, len(w)))
    order = np.argsort(-keys, axis=1)
    n_gen = rng.choice(3, size=n, p=_N_GENRES_P) + 1
    inc = np.zeros((n, len(GENRES)), dtype=bool)
    rows = np.repeat(np.arange(n), n_gen)
    ranks = np.arange(len(rows)) - np.repeat(np.cumsum(n_gen) - n_gen, n_gen)
    inc[rows, order[rows, ranks] + 1] = True
    unknown = rng.random(n) < _GENRE_FREQ[0]
    inc[unknown] = False
    inc[unknown, 0] = True
    r, g = np.nonzero(inc)  # row-major: grouped by item, genres in ML order
    names = np.array(GENRES, dtype=object)[g]
    genres = [list(x) for x in np.split(names, np.cumsum(np.bincount(r, minlength=n))[:-1])]
    ids = np.arange(1, n + 1, dtype=np.int64)
    title = ("Synthetic movie " + pd.Series(ids).astype(str) + " ("
             + pd.Series(year).astype(str) + ")")
    df = pd.DataFrame({"title": title.to_numpy(dtype=object), "year": year,
                       "genres": pd.Series(genres, dtype=object).to_numpy()},
                      index=pd.Index(ids, name="item"))
    return df, inc


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def _demographic_part(users: pd.DataFrame, k: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """A random map demographics -> (factor part ``(n, k)``, bias part ``(n,)``), unit scale."""
    age_z = _zscore(users["age"].to_numpy(dtype=np.float64))
    g = (users["gender"].to_numpy() == "F").astype(np.int64)
    occ = pd.Categorical(users["occupation"], categories=list(OCCUPATIONS)).codes
    vec = (age_z[:, None] * rng.normal(size=k) + rng.normal(size=(2, k))[g]
           + rng.normal(size=(len(OCCUPATIONS), k))[occ]) / math.sqrt(3)
    beta = rng.normal(size=3 + len(OCCUPATIONS))
    bias = (age_z * beta[0] + beta[1:3][g] + beta[3:][occ]) / math.sqrt(3)
    return vec, bias


def _user_domain(users: pd.DataFrame, cfg: _Config, rng: np.random.Generator,
                 demographic: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One domain's (bias, factors, drift) for every user, before cross-domain mixing.

    ``demographic=False`` draws the independent part ``x'`` of a second domain: it
    must not depend on demographics, because two random functions of the same
    gender and age are perfectly (anti-)correlated across users, and would make
    the domains related even at ``domain_correlation=0``.
    """
    n, k = cfg.n_users, cfg.n_factors
    b = cfg.demographic_signal if demographic else 0.0
    s_p = math.sqrt(cfg.interaction_std / math.sqrt(k))
    vec, bias = _demographic_part(users, k, rng)
    p = s_p * (math.sqrt(b) * vec + math.sqrt(1 - b) * rng.normal(size=(n, k)))
    bu = cfg.user_bias_std * (math.sqrt(b) * bias + math.sqrt(1 - b) * rng.normal(size=n))
    shared = rng.normal(size=k)
    direction = shared / np.linalg.norm(shared) + rng.normal(size=(n, k)) / math.sqrt(k)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return bu, p, direction * (cfg.drift * s_p * math.sqrt(k))


def _truth(cfg: _Config, rng: np.random.Generator) -> SyntheticTruth:
    users = _users(cfg, rng)
    items, inc = _items(cfg, rng)
    k, n_items = cfg.n_factors, cfg.n_items
    s_q = math.sqrt(cfg.interaction_std / math.sqrt(k))
    genre_vec = rng.normal(size=(len(GENRES), k))
    year_z = _zscore(items["year"].to_numpy(dtype=np.float64))
    structured = (math.sqrt(0.8) * (inc @ genre_vec) / np.sqrt(inc.sum(1))[:, None]
                  + math.sqrt(0.2) * year_z[:, None] * rng.normal(size=k))
    a = cfg.genre_signal
    q = s_q * (math.sqrt(a) * structured + math.sqrt(1 - a) * rng.normal(size=(n_items, k)))
    # popularity over a random ranking r = 0..n-1 of the items: a Zipf-Mandelbrot head
    # with an exponential cut-off, (r + 1 + n/200)^-alpha * exp(-decay * r / n), which
    # traces ML's rank curve (flat top, geometric tail of rarely rated items)
    rank = rng.permutation(n_items).astype(np.float64)
    pop = ((rank + 1.0 + n_items / 200) ** -cfg.popularity_exponent
           * np.exp(-cfg.popularity_decay * rank / n_items))
    pop /= pop.sum()
    rho = cfg.popularity_bias_corr
    bi = cfg.item_bias_std * (rho * _zscore(np.log(pop))
                              + math.sqrt(1 - rho**2) * rng.normal(size=n_items))
    bi -= bi @ pop  # centred where ratings fall, so the observed mean stays near mu at any size
    domain = np.zeros(n_items, dtype=np.int8)
    doms: list[tuple[np.ndarray, ...]] = [_user_domain(users, cfg, rng)]
    if cfg.second_domain:
        domain = (rng.random(n_items) < cfg.domain_fraction).astype(np.int8)
        other = _user_domain(users, cfg, rng, demographic=False)
        c, s = cfg.domain_correlation, math.sqrt(max(0.0, 1 - cfg.domain_correlation**2))
        doms.append(tuple(c * x + s * y for x, y in zip(doms[0], other, strict=True)))
        items = items.assign(domain=domain)
    return SyntheticTruth(
        global_mean=cfg.global_mean,
        user_bias=np.stack([d[0] for d in doms]), user_factors=np.stack([d[1] for d in doms]),
        user_drift=np.stack([d[2] for d in doms]), item_bias=bi, item_factors=q,
        item_popularity=pop, item_domain=domain, user_features=users, item_features=items,
    )


# --- who rates what ----------------------------------------------------------------
def _user_counts(cfg: _Config, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed ratings per user: a floor plus a lognormal share of the rest."""
    n, total = cfg.n_users, cfg.n_ratings
    cap = min(cfg.n_items, max(math.ceil(cfg.max_user_fraction * cfg.n_items),
                               math.ceil(total / n)))
    floor = max(0, min(cfg.min_user_ratings, total // n, cap))
    w = rng.lognormal(0.0, cfg.activity_sigma, size=n)
    counts = floor + rng.multinomial(total - floor * n, w / w.sum())
    while (counts > cap).any():  # hand the overflow of capped users to the others
        over = int(np.maximum(counts - cap, 0).sum())
        counts = np.minimum(counts, cap)
        room = (counts < cap) * w
        counts += rng.multinomial(over, room / room.sum())
    return counts.astype(np.int64)


def _draws_needed(p: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Draws with replacement that yield ``need`` distinct items in expectation.

    E[distinct after m draws] = sum_i 1 - (1 - p_i)^m, tabulated on a log grid
    of m and inverted by interpolation (monotone in m).
    """
    grid = np.unique(np.geomspace(1, max(2.0, 40.0 * need.max() + 100), 96).round())
    log1mp = np.log1p(-np.minimum(p, 1 - 1e-12))
    distinct = np.array([len(p) - np.exp(m * log1mp).sum() for m in grid])
    return np.ceil(np.interp(need, distinct, grid)).astype(np.int64)


def _alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table: O(1) draws from ``p`` (binary search costs ~16 cache misses).

    Building it is one O(n_items) pass (a loop over items, never over ratings).
    """
    n = len(p)
    q = (p * (n / p.sum())).tolist()
    prob = [1.0] * n
    alias = list(range(n))
    small = [j for j in range(n) if q[j] < 1.0]
    large = [j for j in range(n) if q[j] >= 1.0]
    while small and large:
        s, big = small.pop(), large[-1]
        prob[s], alias[s] = q[s], big
        q[big] -= 1.0 - q[s]
        if q[big] < 1.0:
            small.append(large.pop())
    return np.asarray(prob), np.asarray(alias, dtype=np.int64)


def _draw(table: tuple[np.ndarray, np.ndarray], size: int, rng: np.random.Generator
          ) -> np.ndarray:
    prob, alias = table
    x = rng.random(size) * len(prob)
    j = x.astype(np.int64)
    return np.where(x - j < prob[j], j, alias[j])


def _packed_sort(cols: list[np.ndarray], sizes: list[int]) -> list[np.ndarray]:
    """Rows sorted lexicographically by ``cols`` (first = major), returned column-wise.

    When the columns fit in 63 bits together (they do up to ML-25M sizes) they are
    packed into one int64 and sorted with ``np.sort``, ~2x faster than an argsort
    followed by gathers; otherwise ``np.lexsort``.
    """
    bits = [max(1, int(sz - 1).bit_length()) for sz in sizes]
    if sum(bits) > 63:
        order = np.lexsort(cols[::-1])
        return [c[order] for c in cols]
    packed = np.zeros(len(cols[0]), dtype=np.int64)
    for c, b in zip(cols, bits, strict=True):
        packed <<= b
        packed |= c
    packed.sort()
    out = []
    for b in bits[::-1]:
        out.append(packed & ((1 << b) - 1))
        packed >>= b
    return out[::-1]


def _first_seen(key: np.ndarray, n_keys: int) -> np.ndarray:
    """Mask of the first occurrence of each value of ``key`` (one sort, no hashing)."""
    pos = np.arange(len(key), dtype=np.int64)
    skey, spos = _packed_sort([key, pos], [n_keys, len(key)])
    first = np.ones(len(key), dtype=bool)
    first[1:] = skey[1:] != skey[:-1]
    out = np.zeros(len(key), dtype=bool)
    out[spos[first]] = True
    return out


def _pairs(counts: np.ndarray, p: np.ndarray, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs, ``counts[u]`` per user, by successive popularity sampling.

    Successive sampling = keep the first occurrence of each item in a stream of
    i.i.d. popularity draws, so drawing a surplus for all users at once and keeping
    first occurrences is exact; later rounds append to each user's stream.
    """
    n_users, n_items = len(counts), len(p)
    table = _alias_table(p)
    users = np.arange(n_users, dtype=np.int64)
    need = counts.copy()
    got_u: list[np.ndarray] = []
    got_i: list[np.ndarray] = []
    for round_ in range(4):
        todo = np.flatnonzero(need > 0)
        if len(todo) == 0:
            break
        if round_ == 0:
            m = np.minimum((_draws_needed(p, need[todo]) * 1.03).astype(np.int64) + 4,
                           20 * need[todo] + 100)
            old_u = old_i = np.empty(0, dtype=np.int64)
        else:
            old_u, old_i = np.concatenate(got_u), np.concatenate(got_i)
            keep = need[old_u] > 0
            old_u, old_i = old_u[keep], old_i[keep]
            left = 1.0 - np.bincount(old_u, weights=p[old_i], minlength=n_users)[todo]
            m = np.minimum(np.ceil(1.3 * need[todo] / np.maximum(left, 1e-9)) + 8,
                           20 * need[todo] + 100).astype(np.int64)
        su = np.repeat(users[todo], m)
        si = _draw(table, len(su), rng)
        fresh = _first_seen(np.concatenate([old_u * n_items + old_i, su * n_items + si]),
                            n_users * n_items)[len(old_u):]
        # rank of each fresh draw within its user's stream (streams are contiguous)
        cs = np.cumsum(fresh)
        start = np.cumsum(m) - m
        rank = cs - np.repeat(np.where(start > 0, cs[np.maximum(start - 1, 0)], 0), m)
        take = fresh & (rank <= np.repeat(need[todo], m))
        got_u.append(su[take])
        got_i.append(si[take])
        need -= np.bincount(su[take], minlength=n_users)
    todo = np.flatnonzero(need > 0)
    if len(todo):  # stragglers: exact exponential-key sampling among their unseen items
        prev_u, prev_i = np.concatenate(got_u), np.concatenate(got_i)
        chunk = max(1, 20_000_000 // n_items)
        for s in range(0, len(todo), chunk):
            block = todo[s:s + chunk]
            keys = rng.exponential(size=(len(block), n_items)) / p[None, :]
            pos = np.full(n_users, -1, dtype=np.int64)
            pos[block] = np.arange(len(block))
            mask = pos[prev_u] >= 0
            keys[pos[prev_u[mask]], prev_i[mask]] = np.inf
            order = np.argsort(keys, axis=1)
            rr, cc = np.nonzero(np.arange(n_items)[None, :] < need[block][:, None])
            got_u.append(block[rr])
            got_i.append(order[rr, cc])
    return np.concatenate(got_u), np.concatenate(got_i)


def _times(u: np.ndarray, cfg: _Config, rng: np.random.Generator) -> np.ndarray:
    """Epoch seconds: most users rate in one session, a minority over weeks or months."""
    n, span = cfg.n_users, float(cfg.span_days)
    begin = rng.random(n) * span
    session = rng.random(n) < 0.55
    window = np.where(session, rng.exponential(0.04, size=n),
                      (span - begin) * rng.beta(0.6, 1.5, size=n))
    day_pos = begin[u] + np.minimum(window[u], span - begin[u]) * rng.random(len(u))
    day = np.minimum(np.floor(day_pos), cfg.span_days - 1).astype(np.int64)
    # keep the within-day position for one-session users (their events stay together);
    # spread the others' events over the day with the diurnal profile of ML-100K
    hour = rng.choice(24, size=len(u), p=_HOUR_P / _HOUR_P.sum())
    diurnal = hour * 3600 + rng.integers(0, 3600, size=len(u))
    frac = ((day_pos - np.floor(day_pos)) * _DAY).astype(np.int64)
    sec = np.where(session[u], frac, diurnal)
    return cfg.start + day * _DAY + np.minimum(sec, _DAY - 1)


def _ratings(u: np.ndarray, i: np.ndarray, t: np.ndarray, truth: SyntheticTruth,
             cfg: _Config, rng: np.random.Generator) -> np.ndarray:
    """The latent-factor model, in chunks so 25M ratings never materialise (n, k) arrays."""
    n_dom = truth.user_factors.shape[0]
    k = cfg.n_factors
    pu = truth.user_factors.reshape(n_dom * cfg.n_users, k)
    gu = truth.user_drift.reshape(n_dom * cfg.n_users, k)
    bu = truth.user_bias.reshape(-1)
    out = np.empty(len(u), dtype=np.float32)
    span = float(cfg.span_days * _DAY)
    lo, hi = cfg.rating_scale
    chunk = 1 << 20
    for s in range(0, len(u), chunk):
        uu = u[s:s + chunk] + cfg.n_users * truth.item_domain[i[s:s + chunk]].astype(np.int64)
        ii = i[s:s + chunk]
        qi = truth.item_factors[ii]
        m = 2.0 * (t[s:s + chunk] - cfg.start) / span - 1.0
        x = (cfg.global_mean + bu[uu] + truth.item_bias[ii] + np.einsum("ij,ij->i", pu[uu], qi)
             + m * np.einsum("ij,ij->i", gu[uu], qi) + cfg.noise * rng.normal(size=len(ii)))
        x = lo + (x - 1.0) * (hi - lo) / 4.0
        if cfg.rating_step is not None:
            x = lo + np.round((x - lo) / cfg.rating_step) * cfg.rating_step
        out[s:s + chunk] = np.clip(x, lo, hi)
    return out


# --- public entry points -----------------------------------------------------------
def synthetic(
    n_ratings: int = 100_000,
    *,
    n_users: int | None = None,
    n_items: int | None = None,
    n_factors: int = 8,
    noise: float = 0.5,
    rating_scale: tuple[float, float] = (1, 5),
    rating_step: float | None = 1.0,
    seed: int = 0,
    drift: float = 0.1,
    second_domain: bool = False,
    domain_correlation: float = 1.0,
    domain_fraction: float = 0.5,
    start: str | int | pd.Timestamp = "1997-09-20",
    span_days: int = 215,
    popularity_exponent: float = 0.3,
    popularity_decay: float = 5.0,
    min_user_ratings: int = 20,
    max_user_fraction: float = 0.6,
    activity_sigma: float = 1.0,
    genre_signal: float = 0.6,
    demographic_signal: float = 0.5,
    global_mean: float = 3.5,
    user_bias_std: float = 0.5,
    item_bias_std: float = 0.6,
    interaction_std: float = 0.6,
    popularity_bias_corr: float = 0.5,
) -> Dataset:
    """Generate a MovieLens-shaped explicit-rating :class:`Dataset` (see module docs).

    Parameters
    ----------
    n_ratings:
        Exact number of distinct (user, item) ratings.
    n_users, n_items:
        Default to MovieLens-like sizes for ``n_ratings`` (:func:`default_sizes`).
    n_factors, noise:
        Latent dimension ``k`` and the std of the Gaussian rating noise (1..5 scale).
    rating_scale, rating_step:
        Output scale (the 1..5 model is mapped affinely onto it) and the rounding
        step (``None`` keeps continuous values).
    drift:
        Norm of a user's taste displacement between mid-span and either end, as a
        fraction of the typical factor norm; 0 disables drift.
    second_domain, domain_correlation, domain_fraction:
        Split items into domains 0/1 (``domain_fraction`` in domain 1). A user's
        domain-1 bias, factors and drift are ``c x + sqrt(1 - c^2) x'``.
    start, span_days:
        First day (UTC) and length of the period the timestamps cover.
    popularity_exponent, popularity_decay:
        Item popularity at random rank ``r`` is ``(r + 1 + n/200)^-exponent *
        exp(-decay * r / n)``: a Zipf head with a geometric tail (both 0 = uniform).
    min_user_ratings, max_user_fraction, activity_sigma:
        Floor of ratings per user (when ``n_ratings >= floor * n_users``), cap as a
        share of the catalogue, and the lognormal sigma of the activity tail.
    genre_signal, demographic_signal:
        Share of item (user) factor variance explained by genres and year
        (demographics); 0 makes side features useless, 1 makes them sufficient.
    global_mean, user_bias_std, item_bias_std, interaction_std, popularity_bias_corr:
        Scale of the model terms; ``interaction_std`` is the std of ``p . q``.

    Returns
    -------
    Dataset
        ``interactions``: explicit, int raw ids ``1..n`` (ascending maps over *all*
        users and items, so unrated items are still in the catalogue), int64 epoch
        seconds; ``user_features`` (age, gender, occupation, zip) and
        ``item_features`` (title, year, genres as lists, and ``domain`` with
        ``second_domain``) indexed by raw id; ``info`` holds JSON scalars only.
        Use :func:`synthetic_truth` with the same arguments for the true parameters.
    """
    cfg = _config(dict(locals()))
    s_truth, s_count, s_pick, s_time, s_noise = np.random.SeedSequence(cfg.seed).spawn(5)
    truth = _truth(cfg, np.random.default_rng(s_truth))
    counts = _user_counts(cfg, np.random.default_rng(s_count))
    u, i = _pairs(counts, truth.item_popularity, np.random.default_rng(s_pick))
    t = _times(u, cfg, np.random.default_rng(s_time))
    u, dt, i = _packed_sort([u, t - cfg.start, i], [cfg.n_users, cfg.span_days * _DAY, cfg.n_items])
    t = dt + cfg.start
    del dt
    r = _ratings(u, i, t, truth, cfg, np.random.default_rng(s_noise))
    inter = Interactions.from_indices(
        u, i, r, IdMap(np.arange(1, cfg.n_users + 1, dtype=np.int64)),
        IdMap(np.arange(1, cfg.n_items + 1, dtype=np.int64)), timestamp=t,
        kind="explicit", rating_scale=(cfg.rating_scale[0], cfg.rating_scale[1]),
    )
    info: dict[str, Any] = {
        "synthetic": True, "generator": "rectune.data.synthetic", "seed": cfg.seed,
        "n_ratings": cfg.n_ratings, "n_users": cfg.n_users, "n_items": cfg.n_items,
        "n_factors": cfg.n_factors, "noise": cfg.noise, "drift": cfg.drift,
        "second_domain": cfg.second_domain, "domain_correlation": cfg.domain_correlation,
        "start": cfg.start, "span_days": cfg.span_days,
    }
    return Dataset("synthetic", inter, truth.user_features, truth.item_features, {}, info)


def synthetic_truth(n_ratings: int = 100_000, **kwargs: Any) -> SyntheticTruth:
    """The true parameters behind ``synthetic(n_ratings, **kwargs)``, without its ratings.

    Cheap: the parameters come from their own random stream, so this draws only
    them (no pair sampling), and matches the data set generated with the same
    arguments exactly.
    """
    import inspect

    params = inspect.signature(synthetic).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise DataError(f"synthetic_truth(): unknown argument(s) {unknown}")
    kw = {name: p.default for name, p in params.items()}
    kw.update(kwargs, n_ratings=n_ratings)
    cfg = _config(kw)
    return _truth(cfg, np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(5)[0]))
