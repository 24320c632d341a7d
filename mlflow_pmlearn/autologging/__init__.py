"""What fitting logs under :func:`mlflow_pmlearn.autolog`: the patches of ``fit`` that it installs."""

from mlflow_pmlearn.autologging.meta import patched_meta_fit
from mlflow_pmlearn.autologging.runs import patched_fit

__all__ = ["patched_fit", "patched_meta_fit"]
