"""``python -m mlflow_pmlearn migrate ...``: see :mod:`mlflow_pmlearn.migration`."""

from mlflow_pmlearn.migration import main

main()
