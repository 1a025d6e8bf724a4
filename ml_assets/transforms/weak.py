"""Weak supervision: votes of labelling functions combined into probabilistic labels.

No Dagster here. A labelling function votes positive (1), negative (0) or abstains (NaN) on each
event. `majority_vote` is the baseline; `fit_label_model` is the generative label model, a
Dawid-Skene model in which each function's vote (1, 0 or abstain) depends only on the true
class: it learns, without ground truth, how often each function votes each way for positives
and for negatives, and so how much each vote is worth.

Why not snorkel or crowd-kit: snorkel needs torch and crowd-kit needs transformers, both far
heavier than this model (a few lines of EM over a votes matrix).

For a rare class the latent classes are not identified from the votes alone (EM happily splits
"covered by the common negative rules" from the rest), so the class balance is an input, as in
Snorkel's LabelModel: the spec's value, or the positive rate of the matured ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

POSITIVE, NEGATIVE = 1, 0


def majority_vote(votes: np.ndarray) -> np.ndarray:
    """Share of positive votes among the functions that voted; NaN where all abstained."""
    voted = ~np.isnan(votes)
    positive = (votes == POSITIVE).sum(axis=1)
    total = voted.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, positive / np.maximum(total, 1), np.nan)


@dataclass(frozen=True)
class LabelModel:
    class_balance: float
    # P(vote = negative, positive, abstain | class) per function: shape (functions, 3)
    given_positive: np.ndarray
    given_negative: np.ndarray
    iterations: int
    converged: bool

    def weights(self) -> np.ndarray:
        """Log-likelihood ratio of each (function, vote) pair: what the vote says about the class."""
        return np.log(self.given_positive) - np.log(self.given_negative)

    def predict_proba(self, votes: np.ndarray) -> np.ndarray:
        """P(positive | votes) per event (events with no vote get the class balance)."""
        return _posterior(_responses(votes), self.weights(), self.class_balance)

    def table(self, names: list[str]) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "function": names,
                "p_positive_vote_if_positive": self.given_positive[:, POSITIVE],
                "p_positive_vote_if_negative": self.given_negative[:, POSITIVE],
                "p_negative_vote_if_positive": self.given_positive[:, NEGATIVE],
                "p_negative_vote_if_negative": self.given_negative[:, NEGATIVE],
            }
        )


def _responses(votes: np.ndarray) -> np.ndarray:
    """One-hot (events, functions, 3) of vote 0, vote 1, abstain."""
    coded = np.where(np.isnan(votes), 2, votes).astype(np.int8)
    return np.stack([coded == k for k in range(3)], axis=2).astype(np.float64)


def _posterior(responses: np.ndarray, weights: np.ndarray, class_balance: float) -> np.ndarray:
    prior = np.log(class_balance / (1 - class_balance))
    log_odds = prior + np.einsum("nmk,mk->n", responses, weights)
    return 1 / (1 + np.exp(-np.clip(log_odds, -50, 50)))


def vote_patterns(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a votes matrix and how often each occurs (at most 3^functions rows)."""
    coded = np.where(np.isnan(votes), 2, votes).astype(np.int8)
    patterns, counts = np.unique(coded, axis=0, return_counts=True)
    return np.where(patterns == 2, np.nan, patterns).astype(float), counts


def fit_label_model(
    votes: np.ndarray,
    class_balance: float,
    *,
    counts: np.ndarray | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
    smoothing: float = 0.5,
) -> LabelModel:
    """Fit the label model by EM on a (events, functions) votes matrix (1, 0, NaN = abstain).

    `counts` weighs each row: pass the distinct vote patterns and their counts (`vote_patterns`,
    or a GROUP BY in the warehouse) and EM runs on a few hundred rows whatever the events.

    Starts from the majority vote pulled towards the class balance, then alternates: the
    expected class of each event given the current vote probabilities (E), and the vote
    probabilities of each function per class given those expectations (M), with `smoothing`
    pseudo-counts so a function never seen voting for a class keeps a small probability.
    """
    if not 0 < class_balance < 1:
        raise ValueError(f"class balance must be strictly between 0 and 1, got {class_balance}")
    if votes.ndim != 2 or votes.shape[1] == 0:
        raise ValueError(
            f"votes must be a 2-d matrix with a column per function, got {votes.shape}"
        )
    responses = _responses(votes)
    weight = np.ones(len(votes)) if counts is None else np.asarray(counts, dtype=np.float64)
    mv = majority_vote(votes)
    q = np.where(np.isnan(mv), class_balance, (mv + class_balance) / 2)
    converged, iterations = False, 0
    while iterations < max_iter:
        iterations += 1
        given_positive = np.einsum("n,nmk->mk", weight * q, responses) + smoothing
        given_positive /= given_positive.sum(axis=1, keepdims=True)
        given_negative = np.einsum("n,nmk->mk", weight * (1 - q), responses) + smoothing
        given_negative /= given_negative.sum(axis=1, keepdims=True)
        updated = _posterior(
            responses, np.log(given_positive) - np.log(given_negative), class_balance
        )
        change = float(np.abs(updated - q).max()) if len(q) else 0.0
        q = updated
        if change < tol:
            converged = True
            break
    return LabelModel(class_balance, given_positive, given_negative, iterations, converged)


def function_stats(
    votes: np.ndarray, names: list[str], truth: np.ndarray | None = None
) -> pl.DataFrame:
    """Per function: coverage, overlap, conflict, polarity and, where ground truth exists, accuracy.

    coverage: share of events it votes on; overlap: share of events where it and at least one
    other function vote; conflict: share where another function votes the other way; accuracy:
    share of its votes that match the ground truth, over the events that have ground truth
    (`truth` with NaN where unknown).
    """
    voted = ~np.isnan(votes)
    n = max(len(votes), 1)
    rows = []
    for j, name in enumerate(names):
        mine = voted[:, j]
        others = np.delete(voted, j, axis=1)
        other_votes = np.delete(votes, j, axis=1)
        disagree = (others & (other_votes != votes[:, [j]])).any(axis=1) & mine
        row = {
            "function": name,
            "votes": int(mine.sum()),
            "positive_votes": int((votes[:, j] == POSITIVE).sum()),
            "negative_votes": int((votes[:, j] == NEGATIVE).sum()),
            "coverage": mine.sum() / n,
            "overlap": (mine & others.any(axis=1)).sum() / n,
            "conflict": disagree.sum() / n,
            "empirical_accuracy": None,
            "votes_with_truth": 0,
        }
        if truth is not None:
            known = mine & ~np.isnan(truth)
            row["votes_with_truth"] = int(known.sum())
            if known.any():
                row["empirical_accuracy"] = float((votes[known, j] == truth[known]).mean())
        rows.append(row)
    return pl.DataFrame(rows, schema_overrides={"empirical_accuracy": pl.Float64})
