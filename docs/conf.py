"""Sphinx configuration of the mlflow-pmlearn documentation.

Build with warnings as errors (a broken reference or a failing example fails the build)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Document this checkout's code, also in the kernels that run the gallery's notebooks.
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import estimators  # noqa: E402

project = "mlflow-pmlearn"
author = "the mlflow-pmlearn developers"
copyright = "the mlflow-pmlearn developers"  # noqa: A001
release = estimators.__version__
version = release

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx_copybutton",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
root_doc = "index"

# -- API reference: autosummary over the public modules, numpydoc docstrings -------------
autosummary_generate = True
# A module's `__all__`, where it has one, is its public API.
autosummary_ignore_module_all = False
autodoc_typehints = "none"  # the numpydoc sections say the types
autodoc_default_options = {"member-order": "groupwise"}
numpydoc_show_class_members = False  # the class template lists the members
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
# A method without a docstring of its own shows none, rather than its parent library's.
autodoc_inherit_docstrings = False
#: Packages whose members the API reference documents; what a class inherits from
#: scikit-learn, skbase or MLflow is documented there.
OWN_PACKAGES = ("estimators", "mlflow_pmlearn")


def _skip_inherited_foreign_members(app, what, name, obj, skip, options):
    """Leave out of a class's page the members it inherits from other libraries."""
    if what != "class":
        return None
    defined_in = getattr(getattr(obj, "fget", obj), "__module__", None) or ""
    return True if defined_in and not defined_in.startswith(OWN_PACKAGES) else None


def setup(app):
    app.connect("autodoc-skip-member", _skip_inherited_foreign_members)


# -- Executed pages: MyST text notebooks run by myst-nb at every build ---------------------
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600
nb_merge_streams = True
# Samplers and MLflow report progress and hints on stderr; the pages show what the code prints.
nb_output_stderr = "remove"
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# -- HTML: the PyData theme, as PyMC, ArviZ and pymc-extras use ----------------------------
html_theme = "pydata_sphinx_theme"
html_title = "mlflow-pmlearn"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_context = {"default_mode": "auto"}
