"""A real ``mlflow models serve`` process on 127.0.0.1, and a bounded load against it.

Shared by the serving tests and the load benchmark. Not a test module: the ``tests/*/test_*.py``
import it as ``model_server``, and ``benchmarks/load_test.py`` as ``tests.model_server``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ModelServer:
    """``mlflow models serve`` in its own process group, listening on loopback only.

    Parameters
    ----------
    model_uri : str
        The model to serve (a local path or any URI MLflow resolves).
    log_dir : path
        Where the server's output goes (``server-<port>.log``).
    env : dict, optional
        Variables added to this process's environment for the server
        (``MLFLOW_TRACKING_URI``, ``MLFLOW_PMLEARN_MAX_ROWS``, ...).
    workers : int, default=1
        Uvicorn worker processes (``mlflow models serve --workers``).
    """

    def __init__(self, model_uri: str, log_dir: str | os.PathLike, env: dict[str, str] | None = None, workers: int = 1):
        self.port = free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / f"server-{self.port}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _log_tail(self) -> str:
        return self.log_path.read_text()[-3000:]

    def wait_until_ready(self, timeout: float = 180.0) -> None:
        """Return once every worker has started (its model loaded) and ``/ping`` answers 200.

        Raise with the server's log if it exits or times out. (``/ping`` alone answers as
        soon as the first worker is up; the others may still be loading the model.)
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self._log_tail()}")
            started = self.log_path.read_text().count("Application startup complete.")
            try:
                if started >= self.workers and requests.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready after {timeout} s: {self._log_tail()}")

    def invoke(
        self, body: Any, content_type: str = "application/json", session: requests.Session | None = None
    ) -> requests.Response:
        """POST ``body`` (a JSON-able object, or a str/bytes sent as it is) to ``/invocations``."""
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        post = (session or requests).post
        return post(f"{self.url}/invocations", data=data, headers={"Content-Type": content_type}, timeout=60)

    def rss_bytes(self) -> int:
        """Resident memory of the server and all its descendants (the uvicorn workers)."""
        return process_tree_rss(self.process.pid)

    def stop(self) -> None:
        """SIGTERM the server's process group (SIGKILL if it lingers) and close the log."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self._log.close()


def process_tree_rss(pid: int) -> int:
    """Resident set size in bytes of ``pid`` and its descendants, read from ``/proc`` (Linux).

    Parameters
    ----------
    pid : int
        The root process.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    page_size, total, pending = os.sysconf("SC_PAGE_SIZE"), 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += int((Path("/proc") / str(current) / "statm").read_text().split()[1]) * page_size
        except OSError:
            continue
        pending.extend(children.get(current, []))
    return total


# -- a bounded load ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadRequest:
    """One request body; ``expected`` holds the answer's records for a good one, None for a bad one."""

    body: str
    expected: list[dict[str, Any]] | None


