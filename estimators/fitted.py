"""What a fitted estimator holds besides its trace: the built PyMC model and its compiled predictors."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pymc as pm

from estimators.predictive import PosteriorPredictor, precomputed_bytes_limit


class FittedModel:
    """The PyMC model a fit built, and each predictor compiled from it, made once and shared.

    ``fit`` makes it with the model it has just fitted; loading and unpickling make it with
    nothing built yet, and the model is then built (from the training data kept in the
    trace) on first use. Threads that predict at once share one model and one compiled
    function per predictor.

    Parameters
    ----------
    build_model : callable
        Builds the model when none was given.
    model : pm.Model, optional
        The model, if already built.
    """

    def __init__(self, build_model: Callable[[], pm.Model], model: pm.Model | None = None):
        self._build_model = build_model
        self._model = model
        self._predictors: dict[str, PosteriorPredictor] = {}
        self._lock = threading.RLock()
        #: Most bytes a predictor may precompute over all draws when built (None: no limit).
        self.max_precomputed_bytes: int | None = None

    @property
    def model(self) -> pm.Model:
        """The PyMC model over the training data."""
        with self._lock:
            if self._model is None:
                self._model = self._build_model()
            return self._model

    def predictor(self, key: str, compile_predictor: Callable[[pm.Model], PosteriorPredictor]) -> PosteriorPredictor:
        """The predictor named ``key``, compiled by ``compile_predictor(model)`` on first use."""
        with self._lock:
            if key not in self._predictors:
                with precomputed_bytes_limit(self.max_precomputed_bytes):
                    self._predictors[key] = compile_predictor(self.model)
            return self._predictors[key]
