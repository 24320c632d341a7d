"""Plots of a fit as PNG bytes, drawn off-screen: ELBO or trace and rank, posteriors, predictive check."""

from __future__ import annotations

import arviz_plots
import numpy as np
import xarray as xr

from estimators.base import BayesianEstimator
from estimators.inference import PLATEAU_WINDOW, final_loss
from mlflow_pmlearn.autologging.metrics import COVERAGE_PROB, PredictiveChecks
from mlflow_pmlearn.scoring import arviz_png, figure, png

#: Most panels (scalar components) in the rank plot.
MAX_RANK_PANELS = 12
#: Most rows (scalar components) in the posterior forest plot.
MAX_FOREST_ROWS = 60


def _elbo_plot(loss: np.ndarray) -> bytes:
    """The whole ELBO curve beside its last 90% (zoomed to its range), with the
    final ELBO that the console and the ``elbo_final`` metric report."""
    drawn, (whole, end) = figure(width=10, panels=2)
    iterations, elbo, final = np.arange(1, len(loss) + 1), -loss, -final_loss(loss)
    whole.plot(iterations, elbo, lw=0.6)
    whole.set(xlabel="iteration", ylabel="ELBO", title="ADVI evidence lower bound: the whole fit")
    start = len(loss) // 10
    end.plot(iterations[start:], elbo[start:], lw=0.6)
    low, high = np.percentile(elbo[start:], [1, 100])
    end.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    end.axhline(
        final, color="C1", lw=1, label=f"final ELBO {final:,.6g} (mean of the last {min(PLATEAU_WINDOW, len(loss))})"
    )
    end.set(xlabel="iteration", title=f"from iteration {start + 1:,}")
    end.legend(loc="lower right")
    return png(drawn)


def _forest_variables(idata: xr.DataTree, names: list[str]) -> tuple[list[str], list[str]]:
    """The variables that fit in the forest plot (``MAX_FOREST_ROWS`` rows), and those left out."""
    shown, left_out, rows = [], [], 0
    for name in names:
        size = int(np.prod(idata.posterior[name].shape[2:]))
        if rows + size <= MAX_FOREST_ROWS:
            shown.append(name)
            rows += size
        else:
            left_out.append(name)
    return shown, left_out


def in_data_units(model) -> list[str]:
    """The variables the posterior plot shows: the free ones not on the standardised scale
    (the built-ins name those ``*_std``) and the deterministics, where the built-ins keep
    each quantity in the data's units, labelled by the model's coordinates (feature names,
    class labels, component numbers)."""
    free = [rv.name for rv in model.free_RVs if not rv.name.endswith("_std")]
    return [*free, *(variable.name for variable in model.deterministics)]


def fit_plots(
    estimator: BayesianEstimator, checks: PredictiveChecks | None = None, idata: xr.DataTree | None = None
) -> dict[str, bytes]:
    """PNG plots by file name: ELBO curve or trace and rank plots, posteriors, a PPC.

    Parameters
    ----------
    estimator : BayesianEstimator
        The fitted estimator.
    checks : PredictiveChecks, optional
        :func:`predictive_checks` on the training data; without draws, no PPC plot.
    idata : DataTree, optional
        The trace to plot, by default ``estimator.idata_`` (e.g. one with relabelled coordinates).
    """
    idata = estimator.idata_ if idata is None else idata
    model = estimator.pymc_model()
    free = [rv.name for rv in model.free_RVs]
    plots = {}
    if "fit_history" in idata.children:
        plots["elbo.png"] = _elbo_plot(idata.fit_history["loss"].values)
    if "sample_stats" in idata.children:
        plots["trace.png"] = arviz_png(arviz_plots.plot_trace_dist, idata, var_names=free, compact=True)
        ranked, n_panels = [], 0
        for name in free:  # rank plots of the first dozen scalar components
            size = int(np.prod(idata.posterior[name].shape[2:]))
            if n_panels + size > MAX_RANK_PANELS:
                break
            ranked.append(name)
            n_panels += size
        if ranked:
            plots["rank.png"] = arviz_png(arviz_plots.plot_rank, idata, var_names=ranked)
    shown, left_out = _forest_variables(idata, in_data_units(model))
    if shown:
        title = "posterior"
        if left_out:
            title += f"\nnot shown (too many components): {', '.join(left_out)}"
        plots["posterior.png"] = arviz_png(arviz_plots.plot_forest, idata, title, var_names=shown, combined=True)
    if checks is not None and checks.draws is not None:
        plots["posterior_predictive_check.png"] = ppc_plot(estimator, checks)
    return plots


def _class_shares(ax, estimator: BayesianEstimator, checks: PredictiveChecks) -> None:
    """Each class's share of the training rows, observed and under the (posterior or prior) predictive."""
    observed, samples, classes = checks.observed, checks.draws, estimator.classes_
    positions = np.arange(len(classes))
    draw_shares = np.stack([(samples == c).mean(axis=1) for c in classes], axis=1)
    tail = 50 * (1 - COVERAGE_PROB)
    low, high = np.percentile(draw_shares, [tail, 100 - tail], axis=0)
    ax.bar(positions, [(observed == c).mean() for c in classes], color="0.7", label="observed")
    ax.errorbar(
        positions,
        draw_shares.mean(0),
        yerr=[draw_shares.mean(0) - low, high - draw_shares.mean(0)],
        fmt="o",
        color="C0",
        label=f"{checks.draws_from} ({COVERAGE_PROB:.0%})",
    )
    ax.set_xticks(positions, [str(c) for c in classes])
    ax.set(xlabel=checks.target_name, ylabel="share of rows")


def _target_histograms(ax, estimator: BayesianEstimator, checks: PredictiveChecks) -> None:
    """The histogram of the training targets over those of the (posterior or prior) predictive draws."""
    from matplotlib.collections import LineCollection

    observed, samples = checks.observed, checks.draws
    bins = np.histogram_bin_edges(np.concatenate([observed, samples.ravel()]), bins=40)
    edges = np.repeat(bins, 2)[1:-1]
    # All draws' histograms as one collection of step lines: one artist draws fast.
    steps = [np.column_stack([edges, np.repeat(np.histogram(draw, bins, density=True)[0], 2)]) for draw in samples]
    label = f"{checks.draws_from} ({len(samples)} draws)"
    ax.add_collection(LineCollection(steps, colors="C0", alpha=0.15, label=label))
    ax.stairs(np.histogram(observed, bins, density=True)[0], bins, color="k", lw=2, label="observed")
    ax.autoscale_view()
    ax.set(xlabel=checks.target_name, ylabel="density")


#: The posterior predictive check panel of each form of target, as the estimator's kind
#: declares it (``target_type``).
_PPC_PANELS = {"continuous": _target_histograms, "categorical": _class_shares}


def ppc_plot(estimator: BayesianEstimator, checks: PredictiveChecks) -> bytes:
    """The check plot of ``checks``' draws (posterior or prior predictive) against the training targets."""
    drawn, ax = figure(width=7, height=4)
    _PPC_PANELS[estimator.target_type](ax, estimator, checks)
    title = f"{checks.draws_from} check on the training data"
    if len(checks.observed) < checks.n_rows:
        title += f" ({len(checks.observed):,} of {checks.n_rows:,} rows)"
    ax.set_title(title)
    ax.legend()
    return png(drawn)