def request_pool(
    pyfunc: Any, rows: pd.DataFrame, *, n_good: int = 200, max_rows: int = 100, seed: int = 0
) -> tuple[list[LoadRequest], list[LoadRequest]]:
    """Good requests (1 to 5 rows, with or without params) answered by ``pyfunc``, and bad ones.

    The answers are computed here, one request at a time in this thread: the single-threaded
    pyfunc answers that a served answer must equal. The bad requests each need a 4xx: NaN, a
    missing column, a string in a numeric column, an interval probability out of range,
    malformed JSON, more rows than ``max_rows`` (the server's ``MLFLOW_PMLEARN_MAX_ROWS``).

    Parameters
    ----------
    pyfunc : mlflow.pyfunc.PyFuncModel
        The served model, loaded in this process.
    rows : DataFrame
        Good rows to draw requests from (the model's columns).
    n_good : int
        How many distinct good requests.
    max_rows : int
        The server's row limit.
    seed : int
        Seed of the draws.
    """
    rng = np.random.default_rng(seed)
    param_choices = [None, {"return_std": True}, {"return_std": True, "interval_prob": 0.9}]
    columns, first = [str(name) for name in rows.columns], rows.iloc[0].tolist()

    def split(names: list[str], data: list[list[Any]], **extra: Any) -> str:
        # json writes each float's repr, which reads back as the same float.
        return json.dumps({"dataframe_split": {"columns": names, "data": data}, **extra})

    good = []
    for _ in range(n_good):
        frame = rows.iloc[rng.choice(len(rows), size=int(rng.integers(1, 6)), replace=False)].reset_index(drop=True)
        params = param_choices[int(rng.integers(len(param_choices)))]
        body = split(columns, frame.to_numpy().tolist(), **({"params": params} if params else {}))
        good.append(LoadRequest(body, pyfunc.predict(frame, params=params).to_dict(orient="records")))

    bad = [
        split(columns, [[float("nan"), *first[1:]]]),
        split(columns[1:], [first[1:]]),
        split(columns, [["abc", *first[1:]]]),
        split(columns, [first], params={"interval_prob": 1.5}),
        '{"dataframe_split": {"columns": [',
        split(columns, [first] * (max_rows + 1)),
    ]
    return good, [LoadRequest(body, None) for body in bad]


@dataclass
class LoadReport:
    """What a load run measured."""

    requests: int
    concurrency: int
    seconds: float
    statuses: Counter = field(default_factory=Counter)
    #: Requests that got no HTTP answer (connection error, timeout), by exception type.
    failures: Counter = field(default_factory=Counter)
    #: Good requests whose answer differed from the pyfunc's, or bad ones that got no 4xx.
    wrong_answers: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    #: (seconds since the start, resident bytes of the server's process tree).
    rss: list[tuple[float, int]] = field(default_factory=list)

    def rss_quartile_means(self, warm_up: float = 0.1) -> tuple[float, float]:
        """Mean RSS of the first and of the last quarter of the run, after the first ``warm_up`` of it."""
        samples = [bytes_ for at, bytes_ in self.rss if at >= warm_up * self.seconds]
        quarter = max(1, len(samples) // 4)
        return float(np.mean(samples[:quarter])), float(np.mean(samples[-quarter:]))

    def summary(self) -> dict[str, Any]:
        """The figures, JSON-ready: counts, latency percentiles (ms), throughput, RSS (MiB)."""
        first, last = self.rss_quartile_means()
        mib = 2.0**20
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "requests_per_second": round(self.requests / self.seconds, 1),
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
            "failures": dict(self.failures),
            "wrong_answers": len(self.wrong_answers),
            "latency_ms": {
                "p50": round(float(np.percentile(self.latencies, 50)) * 1000, 2),
                "p99": round(float(np.percentile(self.latencies, 99)) * 1000, 2),
                "max": round(max(self.latencies) * 1000, 2),
            },
            "rss_mib": {
                "first_sample": round(self.rss[0][1] / mib, 1),
                "last_sample": round(self.rss[-1][1] / mib, 1),
                "first_quarter_mean": round(first / mib, 1),
                "last_quarter_mean": round(last / mib, 1),
                "samples": len(self.rss),
            },
        }


