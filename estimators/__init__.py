"""Bayesian estimators with the scikit-learn API, on PyMC.

Import the models from their families (``estimators.linear_model``, ...); importing this
package alone loads nothing heavy and changes nothing in the process.
"""

__version__ = "0.3.0.dev0"
