"""First fits on an empty compile cache: a new user's main job, and each built-in's first fit.

- ``main job``: ``examples/quickstart/main.py`` (fit under autolog, register, predict from
  the registry) in a fresh process, with an empty PyTensor compile directory and a fresh
  sqlite store; then once more on the directory the first run filled. Wall time of the
  process, start to exit. Target: <= 20 s on the empty cache. Then once more on another
  empty cache, timing each function Numba compiles (where the cold time goes).
- ``first fit``: each built-in with its default engine and settings, in a fresh process
  with an empty compile directory (imports done before the clock starts): its first fit on
  40 rows, then a second fit on 40 new rows in the same process, as a retraining job does.
  Target: the first <= 3x the second.

Run from the repository root (after ``pip install -e ".[test]"``)::

    python -m benchmarks.first_fit          # prints a table, writes first_fit.json (about 10 minutes on 2 cores)
    python -m benchmarks.first_fit --against REV   # the main job of REV and of this tree, side by side

``--against REV`` checks REV out in a temporary git worktree and runs its main job and this
tree's, alternating, each pair of runs (empty cache, then the cache it filled) on its own
empty cache; it writes ``first_fit_against.json``. Machines drift by tens of percent from
one day to the next, so a change is judged against its base in one run, not against an
older figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import write_results

RESULTS = Path(__file__).with_name("first_fit.json")
RESULTS_AGAINST = Path(__file__).with_name("first_fit_against.json")
REPOSITORY = Path(__file__).resolve().parents[1]
MAIN_JOB = REPOSITORY / "examples" / "quickstart" / "main.py"
MAIN_JOB_TARGET_S, FIRST_FIT_TARGET = 20.0, 3.0


def _empty_cache_environment(directory: str) -> dict[str, str]:
    """This process's environment with PyTensor's and Numba's caches in ``directory``, empty.

    ``base_compiledir``, not ``compiledir``: PyTensor keeps its Numba cache in the former.
    """
    return {
        **os.environ,
        "PYTENSOR_FLAGS": f"base_compiledir={directory}/pytensor",
        "NUMBA_CACHE_DIR": f"{directory}/numba",
        "MLFLOW_TRACKING_URI": f"sqlite:///{directory}/mlflow.db",
    }


def _main_job_seconds(tree: Path) -> dict[str, float]:
    """Seconds of ``tree``'s quickstart job (its own code first on the path) on an empty
    cache, then on the cache it filled, in fresh processes."""
    seconds = {}
    with tempfile.TemporaryDirectory() as directory:
        environment = {**_empty_cache_environment(directory), "PYTHONPATH": str(tree)}
        for label in ("cold_s", "warm_s"):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, str(tree / MAIN_JOB.relative_to(REPOSITORY))],
                cwd=directory,
                env=environment,
                check=True,
                capture_output=True,
            )
            seconds[label] = time.perf_counter() - start
    return seconds


def bench_main_job() -> dict:
    """Seconds of the quickstart job on an empty cache, then on the cache it filled; and, on
    another empty cache, what Numba compiled during the job (:func:`_numba_compilations`)."""
    seconds: dict = _main_job_seconds(REPOSITORY)
    with tempfile.TemporaryDirectory() as directory:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.first_fit", "--numba-compilations"],
            cwd=REPOSITORY,
            env=_empty_cache_environment(directory),
            check=True,
            capture_output=True,
            text=True,
        )
    seconds["numba_compilations"] = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds


def _numba_compilations() -> list[dict]:
    """Run the main job in this process, timing each function Numba compiles, and where it was called from.

    PyTensor's Numba backend compiles a function's graph at its first call (a cache miss):
    the time is LLVM's, on top of PyTensor's graph rewriting, which is not counted here.
    """
    import runpy
    import traceback

    from numba.core.dispatcher import _DispatcherBase

    compile_for_args, compilations, depth = _DispatcherBase._compile_for_args, [], [0]

    def timed(dispatcher, *args, **kwargs):
        depth[0] += 1
        start = time.perf_counter()
        try:
            return compile_for_args(dispatcher, *args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:  # the outermost compilation, which includes the functions it inlines
                caller = [
                    frame
                    for frame in traceback.extract_stack()[:-1]
                    if not any(f"site-packages/{package}/" in frame.filename for package in ("numba", "pytensor"))
                ][-1]
                compilations.append(
                    {
                        "seconds": time.perf_counter() - start,
                        "called_from": f"{caller.filename.split('site-packages/')[-1]}:{caller.lineno} ({caller.name})",
                    }
                )

    _DispatcherBase._compile_for_args = timed
    sys.argv = [str(MAIN_JOB)]
    runpy.run_path(str(MAIN_JOB), run_name="__main__")
    return sorted(compilations, key=lambda compilation: -compilation["seconds"])


def _fit_twice(name: str) -> dict[str, float]:
    """In this process: the named built-in's first fit, then a second on new data (seconds)."""
    import warnings

    import numpy as np

    from tests.family_helpers import every_estimator, training_set

    warnings.filterwarnings("ignore")
    (estimator,) = [e for e in every_estimator(random_seed=0, progressbar=False) if type(e).__name__ == name]
    rng = np.random.default_rng(0)
    seconds = {}
    for label in ("first_s", "second_s"):
        X, y = training_set(estimator, rng)
        start = time.perf_counter()
        estimator.fit(X, y)
        seconds[label] = time.perf_counter() - start
    return {"inference": estimator.inference, **seconds}


