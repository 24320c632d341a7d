"""Gaussian-process regression: exact, Student-t noise, and sparse (inducing points)."""

from estimators.gaussian_process._gpr import GaussianProcessRegressor, StudentTProcessRegressor
from estimators.gaussian_process._sparse import SparseGaussianProcessRegressor

__all__ = ["GaussianProcessRegressor", "SparseGaussianProcessRegressor", "StudentTProcessRegressor"]
