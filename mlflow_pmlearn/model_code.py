"""A bespoke estimator's module, imported from the model's own ``code`` folder by file, never through ``sys.path``.

A model saved with ``code_paths`` carries the module that defines its estimator class
(and the modules that one imports) in its ``code`` folder. MLflow's own loaders put that
folder first on ``sys.path``, where any file in it could shadow an installed module for the
rest of the process. Here instead each module is loaded from its file spec, found only in
that folder, after checks that run nothing:

- code from a model runs only where ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` allows it;
- the class's module must be a file in the code folder (no link out of it), define the
  class at its top level (read from its syntax tree), and not share its name with an
  installed module;
- the modules it imports (at any depth of its source) that are found in the code folder
  and nowhere else are loaded the same way first; a name the environment provides is always
  the environment's module, so a model's file can never stand in for an installed one.

A module the process has already imported is used as it is, which runs nothing.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlflow_pmlearn.safety import is_within, refuse_model_code_unless_allowed


def _spec_in(name: str, code_directory: Path) -> ModuleSpec | None:
    """The spec of module ``name`` (dotted) found only under ``code_directory``; None where it is not there."""
    parts = name.split(".")
    locations = [str(code_directory)]
    spec = None
    for depth in range(1, len(parts) + 1):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), locations)
        if spec is None:
            return None
        locations = list(spec.submodule_search_locations or [])
        found = [spec.origin] if spec.has_location else locations
        if not found or not all(is_within(location, code_directory) for location in found):
            raise MlflowException(
                f"The module {name!r} of the model's code is a link leading outside {code_directory}; "
                "refusing to import it.",
                INVALID_PARAMETER_VALUE,
            )
        if depth < len(parts) and spec.submodule_search_locations is None:
            return None  # a module, not a package: it has no submodules
    return spec


def _installed(top_level: str) -> bool:
    """Whether the environment itself provides the top-level module ``top_level``."""
    if top_level in sys.builtin_module_names or top_level in sys.stdlib_module_names:
        return True
    return importlib.machinery.PathFinder.find_spec(top_level, sys.path) is not None


def _imported_names(source: str, filename: str) -> set[str]:
    """The absolute module names that ``source`` imports anywhere (relative imports resolve through packages)."""
    names = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _load(name: str, spec: ModuleSpec, code_directory: Path, loading: set[str]) -> ModuleType:
    """Load the module ``name`` from ``spec``: its parents and its code-folder imports first."""
    parent = name.rpartition(".")[0]
    if parent and parent not in sys.modules:
        _load(parent, _spec_in(parent, code_directory), code_directory, loading)
    loading.add(name)
    if spec.origin and spec.origin.endswith(".py"):
        source = Path(spec.origin).read_text()
        for imported in sorted(_imported_names(source, spec.origin)):
            _load_sibling(imported, code_directory, loading)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # leave the model's files as they are
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def _load_sibling(name: str, code_directory: Path, loading: set[str]) -> None:
    """Load ``name`` from the code folder when it is there and the environment does not provide it."""
    top_level = name.partition(".")[0]
    if name in sys.modules or name in loading or top_level in sys.modules or _installed(top_level):
        return
    if (spec := _spec_in(name, code_directory)) is not None:
        _load(name, spec, code_directory, loading)


def import_estimator_class(class_path: str, code_directory: Path | None, model_directory: Path) -> type | None:
    """The class ``module.Class`` named by ``class_path``, imported from the model's code folder by file.

    Parameters
    ----------
    class_path : str
        The dotted path recorded in ``estimator.json``.
    code_directory : Path or None
        The model's ``code`` folder, already confined to the model's folder.
    model_directory : Path
        The model's data folder, for messages.

    Returns
    -------
    type or None
        The attribute (checked to be a class by the caller); None where the module does not
        define it.

    Raises
    ------
    MlflowException
        For a module neither imported nor in the code folder, one that shares its name with
        an installed module, one that does not define the class at its top level, and when
        ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` is false.
    """
    module_name, _, attribute = class_path.rpartition(".")
    if module_name in sys.modules:
        return getattr(sys.modules[module_name], attribute, None)
    refusal = (
        f"{model_directory} names the class {class_path!r}, which is neither a built-in pmlearn estimator "
        "nor defined in a module file shipped with the model"
    )
    if not module_name or not all(part.isidentifier() for part in class_path.split(".")) or code_directory is None:
        raise MlflowException(
            f"{refusal}; refusing to import it. Save bespoke models with code_paths=[<their module>] (or "
            'serialization_format="cloudpickle").',
            INVALID_PARAMETER_VALUE,
        )
    if _installed(module_name.partition(".")[0]):
        raise MlflowException(
            f"{model_directory} names the class {class_path!r}, whose module has the name of an installed module; "
            "refusing to import it from the model's code.",
            INVALID_PARAMETER_VALUE,
        )
    spec = _spec_in(module_name, code_directory)
    if spec is None or not (spec.origin or "").endswith(".py"):
        raise MlflowException(f"{refusal} ({code_directory} has no such module file).", INVALID_PARAMETER_VALUE)
    tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
    if not any(isinstance(node, ast.ClassDef) and node.name == attribute for node in tree.body):
        raise MlflowException(
            f"{spec.origin} does not define the class {attribute!r} that {model_directory} names; refusing to run it.",
            INVALID_PARAMETER_VALUE,
        )
    refuse_model_code_unless_allowed(f"its estimator class's module {spec.origin}", model_directory)
    return getattr(_load(module_name, spec, code_directory, set()), attribute, None)
