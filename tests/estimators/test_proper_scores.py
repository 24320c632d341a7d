"""Proper scores in NumPy, against closed forms and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from properscoring_reference import crps_gaussian_reference
from sklearn.metrics import brier_score_loss, log_loss

from estimators.scoring import crps, inside_central_interval, probability_scores


def test_crps_of_samples_matches_the_closed_form_for_a_normal():
    rng = np.random.default_rng(0)
    samples = rng.normal(1.0, 2.0, size=(20_000, 1))
    for y in (-1.0, 1.0, 4.0):
        assert crps(samples, np.array([y]))[0] == pytest.approx(crps_gaussian_reference(y, 1.0, 2.0), rel=0.02)


@pytest.mark.parametrize("prob", [0.5, 0.9, 0.94])
def test_inside_central_interval_agrees_with_numpy_quantiles(prob):
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(101, 500)).round(1)  # ties, and targets on the draws themselves
    target = np.concatenate([rng.normal(size=250).round(1), samples[3, 250:]])
    lower, upper = np.quantile(samples, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    np.testing.assert_array_equal(inside_central_interval(samples, target, prob), (lower <= target) & (target <= upper))


def test_probability_scores_match_scikit_learn_for_two_classes():
    rng = np.random.default_rng(2)
    classes = np.array(["no", "yes"])
    p_yes = rng.uniform(size=200)
    labels = np.where(rng.uniform(size=200) < p_yes, "yes", "no")
    scores = probability_scores(classes, np.column_stack([1 - p_yes, p_yes]), labels)
    assert scores["log_loss"] == pytest.approx(log_loss(labels, p_yes, labels=classes))
    # Summed over both classes, the Brier score is twice scikit-learn's binary one.
    assert scores["brier_score"] == pytest.approx(2 * brier_score_loss(labels == "yes", p_yes))
