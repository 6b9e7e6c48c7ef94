r"""Monte Carlo driver: many chains of a dense Hebbian network with observable traces.

Runs :mod:`samplers.spins` kernels on :func:`bayesnn.hebbian.model.spin_model` and records
Mattis magnetisations (or row overlaps) every sweep, inside one ``lax.scan``. Pure and
jittable; ``jax.vmap`` over networks (stacked ``rows``) for disorder samples.

Sequential Glauber dynamics samples :math:`e^{-\beta H}` exactly; the parallel
``"synchronous"`` kernel is Little dynamics (different stationary law at finite N), as in
the public teaching code of Agliari et al. (arXiv 2212.00606).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers import spins as spins_lib

from .model import HebbianNetwork, overlaps, spin_model
from .observables import mattis_magnetization

__all__ = ["SimulationResult", "simulate"]


class SimulationResult(NamedTuple):
    """Output of :func:`simulate`.

    Attributes
    ----------
    spins : Array, shape (C, N)
        Final configurations of the ``C`` chains.
    trace : Array, shape (C, T, K)
        Magnetisations (or overlaps) after each sweep.
    mean : Array, shape (C, K)
        Time average over the sweeps after ``burn_in``.
    acceptance_rate : Array, shape (C, T)
        Flip rate per sweep.
    """

    spins: jax.Array
    trace: jax.Array
    mean: jax.Array
    acceptance_rate: jax.Array


def simulate(
    rng_key,
    net: HebbianNetwork,
    spins0,
    beta,
    num_sweeps: int,
    archetypes=None,
    burn_in: int = 0,
    kernel: str = "sequential",
    rule: str = "glauber",
    order: str = "random",
    mode: str = "synchronous",
    fraction: float = 0.1,
    generator: str = "threefry",
) -> SimulationResult:
    r"""Run ``C`` chains for ``num_sweeps`` sweeps at inverse temperature ``beta``.

    Parameters
    ----------
    rng_key : PRNGKey
        Dynamics key (keep separate from the data key).
    net : HebbianNetwork
        The network.
    spins0 : Array, shape (C, N)
        Initial configurations (+-1).
    beta : float or Array, shape (C,)
        Inverse temperature (``jnp.inf``: zero-temperature dynamics).
    num_sweeps : int
        Sweeps (N single-site updates, or one parallel update, each).
    archetypes : Array, shape (K, N), optional
        If given, the trace holds Mattis magnetisations :math:`m_\mu`; else the overlaps
        :math:`n_\nu` with the network rows.
    burn_in : int
        Sweeps excluded from ``mean``.
    kernel : {"sequential", "chain_parallel", "parallel"}
        Sampler family: ``"sequential"`` vmaps
        :func:`samplers.spins.build_sequential_kernel` over chains; ``"chain_parallel"`` is
        the same exact dynamics with all chains updated site by site together
        (:func:`samplers.spins.build_chain_parallel_kernel`, much faster for many chains);
        ``"parallel"`` is synchronous (Little) dynamics.
    rule : {"glauber", "metropolis"}
        Acceptance rule.
    order : {"random", "sweep"}
        Site order for sequential kernels (``"random"`` means a fresh random permutation per
        sweep for ``"chain_parallel"``).
    mode, fraction :
        Parallel-kernel options (see :func:`samplers.spins.build_parallel_kernel`).
    generator : {"threefry", "hash"}
        Uniform generator of the ``"chain_parallel"`` kernel.

    Returns
    -------
    SimulationResult
    """
    if not 0 <= int(burn_in) < int(num_sweeps):
        raise ValueError(f"burn_in must be in [0, num_sweeps), got {burn_in}")
    spins0 = jnp.asarray(spins0)
    if spins0.ndim != 2 or spins0.shape[-1] != net.num_spins:
        raise ValueError(f"spins0 must have shape (C, {net.num_spins}), got {spins0.shape}")
    model = spin_model(net)
    if kernel == "sequential":
        step = spins_lib.build_sequential_kernel(model, rule=rule, order=order)
    elif kernel == "chain_parallel":
        if order not in ("random", "sweep"):
            raise ValueError(f"order must be 'random' or 'sweep', got {order!r}")
        step = spins_lib.build_chain_parallel_kernel(
            model,
            rule=rule,
            order="sweep" if order == "sweep" else "permutation",
            generator=generator,
        )
    elif kernel == "parallel":
        step = spins_lib.build_parallel_kernel(model, rule=rule, mode=mode, fraction=fraction)
    else:
        raise ValueError(
            f"kernel must be 'sequential', 'chain_parallel' or 'parallel', got {kernel!r}"
        )
    if archetypes is None:
        observe = lambda st: overlaps(net, st.spins)
    else:
        xi = jnp.asarray(archetypes)
        observe = lambda st: mattis_magnetization(xi, st.spins)
    states = spins_lib.init_chains(model, spins0)
    final, trace, infos = spins_lib.run_chains(
        rng_key, step, states, beta, int(num_sweeps), observe, batched=kernel == "chain_parallel"
    )
    trace = jnp.asarray(trace)
    mean = jnp.swapaxes(trace, 0, 1)[int(burn_in) :].mean(0)
    return SimulationResult(final.spins, trace, mean, jnp.asarray(infos.acceptance_rate))
