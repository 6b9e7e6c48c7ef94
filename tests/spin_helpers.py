"""Shared by the spin-sampler tests: chi-square of sampled states against an exact law."""

import numpy as np
from scipy import stats


def state_codes(spins):
    """Integer code of each +-1 configuration (bit i set where spin i is +1)."""
    bits = (np.asarray(spins) > 0).astype(np.int64)
    return (bits << np.arange(bits.shape[-1])).sum(-1)


def chi2_pvalue(codes, probs):
    """Chi-square p-value of the state counts against ``probs`` (cells with < 5 expected
    counts pooled) and the total-variation distance of the empirical law."""
    counts = np.bincount(codes, minlength=probs.size)
    expected = probs * codes.size
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    chi2 = ((obs - exp) ** 2 / exp).sum()
    return stats.chi2.sf(chi2, obs.size - 1), 0.5 * np.abs(counts / codes.size - probs).sum()
