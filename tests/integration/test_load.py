"""A bounded load on a real ``mlflow models serve`` process with two workers (loopback only).

About 1,000 requests from 8 client threads, a tenth of them bad: no 5xx and no failed
connection, every good answer equal to the single-threaded pyfunc answer for its rows
(labels exactly, numbers to 1e-12 relative), every bad request a 4xx, and the server's
memory flat from start to end.
``benchmarks/load_test.py`` runs the same load, bigger, and reports its figures.
"""

from __future__ import annotations

import pytest
from conftest import FAST
from model_server import load_test

import mlflow_pmlearn
from estimators.linear_model import LinearRegression

pytestmark = pytest.mark.slow

N_REQUESTS = 1000
#: Memory is flat when the mean of the last quarter of the run is at most this much above
#: the first quarter's (after a warm-up tenth): 20%, or 50 MiB for a small process tree.
RSS_GROWTH = (0.2, 50 * 2**20)


def test_served_model_under_concurrent_load(regression_data, tmp_path):
    X, y, _ = regression_data
    model_dir = tmp_path / "model"
    mlflow_pmlearn.save_model(LinearRegression(**FAST).fit(X, y), model_dir)
    report = load_test(model_dir, tmp_path, n_requests=N_REQUESTS, concurrency=8, workers=2, time_limit=90.0)
    summary = report.summary()
    print(summary)

    assert report.requests == N_REQUESTS, summary
    assert not report.failures, summary
    assert all(status < 500 for status in report.statuses), summary
    assert report.wrong_answers == [], report.wrong_answers[:5]
    bad = sum(count for status, count in report.statuses.items() if 400 <= status < 500)
    assert 0.05 * N_REQUESTS < bad < 0.15 * N_REQUESTS, summary
    first, last = report.rss_quartile_means()
    assert last - first <= max(RSS_GROWTH[0] * first, RSS_GROWTH[1]), summary
