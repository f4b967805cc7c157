"""Evaluation: metrics as pure functions over arrays.

Ranking (full ranking by default), rating errors, click metrics, beyond-accuracy
metrics and the statistics to compare models; protocols and reports build on these.
"""

from __future__ import annotations

from rectune.evaluate.beyond import (
    catalog_coverage,
    gini_index,
    intra_list_diversity,
    novelty,
    personalization,
    recommendation_counts,
)
from rectune.evaluate.clicks import auc, auc_per_user, gauc, log_loss
from rectune.evaluate.evaluator import (
    EvalResult,
    check_no_leak,
    evaluate_ranking,
    evaluate_ratings,
)
from rectune.evaluate.protocols import (
    ProtocolResult,
    cold_user,
    cross_validate,
    holdout,
    temporal,
)
from rectune.evaluate.ranking import (
    GLOBAL_METRICS,
    PER_USER_METRICS,
    hit_rate_at_k,
    map_at_k,
    mean,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    ranking_metrics_per_user,
    recall_at_k,
    topk_from_scores,
)
from rectune.evaluate.rating import mae, rmse, squared_errors
from rectune.evaluate.sampled import (
    SAMPLED_METRICS,
    sample_negatives,
    sampled_rank,
    sampled_ranking,
    sampled_ranking_per_case,
)
from rectune.evaluate.stats import (
    ConfidenceInterval,
    PairedTestResult,
    bootstrap_ci,
    paired_test,
)

__all__ = [
    "GLOBAL_METRICS",
    "PER_USER_METRICS",
    "SAMPLED_METRICS",
    "ConfidenceInterval",
    "EvalResult",
    "PairedTestResult",
    "ProtocolResult",
    "auc",
    "auc_per_user",
    "bootstrap_ci",
    "catalog_coverage",
    "check_no_leak",
    "cold_user",
    "cross_validate",
    "evaluate_ranking",
    "evaluate_ratings",
    "gauc",
    "gini_index",
    "hit_rate_at_k",
    "holdout",
    "intra_list_diversity",
    "log_loss",
    "mae",
    "map_at_k",
    "mean",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "paired_test",
    "personalization",
    "precision_at_k",
    "ranking_metrics",
    "ranking_metrics_per_user",
    "recall_at_k",
    "recommendation_counts",
    "rmse",
    "sample_negatives",
    "sampled_rank",
    "sampled_ranking",
    "sampled_ranking_per_case",
    "squared_errors",
    "temporal",
    "topk_from_scores",
]
