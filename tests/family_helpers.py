"""Shared by the tests of the model families: what a saved built-in model must (not) hold."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow_pmlearn.serialization import BUILTIN_ESTIMATORS, CONFIG_FILE


def assert_saved_without_pickle(model_dir: Path) -> None:
    """The saved model holds no pickle, and names its class from the built-in allow-list."""
    files = [path for path in model_dir.rglob("*") if path.is_file()]
    assert files
    for file in files:
        assert file.suffix not in {".pkl", ".pickle"}, file
        assert file.read_bytes()[:1] != b"\x80", f"{file} starts with a pickle protocol header"
    config = json.loads((model_dir / "estimator" / CONFIG_FILE).read_text())
    assert config["estimator_class"] in BUILTIN_ESTIMATORS
    assert config["serialization_format"] == "json"
