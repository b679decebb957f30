"""Operating points chosen from per-class score histograms (privacy-preserving aggregates).

Sites share only per-class counts of scores in ``bins`` equal-width bins over [0, 1].
Candidate thresholds are the bin lower edges ``k / bins`` for ``k = 0 .. bins - 1``; a
case is predicted positive when ``score >= edge``. Since a bin never straddles an edge,
counts at each candidate are exact, so local and pooled choices agree with per-case data.

Tie-breaking: among candidate edges that are equally good, the chosen edge is the middle
(lower middle for an even count) of the longest contiguous run of equally good edges
(the lowest such run if several are equally long). For ``youden``/``accuracy`` "equally
good" means the same objective value; for ``sensitivity``/``specificity`` it means the
same confusion counts as the extreme edge meeting the target, i.e. the threshold is
centred in the gap of empty bins around that operating point instead of hugging a case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from evaluation.binary import binary_arrays

HIST_BINS: int = 200
RULES: tuple[str, ...] = ("youden", "accuracy", "sensitivity", "specificity")


def bin_edges(bins: int = HIST_BINS) -> np.ndarray:
    """The ``bins + 1`` equal-width edges over [0, 1], computed as ``k / bins``."""
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    return np.arange(bins + 1, dtype=np.float64) / bins


def score_histograms(labels: ArrayLike, scores: ArrayLike, bins: int = HIST_BINS) -> tuple[list[int], list[int]]:
    """Per-class counts of scores in equal-width bins over [0, 1] (1.0 in the last bin).

    Returns:
        ``(positive counts, negative counts)`` as lists of ``bins`` ints.

    Raises:
        ValueError: On invalid labels/scores or scores outside [0, 1].
    """
    y, s = binary_arrays(labels, scores)
    if np.any((s < 0.0) | (s > 1.0)):
        raise ValueError("scores must lie in [0, 1] to be histogrammed")
    edges = bin_edges(bins)
    index = np.minimum(np.searchsorted(edges, s, side="right") - 1, bins - 1)
    pos = np.bincount(index[y == 1], minlength=bins)
    neg = np.bincount(index[y == 0], minlength=bins)
    return [int(c) for c in pos], [int(c) for c in neg]


def pool_histograms(pairs: Iterable[tuple[Sequence[int], Sequence[int]]]) -> tuple[list[int], list[int]]:
    """Element-wise sum of several sites' ``(positive, negative)`` histograms.

    Raises:
        ValueError: If no pairs are given or histogram lengths differ.
    """
    total_pos: list[int] | None = None
    total_neg: list[int] | None = None
    for pos, neg in pairs:
        if len(pos) != len(neg):
            raise ValueError(f"positive and negative histograms differ in length: {len(pos)} != {len(neg)}")
        if total_pos is None or total_neg is None:
            total_pos, total_neg = [int(c) for c in pos], [int(c) for c in neg]
            continue
        if len(pos) != len(total_pos):
            raise ValueError(f"histograms have mismatched lengths: {len(pos)} != {len(total_pos)}")
        total_pos = [a + int(b) for a, b in zip(total_pos, pos)]
        total_neg = [a + int(b) for a, b in zip(total_neg, neg)]
    if total_pos is None or total_neg is None:
        raise ValueError("no histograms to pool")
    return total_pos, total_neg


def _as_counts(pos: Sequence[int], neg: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Validate a histogram pair and return it as int64 arrays."""
    p = np.asarray(pos)
    q = np.asarray(neg)
    if p.ndim != 1 or q.ndim != 1 or p.size != q.size or p.size == 0:
        raise ValueError(f"histograms must be non-empty 1-D of equal length, got {p.shape} and {q.shape}")
    for h in (p, q):
        if not np.all(np.isfinite(h.astype(np.float64))) or np.any(h < 0) or np.any(h != np.round(h)):
            raise ValueError("histogram counts must be non-negative integers")
    p, q = p.astype(np.int64), q.astype(np.int64)
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError(f"both classes must be present, got {p.sum()} positive and {q.sum()} negative")
    return p, q


