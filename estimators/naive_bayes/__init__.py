"""Bayesian naive Bayes classifiers."""

from estimators.naive_bayes._gaussian import GaussianNB

__all__ = ["GaussianNB"]
