"""Every Python block of the README and of the user guide runs, in order, as a user pastes them into one session.

The README comes first, then the documentation's getting-started page and the user
guide's pages in the order of their table of contents: the guide goes on from the README's
quick start (its ``model``, ``X``, ``y``, ``served``), as the README did before the guide
was split off. A block that repeats an earlier one word for word (the quick start, the
README's own model) runs once. The blocks run in a fresh process in an empty folder (the
``sqlite:///mlflow.db`` they use is made there), with no MLflow settings from the test
session, so each block has only what the earlier blocks defined. The gallery's executed
pages are run by the documentation build (``tests/test_docs.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import isolated_environment

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
USER_GUIDE = ROOT / "docs" / "user_guide"
#: A fenced Python block: what a user copies.
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
#: The entries of a MyST toctree: one page name per line after the options.
TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def user_guide_pages() -> list[Path]:
    """The user guide's pages, in the order of its table of contents."""
    (entries,) = TOCTREE.findall((USER_GUIDE / "index.md").read_text())
    names = [line.strip() for line in entries.splitlines() if line.strip() and not line.startswith(":")]
    return [USER_GUIDE / f"{name}.md" for name in names]


def pages() -> list[Path]:
    """The README, the getting-started page, then the user guide."""
    return [README, ROOT / "docs" / "getting_started.md", *user_guide_pages()]


def python_blocks() -> list[tuple[str, str]]:
    """``(page, block)`` for each Python block of :func:`pages`, in order, repeats left out."""
    seen: set[str] = set()
    blocks = []
    for page in pages():
        for block in PYTHON_BLOCK.findall(page.read_text()):
            if block not in seen:
                seen.add(block)
                blocks.append((str(page.relative_to(ROOT)), block))
    return blocks


def test_the_pages_have_the_blocks_this_test_runs():
    readme = PYTHON_BLOCK.findall(README.read_text())
    assert len(readme) >= 2 and "mlflow_pmlearn.log_model" in readme[0]
    assert all(page.is_file() for page in pages())
    blocks = [block for _, block in python_blocks()]
    assert len(blocks) >= 10
    assert any("migrate(" in block for block in blocks) and "spark_udf" in blocks[-1]


def test_every_python_block_runs_in_order(tmp_path):
    pytest.importorskip("pyspark", reason="pip install mlflow-pmlearn[spark]")
    blocks = python_blocks()
    script = "\n\n".join(
        f"print('block {number} of {page}', flush=True)\n{block}"
        for number, (page, block) in enumerate(blocks, start=1)
    )
    finished = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=isolated_environment(),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-4000:]
    assert f"block {len(blocks)} of" in finished.stdout
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "resaved" / "MLmodel").is_file()
    # The Spark block's table shows the served columns.
    assert re.search(r"\|\s*prediction\s*\|\s*std\s*\|\s*lower\s*\|\s*upper\s*\|", finished.stdout)
