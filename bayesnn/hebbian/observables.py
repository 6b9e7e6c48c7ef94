r"""Observables of dense Hebbian networks: Mattis magnetisations, overlaps, replica overlap,
and retrieval summaries that report escapes to other archetypes separately.

- Mattis magnetisation :math:`m_\mu = N^{-1}\sum_i \xi^\mu_i s_i` (reconstruction quality of
  archetype :math:`\mu`);
- overlap :math:`n_\nu` with the network rows (:func:`bayesnn.hebbian.model.overlaps`);
- replica overlap :math:`q_{ab} = N^{-1}\sum_i s^a_i s^b_i`, and
  :math:`q = N^{-1}\sum_i \langle s_i\rangle^2` from time averages.

Agliari et al., arXiv 2212.00606 and arXiv 2211.14067.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .model import energy, overlaps

__all__ = [
    "RECORDABLE",
    "RetrievalSummary",
    "mattis_magnetization",
    "replica_overlap",
    "paired_replica_overlap",
    "edwards_anderson_overlap",
    "make_observer",
    "retrieved_pattern",
    "summarize_retrieval",
]

RECORDABLE = ("m", "n", "q", "energy", "spins")


def mattis_magnetization(archetypes, spins):
    r"""Mattis magnetisations :math:`m_\mu = N^{-1}\sum_i \xi^\mu_i s_i`.

    Parameters
    ----------
    archetypes : Array, shape (K, N)
        :math:`\xi`.
    spins : Array, shape (..., N)
        Configurations (any leading batch/time axes).

    Returns
    -------
    Array, shape (..., K)
    """
    xi = jnp.asarray(archetypes)
    s = jnp.asarray(spins)
    if xi.ndim != 2 or s.shape[-1] != xi.shape[-1]:
        raise ValueError(f"archetypes (K, N) and spins (..., N) mismatch: {xi.shape}, {s.shape}")
    return jnp.einsum("...i,ki->...k", s, xi.astype(s.dtype)) / xi.shape[-1]


def replica_overlap(spins_a, spins_b):
    r"""Replica overlap :math:`q_{ab} = N^{-1}\sum_i s^a_i s^b_i`.

    Parameters
    ----------
    spins_a, spins_b : Array, shape (..., N)
        Two replicas (same disorder, independent dynamics).

    Returns
    -------
    Array, shape (...)
    """
    a, b = jnp.asarray(spins_a), jnp.asarray(spins_b)
    if a.shape != b.shape:
        raise ValueError(f"spins_a and spins_b must have the same shape, got {a.shape}, {b.shape}")
    return jnp.mean(a * b, axis=-1)


def paired_replica_overlap(spin_trace):
    r"""Two-replica overlaps :math:`q_{ab}(t)` of chains run in pairs on the same network.

    Chains ``2j`` and ``2j + 1`` are the replicas ``a, b`` of pair ``j`` (same disorder,
    independent dynamics keys); :math:`q_{ab} = N^{-1}\sum_i s^a_i s^b_i` at each recorded
    time. Its mean over time estimates the RS :math:`q` at equilibrium (the spin-glass order
    parameter; :math:`q = m^2`-like values in the retrieval state).

    Parameters
    ----------
    spin_trace : Array, shape (C, T, N)
        Recorded configurations of ``C`` (even) chains (the runner's (chains, draws) layout).

    Returns
    -------
    Array, shape (C // 2, T)
    """
    s = jnp.asarray(spin_trace)
    if s.ndim != 3 or s.shape[0] % 2:
        raise ValueError(f"spin_trace must be (C, T, N) with an even C, got {s.shape}")
    s = s.astype(jnp.float32)
    return replica_overlap(s[0::2], s[1::2])


def make_observer(net, archetypes=None, record=("m",)):
    r"""Observe function for the chain runner: one chain's state -> dict of observables.

    ``"m"``: Mattis magnetisations (needs ``archetypes``), ``"n"``: overlaps with the network
    rows, ``"energy"``: :math:`H(s)`, ``"spins"``: the configuration as ``int8`` (the spin
    trace). ``"q"`` is a pair observable, computed after the run from the spin trace
    (:func:`paired_replica_overlap`), so it records ``"spins"`` here.

    Parameters
    ----------
    net : HebbianNetwork
        The network.
    archetypes : Array, shape (K, N), optional
        :math:`\xi` for ``"m"``.
    record : sequence of str
        Names from :data:`RECORDABLE`.

    Returns
    -------
    callable
        ``observe(state) -> dict``; ``state.spins`` has shape ``(N,)``.
    """
    names = tuple(record)
    bad = [r for r in names if r not in RECORDABLE]
    if bad or not names:
        raise ValueError(f"record must be a non-empty subset of {RECORDABLE}, got {record!r}")
    if "m" in names and archetypes is None:
        raise ValueError('record "m" needs archetypes')
    xi = None if archetypes is None else jnp.asarray(archetypes)

    def observe(state):
        s = state.spins
        out = {}
        if "m" in names:
            out["m"] = mattis_magnetization(xi, s)
        if "n" in names:
            out["n"] = overlaps(net, s)
        if "energy" in names:
            out["energy"] = energy(net, s)
        if "spins" in names or "q" in names:
            out["spins"] = s.astype(jnp.int8)
        return out

    return observe


def edwards_anderson_overlap(spin_trace, axis: int = 0):
    r""":math:`q = N^{-1}\sum_i \langle s_i\rangle^2` with :math:`\langle\cdot\rangle` the time
    average along ``axis``.

    Parameters
    ----------
    spin_trace : Array, shape (T, ..., N)
        Recorded configurations.
    axis : int
        Time axis.

    Returns
    -------
    Array, shape (...)
    """
    mean = jnp.mean(jnp.asarray(spin_trace), axis=axis)
    return jnp.mean(mean**2, axis=-1)


def retrieved_pattern(magnetizations, threshold: float = 0.3):
    r"""Index of the archetype a state has retrieved, ``-1`` if none exceeds ``threshold``.

    The retrieved pattern is :math:`\arg\max_\mu |m_\mu|` if that value is at least
    ``threshold``.

    Parameters
    ----------
    magnetizations : Array, shape (..., K)
        Mattis magnetisations.
    threshold : float
        Minimal :math:`|m|` to count as retrieval.

    Returns
    -------
    Array of int, shape (...)
    """
    m = jnp.abs(jnp.asarray(magnetizations))
    idx = jnp.argmax(m, axis=-1)
    return jnp.where(jnp.max(m, axis=-1) >= threshold, idx, -1)


class RetrievalSummary(NamedTuple):
    """Retrieval statistics over runs, escapes kept apart.

    Attributes
    ----------
    mean : float
        Mean magnetisation with the target over runs that did not escape (``nan`` if none).
    stderr : float
        Its standard error (``std / sqrt(n - 1)``; ``nan`` with fewer than 2 runs).
    num_runs : int
        Total number of runs.
    num_escaped : int
        Runs whose target magnetisation fell below ``threshold``.
    escaped_to : numpy.ndarray
        For each escaped run, the pattern it ended in (``-1``: none/paramagnet).
    """

    mean: float
    stderr: float
    num_runs: int
    num_escaped: int
    escaped_to: np.ndarray


def summarize_retrieval(magnetizations, target: int = 0, threshold: float = 0.3):
    r"""Summarise final magnetisations of many runs started near archetype ``target``.

    A run *escaped* if :math:`m_\text{target} < ` ``threshold``; escaped runs are not averaged
    in but counted, with the pattern they went to (as recommended for finite-size Monte Carlo
    of these models, where example noise makes basins shallow).

    Parameters
    ----------
    magnetizations : array_like, shape (runs, K)
        Final (or time-averaged) Mattis magnetisations.
    target : int
        Archetype the runs started from.
    threshold : float
        Escape threshold on :math:`m_\text{target}`.

    Returns
    -------
    RetrievalSummary
    """
    m = np.asarray(magnetizations, np.float64)
    if m.ndim != 2 or not 0 <= target < m.shape[1]:
        raise ValueError(f"magnetizations must be (runs, K) with 0 <= target < K, got {m.shape}")
    ok = m[:, target] >= threshold
    good = m[ok, target]
    mean = float(good.mean()) if good.size else float("nan")
    se = float(good.std() / np.sqrt(good.size - 1)) if good.size > 1 else float("nan")
    esc = np.asarray(retrieved_pattern(m[~ok], threshold)) if (~ok).any() else np.zeros(0, int)
    return RetrievalSummary(mean, se, int(m.shape[0]), int((~ok).sum()), esc)
