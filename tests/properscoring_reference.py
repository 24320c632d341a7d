"""Closed-form scoring rules used as references in tests."""

import numpy as np
from scipy.stats import norm


def crps_gaussian_reference(y: float, mu: float, sigma: float) -> float:
    """CRPS of a Normal(mu, sigma) forecast at ``y`` (Gneiting and Raftery, 2007)."""
    z = (y - mu) / sigma
    return float(sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi)))
