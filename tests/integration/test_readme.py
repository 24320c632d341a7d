"""Every Python block of the README runs, in order, as a user pastes them into one session.

The blocks run in a fresh process in an empty folder (the README's ``sqlite:///mlflow.db``
is made there), with no MLflow settings from the test session, so each block has only what
the README's earlier blocks defined.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
#: A fenced Python block: what a user copies.
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def readme_blocks() -> list[str]:
    """The README's Python blocks, in order."""
    return PYTHON_BLOCK.findall(README.read_text())


def test_the_readme_has_the_blocks_this_test_runs():
    blocks = readme_blocks()
    assert len(blocks) >= 5
    assert "mlflow_pmlearn.log_model" in blocks[0] and "spark_udf" in blocks[-1]


def test_every_readme_python_block_runs_in_order(tmp_path):
    pytest.importorskip("pyspark", reason="pip install mlflow-pmlearn[spark]")
    script = "\n\n".join(
        f"print('README block {number}', flush=True)\n{block}" for number, block in enumerate(readme_blocks(), start=1)
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
    )
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-4000:]
    assert f"README block {len(readme_blocks())}" in finished.stdout
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "resaved" / "MLmodel").is_file()
    # The Spark block's table shows the served columns.
    assert re.search(r"\|\s*prediction\s*\|\s*std\s*\|\s*lower\s*\|\s*upper\s*\|", finished.stdout)
