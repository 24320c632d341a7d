"""The documentation builds with no warning: the README's command, once, in the suite.

Warnings are errors, so a broken reference, a docstring numpydoc cannot parse, a public
module that fails to import, or a gallery page whose code raises (myst-nb executes them
all) fails this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import isolated_environment

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: The build command of the README, with the output in a temporary folder.
README_COMMAND = "sphinx-build -W --keep-going -b html docs docs/_build/html"


def test_the_readme_gives_this_build_command():
    assert README_COMMAND in (ROOT / "README.md").read_text()


def test_the_documentation_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason='pip install "mlflow-pmlearn[docs]"')
    pytest.importorskip("myst_nb", reason='pip install "mlflow-pmlearn[docs]"')
    output = tmp_path / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(output)]
    finished = subprocess.run(
        command, cwd=ROOT, env=isolated_environment(), capture_output=True, text=True, timeout=900
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-6000:]
    for page in [
        "index.html",
        "gallery/density_model.html",
        "gallery/template_limits.html",
        "api/generated/estimators.base.BayesianEstimator.html",
        "api/generated/estimators.linear_model.LinearRegression.html",
        "api/generated/mlflow_pmlearn.save_model.html",
        "api/generated/mlflow_pmlearn.log_model.html",
        "api/generated/mlflow_pmlearn.load_model.html",
        "api/generated/mlflow_pmlearn.autolog.html",
        "api/generated/mlflow_pmlearn.compare.html",
    ]:
        assert (output / page).is_file(), page
    # The executed examples printed their results into the pages.
    assert "same log densities after a round trip" in (output / "gallery" / "density_model.html").read_text()
