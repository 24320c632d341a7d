"""Bayesian neural networks."""

from estimators.neural_network._multilayer_perceptron import MLPClassifier

__all__ = ["MLPClassifier"]
