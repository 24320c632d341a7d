"""Bayesian Gaussian mixtures: a fixed number of components, or a Dirichlet process."""

from estimators.mixture._gaussian_mixture import DirichletProcessMixture, GaussianMixture

__all__ = ["DirichletProcessMixture", "GaussianMixture"]
