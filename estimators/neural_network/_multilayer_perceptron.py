"""Bayesian multi-layer perceptron classifier."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from estimators.base import BayesianEstimator
from estimators.classification import BayesianClassifier
from estimators.modeling import class_likelihood, standardized, training_constant

#: Hidden-layer activations, by scikit-learn's names.
ACTIVATIONS = {
    "identity": lambda z: z,
    "logistic": pt.sigmoid,
    "tanh": pt.tanh,
    "relu": lambda z: pt.maximum(z, 0.0),
}


class MLPClassifier(BayesianClassifier):
    """Bayesian neural network classifier: a multi-layer perceptron with Normal priors.

    The features are standardised with their training mean and standard deviation, go
    through fully connected hidden layers with the chosen activation, and end in one
    logit (two classes, Bernoulli likelihood) or ``K - 1`` logits against class 0
    (``K`` classes, softmax). Every weight and bias has a Normal prior centred at zero;
    a weight's standard deviation is ``prior_scale / sqrt(fan_in)`` (``fan_in``: the
    width of the layer it reads from), so the prior on each unit's input stays the same
    whatever the widths, and a bias's is ``prior_scale``. The posterior is fitted by
    NUTS (the default, as elsewhere), or by ADVI on the full data or on minibatches of
    ``batch_size`` rows (large data), or by any other engine; predictions average the
    class probabilities over the posterior draws. The weights are not identified (units
    can swap), but the function they give is: on the benchmark's network (4 hidden
    units, 200 rows), NUTS's log-odds matched a long NUTS reference (means within 0.04
    sd, widths 0.95-1.04x) where ADVI's were up to 0.5 sd off and 0.4x as wide
    (``benchmarks/engines.py``).

    Parameters
    ----------
    hidden_layer_sizes : tuple or list of int, or int, default=(16,)
        Width of each hidden layer; an int is one layer. A list is accepted as a tuple
        (JSON, and thus a saved model, turns tuples into lists); an empty one gives a
        Bayesian (multinomial) logistic regression.
    activation : {"tanh", "relu", "logistic", "identity"}, default="tanh"
        Activation of the hidden units.
    prior_scale : float, default=3.0
        Scale of the Normal priors: standard deviation of each bias, and times
        ``1 / sqrt(fan_in)`` of each weight. On standardised features a hidden unit's
        summed input then has prior standard deviation about ``prior_scale``; smaller
        values favour smoother, less confident networks (with mean-field ADVI, down to a
        nearly linear fit).
    batch_size : int or None, default=None
        With ADVI, fit on random minibatches of this many rows (drawn with replacement at
        each iteration; the log-likelihood is scaled up to the full data, and the
        convergence windows are ``sqrt(n_samples / batch_size)`` times longer, since a
        minibatch's loss is noisier). ``None``, or at least as many as the training rows:
        the full data at every iteration. NUTS always uses the full data and refuses a
        ``batch_size``.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator` (``inference``,
        ``n_draws``, ``max_iter``, ``learning_rate``, ``random_seed``, ...);
        ``inference="advi"`` for minibatches.

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws of the weights (``w_1``, ``b_1``, ..., ``w_out``, ``b_out``, in
        standardised feature units), training data and fit history.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_layers_ : int
        Number of layers, input and output layers included.
    n_outputs_ : int
        Number of output logits: 1 for two classes, ``n_classes - 1`` otherwise.
    out_activation_ : str
        ``"logistic"`` (two classes) or ``"softmax"``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : the maximum-likelihood (point estimate) peer.
    estimators.linear_model.LogisticRegression : the model with no hidden layer.

    Notes
    -----
    A network's posterior is symmetric: permuting the hidden units of a layer (and, for
    odd activations such as tanh, flipping the signs of a unit's weights) gives the same
    function, so the posterior has many equivalent modes. ADVI settles in one of them
    (the weights start from a draw of the prior, which breaks the symmetry between
    units); NUTS chains may settle in different ones. Predictions average class
    probabilities over draws, which is unaffected by the labelling of the units; the
    posterior means of individual weights, by contrast, are not meaningful across modes,
    which is why no ``coefs_`` attribute is offered.

    Mean-field ADVI tends to underfit deeper networks: on two-moons data, one hidden
    layer of 16 units reaches 93% test accuracy, two layers of 16 stay near the linear
    model's 86%. One wide hidden layer is the robust choice with ADVI; NUTS does not
    have this bias but is much slower.

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from estimators.neural_network import MLPClassifier
    >>> X, y = make_moons(200, noise=0.2, random_state=0)
    >>> model = MLPClassifier(hidden_layer_sizes=(8,), inference="advi", batch_size=50,
    ...                       n_draws=200, random_seed=0, progressbar=False).fit(X, y)
    >>> model.predict_proba(X[:2]).shape
    (2, 2)
    >>> bool(model.score(X, y) > 0.9)
    True
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "prior_scale": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        hidden_layer_sizes: tuple[int, ...] | list[int] | int = (16,),
        activation: str = "tanh",
        prior_scale: float = 3.0,
        batch_size: int | None = None,
        **inference_params,
    ):
        super().__init__(**inference_params)
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.prior_scale = prior_scale
        self.batch_size = batch_size

    def _hidden_widths(self) -> tuple[int, ...]:
        """``hidden_layer_sizes`` as a tuple of positive ints, or an error saying what is wrong."""
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(np.ravel(np.asarray(sizes, dtype=object)))
        bad = [size for size in sizes if isinstance(size, bool) or not isinstance(size, Integral) or size < 1]
        if bad:
            raise ValueError(
                f"hidden_layer_sizes must hold positive integers (one width per hidden layer); "
                f"got {self.hidden_layer_sizes!r}."
            )
        return tuple(int(size) for size in sizes)

    def minibatch_size(self) -> int | None:
        return self.batch_size

    def build_model(self, X, y):
        X_std, _, _ = standardized(X)
        n_classes = len(self.classes_)
        widths = [X.get_value().shape[1], *self._hidden_widths(), 1 if n_classes == 2 else n_classes - 1]
        activation = ACTIVATIONS[self.activation]
        units = X_std
        n_layers = len(widths) - 1
        for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            name = "out" if layer == n_layers else str(layer)
            # Initial values drawn from the prior (seeded by the fit): identical starting
            # weights would leave the hidden units of a layer interchangeable. The scale
            # depends on the data's width, so it is a shared value, not a literal constant
            # (which would make PyTensor compile new C code for every number of features).
            scale = training_constant(self.prior_scale / np.sqrt(fan_in))
            weights = pm.Normal(f"w_{name}", 0.0, scale, shape=(fan_in, fan_out), initval="prior")
            bias = pm.Normal(f"b_{name}", 0.0, self.prior_scale, shape=fan_out)
            units = pt.dot(units, weights) + bias
            if layer < n_layers:
                units = activation(units)
        total_size = len(X.get_value()) if self.batch_size is not None else None
        class_likelihood("y_obs", units, y, n_classes=n_classes, total_size=total_size)

    @property
    def n_layers_(self) -> int:
        """Number of layers, input and output included."""
        check_is_fitted(self)
        return len(self._hidden_widths()) + 2

    @property
    def n_outputs_(self) -> int:
        """Number of output logits: 1 for two classes, ``n_classes - 1`` otherwise."""
        check_is_fitted(self)
        return max(len(self.classes_) - 1, 1)

    @property
    def out_activation_(self) -> str:
        """``"logistic"`` for two classes, ``"softmax"`` for more."""
        check_is_fitted(self)
        return "logistic" if len(self.classes_) == 2 else "softmax"
