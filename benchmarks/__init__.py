"""Benchmarks: ratios measured side by side, each printed as a table and written as JSON."""

from __future__ import annotations

import json
import os
import platform
from datetime import date
from pathlib import Path


def write_results(path: str | os.PathLike, **fields) -> None:
    """Write a benchmark's results as JSON, with the date and the machine first, and say where."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result = {"date": date.today().isoformat(), "machine": machine, **fields}
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")
