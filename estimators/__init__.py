"""Bayesian estimators with the scikit-learn API, on PyMC.

Import the models from their families (``estimators.linear_model``, ...); importing this
package alone loads nothing heavy. It makes sure that ``mlflow_pmlearn``, when imported,
comes from the same installation (see ``estimators._installation``).
"""

from estimators._installation import keep_packages_together

__version__ = "0.2.0"

keep_packages_together()
