"""Bayesian linear models: regression, logistic regression, hierarchical logistic regression."""

from estimators.linear_model._hierarchical import HierarchicalLogisticRegression
from estimators.linear_model._linear import LinearRegression, LogisticRegression

__all__ = ["HierarchicalLogisticRegression", "LinearRegression", "LogisticRegression"]
