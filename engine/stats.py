"""Rank statistics for judging the conviction head: AUROC and Spearman correlation, ties given
their average rank (scipy.stats, which the scaling fit already needs; imported when first used,
at the final evaluation: it costs the engine's start-up 0.7 s otherwise)."""

from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half
    (the Mann-Whitney U statistic over n_pos * n_neg). NaN when one class is absent."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy import stats

    u = stats.mannwhitneyu(scores[labels], scores[~labels], alternative="two-sided", method="asymptotic").statistic
    return float(u / (n_pos * n_neg))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; NaN when either side is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    from scipy import stats

    return float(stats.spearmanr(a, b).statistic)
