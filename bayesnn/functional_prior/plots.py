"""Plot helpers for functional priors (matplotlib; import on demand).

Prior function samples before/after tuning next to GP samples (1-D inputs), the W1 trace,
and posterior predictive bands.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_prior_samples", "plot_w1_trace", "plot_posterior_bands"]


def _axes(ax, ncols=1, figsize=None):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax
    _, axes = plt.subplots(1, ncols, figsize=figsize or (4 * ncols, 3), squeeze=False)
    return axes[0] if ncols > 1 else axes[0, 0]


def plot_prior_samples(x, samples: dict, num_lines: int = 10, axes=None):
    """One panel per entry of ``samples`` (``{"GP": (n, m), "before": ..., "after": ...}``).

    Draws ``num_lines`` functions and the 2-sd band of each set over 1-D inputs ``x``.
    Returns the axes.
    """
    x = np.asarray(x).reshape(-1)
    axes = _axes(axes, len(samples), (3.5 * len(samples), 3))
    axes = np.atleast_1d(axes)
    for ax, (title, f) in zip(axes, samples.items(), strict=True):
        f = np.asarray(f).reshape(np.asarray(f).shape[0], -1)
        sd = f.std(0)
        ax.fill_between(x, -2 * sd, 2 * sd, color="C0", alpha=0.15)
        ax.plot(x, f[:num_lines].T, lw=0.8, color="C0", alpha=0.7)
        ax.set_title(title)
        ax.set_xlabel("x")
    return axes


def plot_w1_trace(history, ax=None, smooth: int = 10):
    """W1 estimate per prior iteration (raw and a moving average over ``smooth`` steps)."""
    ax = _axes(ax)
    w = np.asarray(history.w1)
    ax.plot(w, lw=0.6, alpha=0.5, label="W1 estimate")
    if smooth > 1 and len(w) >= smooth:
        ax.plot(
            np.arange(smooth - 1, len(w)),
            np.convolve(w, np.ones(smooth) / smooth, "valid"),
            label=f"moving average ({smooth})",
        )
    ax.set_xlabel("prior iteration")
    ax.set_ylabel("W1 (dual estimate)")
    ax.legend()
    return ax


def plot_posterior_bands(x_test, f_samples, x_train=None, y_train=None, noise_var=0.0, ax=None):
    """Predictive mean and 95% bands from function samples ``(s, m)`` at 1-D ``x_test``.

    The outer band adds observation noise of variance ``noise_var``.
    """
    ax = _axes(ax)
    x = np.asarray(x_test).reshape(-1)
    f = np.asarray(f_samples).reshape(np.asarray(f_samples).shape[0], -1)
    mu, sd = f.mean(0), f.std(0)
    sd_y = np.sqrt(sd**2 + noise_var)
    ax.fill_between(
        x, mu - 1.96 * sd_y, mu + 1.96 * sd_y, alpha=0.15, color="C1", label="95% predictive"
    )
    ax.fill_between(x, mu - 1.96 * sd, mu + 1.96 * sd, alpha=0.3, color="C1", label="95% f")
    ax.plot(x, mu, color="C1", label="mean")
    if x_train is not None:
        ax.scatter(
            np.asarray(x_train).reshape(-1),
            np.asarray(y_train).reshape(-1),
            s=8,
            color="k",
            label="train",
        )
    ax.legend(fontsize=7)
    return ax
