"""Covariance functions and the Gaussian marginal likelihood of the Gaussian-process models.

A kernel is named by a string (``"rbf"``, ``"matern52"``, ``"matern32"``,
``"exponential"``), so that it is a JSON-compatible hyper-parameter; its length scales and
amplitude are random variables of the model, not settings.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
import scipy.linalg
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

#: The kernel names ``kernel=`` accepts; ``None`` means the first, the squared exponential.
KERNELS = ("rbf", "matern52", "matern32", "exponential")

#: Added to the diagonal of covariance matrices of standardised targets, for stable Cholesky factors.
JITTER = 1e-6


def covariance(
    kernel: str,
    A: pt.TensorVariable,
    B: pt.TensorVariable,
    length_scale: pt.TensorVariable,
    amplitude: pt.TensorVariable,
) -> pt.TensorVariable:
    """``amplitude**2 * k(|a - b| / length_scale)`` between the rows of ``A`` and of ``B``.

    Parameters
    ----------
    kernel : str
        One of :data:`KERNELS`.
    A, B : TensorVariable of shape (n, d) and (m, d)
        Rows to compare.
    length_scale : TensorVariable
        A scalar, or one length scale per column (automatic relevance determination).
    amplitude : TensorVariable
        Standard deviation of the process, a scalar.

    Returns
    -------
    TensorVariable of shape (n, m)
    """
    A = A / length_scale
    B = B / length_scale
    squared = pt.sum(A**2, axis=-1)[:, None] + pt.sum(B**2, axis=-1)[None, :] - 2.0 * A @ B.T
    if kernel == "rbf":
        correlation = pt.exp(-0.5 * pt.maximum(squared, 0.0))
    else:
        # 0 at (numerically) zero distance, with a finite gradient there: the square root
        # is taken of a value bounded away from 0 and discarded by the switch.
        r = pt.switch(squared > 1e-12, pt.sqrt(pt.maximum(squared, 1e-12)), 0.0)
        if kernel == "matern52":
            correlation = (1.0 + np.sqrt(5.0) * r + 5.0 / 3.0 * r**2) * pt.exp(-np.sqrt(5.0) * r)
        elif kernel == "matern32":
            correlation = (1.0 + np.sqrt(3.0) * r) * pt.exp(-np.sqrt(3.0) * r)
        elif kernel == "exponential":
            correlation = pt.exp(-r)
        else:
            raise ValueError(f"Unknown kernel {kernel!r}; use one of {KERNELS}.")
    return amplitude**2 * correlation


class GaussianLogLikelihood(Op):
    """``log N(y | 0, K)`` and its gradients with respect to ``K`` and ``y``, from one Cholesky factor.

    The three outputs are the log density, ``0.5 * (alpha alpha^T - K^-1)`` and ``-alpha``
    (``alpha = K^-1 y``). The gradient of the first output reuses the other two: PyTensor
    merges the application made for the gradient with the one made for the value, so a
    fitting step factorises ``K`` once and inverts it once (about ``n^3`` flops), where
    differentiating ``pm.MvNormal``'s log density (through ``pt.linalg.cholesky`` and
    triangular solves) costs several times as much: 1.15 s against 0.17 s per gradient at
    1,000 rows here. A ``K`` that is not positive definite gives ``-inf`` (and zero
    gradients).
    """

    __props__ = ()

    def make_node(self, K, y):
        K = pt.as_tensor_variable(K, dtype="float64")
        y = pt.as_tensor_variable(y, dtype="float64")
        if K.ndim != 2 or y.ndim != 1:
            raise TypeError(f"GaussianLogLikelihood takes a matrix and a vector; got {K.ndim}-D and {y.ndim}-D.")
        return Apply(self, [K, y], [pt.dscalar(), pt.dmatrix(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        K, y = inputs
        try:
            factor = scipy.linalg.cho_factor(K, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            outputs[0][0] = np.asarray(-np.inf)
            outputs[1][0] = np.zeros_like(K)
            outputs[2][0] = np.zeros_like(y)
            return
        alpha = scipy.linalg.cho_solve(factor, y, check_finite=False)
        log_det = 2.0 * np.sum(np.log(np.diag(factor[0])))
        outputs[0][0] = np.asarray(-0.5 * (y @ alpha + log_det + len(y) * np.log(2.0 * np.pi)))
        inverse, _ = scipy.linalg.lapack.dpotri(factor[0], lower=1)
        inverse = np.tril(inverse)
        inverse += np.tril(inverse, -1).T
        outputs[1][0] = 0.5 * (np.outer(alpha, alpha) - inverse)
        outputs[2][0] = -alpha

    def pullback(self, inputs, outputs, output_grads):
        """Gradients of all three outputs, so that second derivatives (Laplace's Hessian) exist.

        With ``alpha = K^-1 y`` and ``K^-1 = alpha alpha^T - 2 * outputs[1]``, and ``G``,
        ``g`` the cotangents of the second and third outputs: ``d/dK`` of ``<G, outputs[1]>``
        is ``0.5 K^-1 G K^-1 - (K^-1 G_sym alpha) alpha^T`` and of ``<g, outputs[2]>`` is
        ``(K^-1 g) alpha^T``; ``d/dy`` are ``K^-1 G_sym alpha`` and ``-K^-1 g``.
        """
        _, grad_K, minus_alpha = outputs
        value_grad, matrix_grad, vector_grad = output_grads
        total_K, total_y = pt.zeros_like(grad_K), pt.zeros_like(minus_alpha)
        if not isinstance(value_grad.type, DisconnectedType):
            total_K, total_y = total_K + value_grad * grad_K, total_y + value_grad * minus_alpha
        if isinstance(matrix_grad.type, DisconnectedType) and isinstance(vector_grad.type, DisconnectedType):
            return [total_K, total_y]
        alpha = -minus_alpha
        K_inverse = pt.outer(alpha, alpha) - 2.0 * grad_K
        if not isinstance(matrix_grad.type, DisconnectedType):
            u = K_inverse @ (0.5 * (matrix_grad + matrix_grad.T) @ alpha)
            total_K = total_K + 0.5 * K_inverse @ matrix_grad @ K_inverse - pt.outer(u, alpha)
            total_y = total_y + u
        if not isinstance(vector_grad.type, DisconnectedType):
            w = K_inverse @ vector_grad
            total_K, total_y = total_K + pt.outer(w, alpha), total_y - w
        return [total_K, total_y]


gaussian_log_likelihood = GaussianLogLikelihood()


@register_funcify_default_op_cache_key(GaussianLogLikelihood)
def _numba_gaussian_log_likelihood(op, node, **kwargs):
    """The Numba backend's :class:`GaussianLogLikelihood` (PyTensor 3's default backend).

    Without it, Numba runs ``perform`` in object mode, which its cache cannot store: every
    fit would compile the model's log density afresh (28 s against 2 s per GP refit here).
    ``K^-1`` comes from the inverse of the Cholesky factor, ``alpha`` from the same.
    """

    @numba_njit
    def log_likelihood_and_gradients(K, y):
        try:
            factor = np.linalg.cholesky(K)
        except Exception:  # not positive definite
            return np.array(-np.inf), np.zeros_like(K), np.zeros_like(y)
        factor_inverse = np.linalg.inv(factor)
        inverse = factor_inverse.T @ factor_inverse
        alpha = factor_inverse.T @ (factor_inverse @ y)
        log_det = 2.0 * np.sum(np.log(np.diag(factor)))
        log_density = -0.5 * (y @ alpha + log_det + len(y) * np.log(2.0 * np.pi))
        return np.array(log_density), 0.5 * (np.outer(alpha, alpha) - inverse), -alpha

    return log_likelihood_and_gradients
