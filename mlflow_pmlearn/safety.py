"""What loading a model trusts: paths confined to the model's folder, and budgets on what is decoded.

A model folder may come from someone else. Everything here runs before the file it checks
is parsed or decoded, and refuses with an ``MlflowException`` that names the file, the
problem and, where a limit can be raised, the setting:

- every file is read only inside its folder (:func:`confined_path`: no absolute path, ``..``
  or link leading out) and only up to a size (:func:`model_file`): ``MLmodel`` up to
  :data:`MAX_MLMODEL_BYTES` (YAML parsing costs seconds per MiB), JSON documents up to
  :data:`MAX_DOCUMENT_BYTES`;
- a trace (HDF5 / NetCDF) is walked once, linearly and with limits, from its metadata
  (:func:`scan_trace`): at most :data:`MAX_TRACE_OBJECTS` groups and variables, nested at
  most :data:`MAX_TRACE_DEPTH` deep, at most :data:`MAX_TRACE_ATTRIBUTES` attributes; no
  links or data in other files; only the filters a trace is written with, each compressed
  chunk inflating to no more than its declared size; and the bytes its arrays take *once
  decoded* (the dtype after ``scale_factor``/``_FillValue``, strings as Python objects),
  its attributes and its variable-length strings, within :func:`max_trace_bytes`;
- code shipped in a model's folder runs only where :data:`ALLOW_MODEL_CODE_VARIABLE` allows
  it (:func:`refuse_model_code_unless_allowed`).
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from mlflow.exceptions import MlflowException

#: Most bytes of a model's JSON documents (``estimator.json``, ``pipeline.json``) and of a
#: pickled class, each read whole before it is parsed.
MAX_DOCUMENT_BYTES = 16 * 2**20
#: Most bytes of ``MLmodel``: PyYAML parses a hostile document at about 10-20 s per MiB,
#: and a real one, signature included, takes a few KiB.
MAX_MLMODEL_BYTES = 2**20
#: Environment variable: most bytes a trace may hold, as a file and as its arrays decoded.
MAX_TRACE_BYTES_VARIABLE = "MLFLOW_PMLEARN_MAX_TRACE_BYTES"
DEFAULT_MAX_TRACE_BYTES = 2 * 2**30
#: Environment variable: most bytes a loaded model's predictor may precompute over its
#: posterior draws (a Gaussian process's per-draw factors of its training covariance).
MAX_PREDICTOR_BYTES_VARIABLE = "MLFLOW_PMLEARN_MAX_PREDICTOR_BYTES"
DEFAULT_MAX_PREDICTOR_BYTES = 2 * 2**30
#: Most groups and variables in a trace (a real one has tens to a few hundred).
MAX_TRACE_OBJECTS = 5_000
#: Deepest group nesting in a trace (a real one: the root and its groups).
MAX_TRACE_DEPTH = 4
#: Most attributes in a trace, and most bytes their fixed-size values take.
MAX_TRACE_ATTRIBUTES = 50_000
MAX_ATTRIBUTE_BYTES = 16 * 2**20
#: Most bytes of variable-length data (strings: names, labels, attribute texts) in a trace.
MAX_STRING_BYTES = 64 * 2**20
#: Environment variable: whether code shipped in a model's folder may run at load (bespoke
#: estimator classes, pickled classes, grouped models' group code). Default: true.
ALLOW_MODEL_CODE_VARIABLE = "MLFLOW_ALLOW_MODEL_CODE_EXECUTION"

#: The HDF5 filters a trace may use, in pipeline order: shuffle, deflate (gzip), Fletcher-32.
_SHUFFLE, _DEFLATE, _FLETCHER32 = h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_FLETCHER32
_FILTER_NAMES = {_SHUFFLE: "shuffle", _DEFLATE: "deflate", _FLETCHER32: "fletcher32"}
#: Python object overhead counted per decoded string or variable-length element.
_OBJECT_BYTES = 96
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def is_within(path: str | os.PathLike | None, directory: str | os.PathLike) -> bool:
    """Whether ``path`` is ``directory`` or lies below it, once links are resolved."""
    return path is not None and Path(path).resolve().is_relative_to(Path(directory).resolve())


def confined_path(directory: str | os.PathLike, name: str, what: str) -> Path:
    """``directory / name``, refused unless it stays inside ``directory``.

    Parameters
    ----------
    directory : path
        The folder the path must stay in (a model's folder, its data folder).
    name : str
        A relative path, as a model's files give it.
    what : str
        What the path is, for the error message.

    Returns
    -------
    Path
        ``directory / name``.

    Raises
    ------
    MlflowException
        For a ``name`` that is not a non-empty string, is absolute or has a ``..``, and for
        a path that a link leads out of ``directory``.
    """
    directory = Path(directory)
    if not isinstance(name, str) or not name:
        raise MlflowException(f"The model at {directory} names its {what} {name!r}; it must be a relative path.")
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise MlflowException(
            f"The {what} {name!r} of the model at {directory} leads outside the model's folder (an "
            "absolute path or '..'); refusing to read it."
        )
    path = directory / name
    if not is_within(path, directory):
        raise MlflowException(
            f"The {what} {path} leads outside {directory} (it is a link to {path.resolve()}); refusing to read it."
        )
    return path


def model_file(
    directory: str | os.PathLike, name: str, what: str, max_bytes: int, limit_variable: str | None = None
) -> Path:
    """The file ``name`` of a model folder, checked before anything reads it.

    Parameters
    ----------
    directory : path
        The folder holding the file.
    name : str
        The file's name (or relative path) in it.
    what : str
        What the file is, for the error message.
    max_bytes : int
        The file's largest allowed size.
    limit_variable : str, optional
        The environment variable that sets ``max_bytes``, named in the error.

    Returns
    -------
    Path
        The file: inside ``directory`` (:func:`confined_path`), a regular file (not a
        device or pipe) and at most ``max_bytes`` long.

    Raises
    ------
    MlflowException
        Naming the file and the problem (the size and the limit for one too large).
    """
    path = confined_path(directory, name, what)
    if not path.is_file():
        raise MlflowException(f"The model has no {what}: {path} is missing.")
    if (size := path.stat().st_size) > max_bytes:
        setting = f" ({limit_variable})" if limit_variable else ""
        raise MlflowException(
            f"{path} has {size:,} bytes, over the limit of {max_bytes:,} bytes for the model's {what}{setting}; "
            "refusing to read it."
        )
    return path


def model_code_allowed() -> bool:
    """Whether ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` lets code from a model's folder run (default: yes)."""
    value = os.environ.get(ALLOW_MODEL_CODE_VARIABLE, "true").strip().lower()
    if value not in _TRUE + _FALSE:
        raise MlflowException(f"{ALLOW_MODEL_CODE_VARIABLE} must be true or false (or 1 or 0); it is {value!r}.")
    return value in _TRUE


def refuse_model_code_unless_allowed(what: str, where: str | os.PathLike) -> None:
    """Refuse to run ``what`` (code from the model at ``where``) when the user has not allowed it.

    Raises
    ------
    MlflowException
        When ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` is false; the message names the variable.
    """
    if not model_code_allowed():
        raise MlflowException(
            f"The model at {where} needs to run {what}, and running code from a model is disabled "
            f"({ALLOW_MODEL_CODE_VARIABLE}=false). Built-in models and pipelines of trusted types still "
            f"load; set {ALLOW_MODEL_CODE_VARIABLE}=true only for models whose code you trust."
        )


def _bytes_setting(variable: str, default: int) -> int:
    value = os.environ.get(variable, str(default))
    try:
        return int(value)
    except ValueError:
        raise MlflowException(f"{variable} must be a whole number of bytes; it is {value!r}.") from None


def max_trace_bytes() -> int:
    """The trace budget in bytes: ``MLFLOW_PMLEARN_MAX_TRACE_BYTES``, default 2 GiB."""
    return _bytes_setting(MAX_TRACE_BYTES_VARIABLE, DEFAULT_MAX_TRACE_BYTES)


def max_predictor_bytes() -> int:
    """What a loaded model's predictor may precompute: ``MLFLOW_PMLEARN_MAX_PREDICTOR_BYTES``, default 2 GiB."""
    return _bytes_setting(MAX_PREDICTOR_BYTES_VARIABLE, DEFAULT_MAX_PREDICTOR_BYTES)


@dataclass(frozen=True)
class DeclaredArray:
    """A dataset of a trace file as its HDF5 metadata declares it (none of its data read)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    #: A NetCDF dimension (its coordinate), not a data variable.
    is_dimension: bool
    #: Bytes it takes once decoded as xarray decodes it (see :func:`decoded_item_bytes`).
    nbytes: int


@dataclass
class TraceContents:
    """What :func:`scan_trace` found: the datasets by HDF5 path, and what a trace never holds."""

    arrays: dict[str, DeclaredArray] = field(default_factory=dict)
    foreign: list[str] = field(default_factory=list)
    attribute_count: int = 0
    attribute_bytes: int = 0
    stored_bytes: int = 0
    has_variable_length: bool = False


def decoded_item_bytes(dtype: np.dtype, attributes: Any = ()) -> int:
    """Bytes one element of ``dtype`` takes once xarray has decoded it.

    Numbers are counted as at least 8 bytes: an integer with ``scale_factor``,
    ``add_offset`` or ``_FillValue`` is decoded to floats, times to 64-bit values. Fixed
    strings and characters become Python strings (up to 4 bytes a character, plus the
    object); variable-length elements count their object here, their data separately.
    """
    if h5py.check_vlen_dtype(dtype) is not None or dtype.kind == "O":
        return _OBJECT_BYTES
    if dtype.kind in "SU":
        return 4 * dtype.itemsize + _OBJECT_BYTES
    return max(dtype.itemsize, 8)


def _filters(dataset: h5py.Dataset) -> list[int]:
    plist = dataset.id.get_create_plist()
    return [plist.get_filter(index)[0] for index in range(plist.get_nfilters())]


def _check_chunks_inflate_within_declared_size(name: str, dataset: h5py.Dataset, filters: list[int]) -> str | None:
    """A problem when a compressed chunk inflates to more than the chunk's declared bytes; else None.

    HDF5's deflate filter grows its buffer until the stream ends, whatever the chunk
    declares: each chunk is inflated here first, with zlib, never past its declared size.
    """
    chunk_bytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
    deflate_position = filters.index(_DEFLATE)
    problem = None

    def check(chunk: Any) -> int | None:
        nonlocal problem
        mask, raw = dataset.id.read_direct_chunk(chunk.chunk_offset)
        if mask & (1 << deflate_position):
            return None  # stored uncompressed: its size is its declared size
        if _FLETCHER32 in filters and not mask & (1 << filters.index(_FLETCHER32)):
            raw = raw[:-4]  # the checksum follows the compressed stream
        inflater = zlib.decompressobj()
        try:
            inflater.decompress(raw, chunk_bytes)
        except zlib.error as error:
            problem = f"{name!r} has a chunk that is not valid deflate data ({error})"
            return 1
        if inflater.unconsumed_tail or not inflater.eof:
            problem = (
                f"{name!r} has a compressed chunk that inflates beyond its declared {chunk_bytes:,} bytes "
                "(a compression bomb)"
            )
            return 1
        return None

    dataset.id.chunk_iter(check)
    return problem


def _visit_dataset(name: str, dataset: h5py.Dataset, contents: TraceContents) -> None:
    if dataset.is_virtual or dataset.external:
        contents.foreign.append(f"{name!r} keeps its data in other files")
        return
    filters = _filters(dataset)
    unknown = [_FILTER_NAMES.get(number, f"filter {number}") for number in filters if number not in _FILTER_NAMES]
    if unknown:
        contents.foreign.append(f"{name!r} is stored with HDF5 filters a trace does not use: {', '.join(unknown)}")
        return
    if _DEFLATE in filters and (problem := _check_chunks_inflate_within_declared_size(name, dataset, filters)):
        contents.foreign.append(problem)
        return
    shape = tuple(int(size) for size in dataset.shape or ())
    contents.has_variable_length |= h5py.check_vlen_dtype(dataset.dtype) is not None or dataset.dtype.kind == "O"
    contents.stored_bytes += dataset.id.get_storage_size()
    contents.arrays[name] = DeclaredArray(
        shape=shape,
        dtype=dataset.dtype,
        is_dimension=dataset.attrs.get("CLASS") == b"DIMENSION_SCALE",
        nbytes=math.prod(shape) * decoded_item_bytes(dataset.dtype),
    )


def _count_attributes(item: h5py.HLObject, contents: TraceContents) -> None:
    for attribute_name in item.attrs:
        contents.attribute_count += 1
        if contents.attribute_count > MAX_TRACE_ATTRIBUTES:
            return
        attribute = h5py.h5a.open(item.id, attribute_name.encode())
        dtype = attribute.dtype
        contents.attribute_bytes += math.prod(attribute.shape or ()) * dtype.itemsize
        contents.has_variable_length |= h5py.check_vlen_dtype(dtype) is not None or dtype.kind == "O"


def scan_trace(path: str | os.PathLike) -> TraceContents:
    """Walk a trace file's HDF5 metadata once, within limits, reading no array.

    Depth-first from the root group, refusing as soon as a limit is passed, so that the
    walk itself costs at most :data:`MAX_TRACE_OBJECTS` steps. Listed as foreign (for the
    caller to refuse): soft and external links, an object under several names (xarray would
    read it once per name, or forever in a cycle), data in other files, filters other than
    shuffle, deflate and Fletcher-32, and compressed chunks that inflate beyond their size.

    Raises
    ------
    MlflowException
        For more objects, deeper nesting, more attributes, more attribute bytes or more
        variable-length bytes than a trace holds (each limit named), and for arrays whose
        decoded bytes exceed :func:`max_trace_bytes`.
    """
    path = Path(path)
    contents = TraceContents()
    objects = 0
    with h5py.File(path, "r") as file:
        stack: list[tuple[str, h5py.Group, int]] = [("", file, 0)]
        _count_attributes(file, contents)
        while stack:
            prefix, group, depth = stack.pop()
            for key in group:
                name = f"{prefix}{key}"
                objects += 1
                if objects > MAX_TRACE_OBJECTS:
                    raise MlflowException(
                        f"{path} holds more than {MAX_TRACE_OBJECTS:,} groups and variables; a pmlearn trace holds "
                        "a few hundred at most. Refusing to read it."
                    )
                link = group.get(key, getlink=True)
                if not isinstance(link, h5py.HardLink):
                    contents.foreign.append(f"{name!r} is a link ({type(link).__name__})")
                    continue
                item = group[key]
                if (names := h5py.h5o.get_info(item.id).rc) > 1:
                    contents.foreign.append(f"{name!r} has {names} names")
                    continue
                _count_attributes(item, contents)
                if isinstance(item, h5py.Group):
                    if depth + 1 >= MAX_TRACE_DEPTH:
                        raise MlflowException(
                            f"{path} nests groups more than {MAX_TRACE_DEPTH} deep (at {name!r}); a pmlearn trace "
                            "nests one level. Refusing to read it."
                        )
                    stack.append((f"{name}/", item, depth + 1))
                elif isinstance(item, h5py.Dataset):
                    _visit_dataset(name, item, contents)
        string_bytes = max(0, path.stat().st_size - contents.stored_bytes) if contents.has_variable_length else 0
    _check_budgets(path, contents, string_bytes)
    return contents


def _check_budgets(path: Path, contents: TraceContents, string_bytes: int) -> None:
    if contents.attribute_count > MAX_TRACE_ATTRIBUTES:
        raise MlflowException(f"{path} holds more than {MAX_TRACE_ATTRIBUTES:,} attributes; refusing to read it.")
    if contents.attribute_bytes > MAX_ATTRIBUTE_BYTES:
        raise MlflowException(
            f"{path} holds {contents.attribute_bytes:,} bytes of attributes, over the limit of "
            f"{MAX_ATTRIBUTE_BYTES:,} bytes; a trace's attributes are a few KiB. Refusing to read it."
        )
    if string_bytes > MAX_STRING_BYTES:
        raise MlflowException(
            f"{path} may hold up to {string_bytes:,} bytes of variable-length strings or attributes (its bytes "
            f"outside arrays), over the limit of {MAX_STRING_BYTES:,} bytes; a trace's names and labels take a "
            "few KiB. Refusing to read it."
        )
    limit = max_trace_bytes()
    total = sum(array.nbytes for array in contents.arrays.values()) + 2 * string_bytes
    if total > limit:
        largest = sorted(contents.arrays.items(), key=lambda item: item[1].nbytes, reverse=True)[:3]
        listed = "; ".join(
            f"{name} {tuple(array.shape)} of {array.dtype}: {array.nbytes:,} bytes decoded" for name, array in largest
        )
        raise MlflowException(
            f"{path} declares {total:,} bytes of arrays once decoded, over the limit of {limit:,} bytes "
            f"({MAX_TRACE_BYTES_VARIABLE}); refusing to read it. The largest: {listed}."
        )