def run_load(
    server: ModelServer,
    good: list[LoadRequest],
    bad: list[LoadRequest],
    *,
    n_requests: int,
    concurrency: int = 8,
    bad_share: float = 0.1,
    time_limit: float = 60.0,
    rss_every: float = 0.2,
    seed: int = 0,
) -> LoadReport:
    """Send ``n_requests`` from ``concurrency`` threads (a share of them bad), within ``time_limit``.

    Each good answer is compared with its expected records (labels exactly, numbers to the
    last bit); each bad request must get a 4xx. The server's resident memory is sampled
    every ``rss_every`` seconds. No request is sent once ``time_limit`` has passed, so the
    report may count fewer than ``n_requests``.

    Parameters
    ----------
    server : ModelServer
        A ready server.
    good, bad : list of LoadRequest
        From :func:`request_pool`.
    n_requests : int
        How many requests at most.
    concurrency : int
        Client threads, each with its own connection.
    bad_share : float
        Expected share of bad requests.
    time_limit : float
        Seconds after which no request is sent.
    rss_every : float
        Seconds between memory samples.
    seed : int
        Seed of the order of the requests.
    """
    rng = np.random.default_rng(seed)
    is_bad = rng.uniform(size=n_requests) < bad_share
    plan = [bad[int(rng.integers(len(bad)))] if b else good[int(rng.integers(len(good)))] for b in is_bad]
    next_index = iter(range(n_requests))
    lock, done = threading.Lock(), threading.Event()
    report = LoadReport(requests=0, concurrency=concurrency, seconds=0.0)
    start = time.monotonic()

    def sample_memory() -> None:
        while not done.is_set():
            report.rss.append((time.monotonic() - start, server.rss_bytes()))
            done.wait(rss_every)

    def client() -> None:
        session = requests.Session()
        while time.monotonic() - start < time_limit:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            request = plan[index]
            sent = time.monotonic()
            try:
                response = server.invoke(request.body, session=session)
            except requests.RequestException as error:
                with lock:
                    report.failures[type(error).__name__] += 1
                continue
            elapsed = time.monotonic() - sent
            problem = _problem(request, response)
            with lock:
                report.requests += 1
                report.statuses[response.status_code] += 1
                report.latencies.append(elapsed)
                if problem:
                    report.wrong_answers.append(f"request {index}: {problem}")

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    clients = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    report.seconds = time.monotonic() - start
    done.set()
    sampler.join()
    report.rss.append((report.seconds, server.rss_bytes()))
    return report


def load_test(
    model_dir: str | os.PathLike,
    log_dir: str | os.PathLike,
    *,
    n_requests: int,
    concurrency: int = 8,
    workers: int = 2,
    time_limit: float = 60.0,
    max_rows: int = 100,
) -> LoadReport:
    """Serve the model at ``model_dir`` with ``workers`` workers and run a bounded load against it.

    The expected answers come from the model loaded in this process (single-threaded).

    Parameters
    ----------
    model_dir : path
        A saved pmlearn regressor.
    log_dir : path
        Where the server's log goes.
    n_requests, concurrency, time_limit
        As in :func:`run_load`.
    workers : int
        Uvicorn workers of the server.
    max_rows : int
        The server's ``MLFLOW_PMLEARN_MAX_ROWS``.
    """
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    rows = pyfunc.get_raw_model().training_sample(n_rows=200)
    good, bad = request_pool(pyfunc, rows, max_rows=max_rows)
    server = ModelServer(str(model_dir), log_dir, env={"MLFLOW_PMLEARN_MAX_ROWS": str(max_rows)}, workers=workers)
    try:
        server.wait_until_ready()
        return run_load(server, good, bad, n_requests=n_requests, concurrency=concurrency, time_limit=time_limit)
    finally:
        server.stop()


def _problem(request: LoadRequest, response: requests.Response) -> str | None:
    if request.expected is None:
        return None if 400 <= response.status_code < 500 else f"bad request answered {response.status_code}"
    if response.status_code != 200:
        return f"good request answered {response.status_code}: {response.text[:300]}"
    got = response.json()["predictions"]
    return (
        None if _same_records(got, request.expected) else f"answer {got} differs from the pyfunc's {request.expected}"
    )


def _same_records(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Whether ``got`` has ``expected``'s records: the same columns, equal labels and numbers.

    Numbers to the last bit: JSON carries floats losslessly, and the server compiles the same
    functions as this process, with the same results whatever its compile cache holds
    (``estimators/compilation.py``)."""
    try:
        pd.testing.assert_frame_equal(pd.DataFrame(got), pd.DataFrame(expected), check_dtype=False, check_exact=True)
    except AssertionError:
        return False
    return True