def _middle_of_longest_run(mask: np.ndarray) -> int:
    """Index in the middle of the longest run of True in ``mask`` (lowest run on ties)."""
    best_start, best_len, start = -1, 0, -1
    for k, flag in enumerate(mask.tolist() + [False]):
        if flag and start < 0:
            start = k
        elif not flag and start >= 0:
            if k - start > best_len:
                best_start, best_len = start, k - start
            start = -1
    if best_len == 0:
        raise ValueError("no candidate threshold satisfies the rule")
    return best_start + (best_len - 1) // 2


def _equivalent(tp: np.ndarray, fp: np.ndarray, k: int) -> np.ndarray:
    """Mask of edges in the contiguous run around ``k`` with the same confusion counts as ``k``."""
    same = (tp == tp[k]) & (fp == fp[k])
    run = np.zeros_like(same)
    lo, hi = k, k
    while lo > 0 and same[lo - 1]:
        lo -= 1
    while hi < same.size - 1 and same[hi + 1]:
        hi += 1
    run[lo : hi + 1] = True
    return run


def _check_target(rule: str, target: float | None) -> None:
    """Raise ValueError unless ``rule`` is known and ``target`` fits it."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    if rule in ("youden", "accuracy"):
        return
    if target is None or not 0.0 <= float(target) <= 1.0:
        raise ValueError(f"rule {rule!r} needs a target in [0, 1], got {target}")


def threshold_from_histograms(
    pos: Sequence[int], neg: Sequence[int], rule: str = "youden", target: float | None = None
) -> float:
    """Choose a threshold (a bin lower edge) from per-class score histograms.

    Args:
        pos: Counts of positive cases per bin.
        neg: Counts of negative cases per bin (same length).
        rule: ``youden`` (max sensitivity + specificity - 1), ``accuracy`` (max
            accuracy), ``sensitivity`` (highest threshold with sensitivity >= target)
            or ``specificity`` (lowest threshold with specificity >= target).
        target: Required for ``sensitivity``/``specificity``, in [0, 1]; ignored by
            ``youden``/``accuracy`` (so a run config's placeholder target is harmless).

    Returns:
        The threshold; predict positive when ``score >= threshold``.

    Raises:
        ValueError: If a class is empty, the rule/target is invalid, or no
            candidate reaches the target.
    """
    _check_target(rule, target)
    p, q = _as_counts(pos, neg)
    n_pos, n_neg = int(p.sum()), int(q.sum())
    tp = np.cumsum(p[::-1])[::-1]
    fp = np.cumsum(q[::-1])[::-1]
    if rule == "youden":
        objective = tp * n_neg - fp * n_pos
        k = _middle_of_longest_run(objective == objective.max())
    elif rule == "accuracy":
        objective = tp + (n_neg - fp)
        k = _middle_of_longest_run(objective == objective.max())
    elif rule == "sensitivity":
        feasible = np.flatnonzero(tp >= float(target) * n_pos - 1e-9 * n_pos)
        k = _middle_of_longest_run(_equivalent(tp, fp, int(feasible.max())))
    else:
        feasible = np.flatnonzero(n_neg - fp >= float(target) * n_neg - 1e-9 * n_neg)
        if feasible.size == 0:
            raise ValueError(f"no candidate threshold reaches specificity {target}")
        k = _middle_of_longest_run(_equivalent(tp, fp, int(feasible.min())))
    return float(bin_edges(p.size)[k])


def threshold_from_scores(
    labels: ArrayLike, scores: ArrayLike, rule: str = "youden", target: float | None = None
) -> float:
    """Choose a threshold from per-case scores via the same histogram path as federated sites."""
    pos, neg = score_histograms(labels, scores)
    return threshold_from_histograms(pos, neg, rule=rule, target=target)