def bench_first_fits() -> list[dict]:
    """One row per built-in, each in a fresh process with an empty compile cache."""
    from tests.family_helpers import every_estimator

    rows = []
    for estimator in every_estimator():
        name = type(estimator).__name__
        with tempfile.TemporaryDirectory() as directory:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.first_fit", "--child", name],
                cwd=REPOSITORY,
                env=_empty_cache_environment(directory),
                capture_output=True,
                text=True,
                check=True,
            )
        row = {"estimator": name, **json.loads(done.stdout.strip().splitlines()[-1])}
        row["ratio"] = row["first_s"] / row["second_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bench_main_job_against(revision: str, rounds: int = 2) -> dict:
    """The main job of ``revision`` and of this tree, alternating, ``rounds`` times each."""
    runs: dict[str, list[dict[str, float]]] = {revision: [], "this tree": []}
    with tempfile.TemporaryDirectory() as directory:
        checkout = Path(directory) / "checkout"
        subprocess.run(["git", "worktree", "add", "--detach", str(checkout), revision], cwd=REPOSITORY, check=True)
        try:
            for _ in range(rounds):
                for label, tree in ((revision, checkout), ("this tree", REPOSITORY)):
                    runs[label].append(_main_job_seconds(tree))
                    print(label, json.dumps(runs[label][-1]), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=REPOSITORY, check=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--numba-compilations", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--against", metavar="REV", help="time the main job of REV and of this tree, side by side")
    args = parser.parse_args()
    if args.against:
        runs = bench_main_job_against(args.against)
        print(f"\n{'main job':24s} {'empty cache s':>14s} {'filled cache s':>15s}")
        for label, pairs in runs.items():
            cold = ", ".join(f"{pair['cold_s']:.1f}" for pair in pairs)
            warm = ", ".join(f"{pair['warm_s']:.1f}" for pair in pairs)
            print(f"{label:24s} {cold:>14s} {warm:>15s}")
        write_results(RESULTS_AGAINST, against=args.against, runs=runs, load_average=os.getloadavg()[0])
        return
    if args.child:
        print(json.dumps(_fit_twice(args.child)))
        return
    if args.numba_compilations:
        print(json.dumps(_numba_compilations()))
        return
    main_job = bench_main_job()
    print(json.dumps(main_job), flush=True)
    rows = bench_first_fits()
    print(
        f"\nmain job (examples/quickstart/main.py), fresh process: empty cache {main_job['cold_s']:.1f} s "
        f"(target <= {MAIN_JOB_TARGET_S:.0f} s), filled cache {main_job['warm_s']:.1f} s"
    )
    compilations = main_job["numba_compilations"]
    print(
        f"Numba compiled {len(compilations)} functions in {sum(c['seconds'] for c in compilations):.1f} s; the largest:"
    )
    for compilation in compilations[:5]:
        print(f"  {compilation['seconds']:5.2f} s  called from {compilation['called_from']}")
    print(
        f"{'estimator':32s} {'engine':10s} {'first s':>8s} {'second s':>9s} {'ratio':>6s}  target <= {FIRST_FIT_TARGET:.0f}x"
    )
    for row in rows:
        print(
            f"{row['estimator']:32s} {row['inference']:10s} {row['first_s']:8.1f} {row['second_s']:9.1f} {row['ratio']:5.1f}x"
        )
    write_results(RESULTS, main_job=main_job, first_fits=rows, load_average=os.getloadavg()[0])


if __name__ == "__main__":
    main()
