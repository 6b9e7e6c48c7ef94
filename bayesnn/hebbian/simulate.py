r"""Monte Carlo driver: many chains of a dense Hebbian network with observable traces.

Runs :mod:`samplers.spins` kernels on :func:`bayesnn.hebbian.model.spin_model` and records
Mattis magnetisations (or row overlaps) every sweep, inside one ``lax.scan``. Pure and
jittable; ``jax.vmap`` over networks (stacked ``rows``) for disorder samples.

Sequential Glauber dynamics samples :math:`e^{-\beta H}` exactly; the parallel
``"synchronous"`` kernel is Little dynamics (different stationary law at finite N), as in
the public teaching code of the group of Agliari et al. (arXiv 2212.00606; GitHub
``AndreaAlessandrelli4/Coding_Lessons``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers import spins as spins_lib

from .model import HebbianNetwork, spin_model
from .observables import make_observer, paired_replica_overlap

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
    records : dict
        The observables asked for with ``record`` (empty otherwise): ``"m"`` (C, T, K),
        ``"n"`` (C, T, R), ``"energy"`` (C, T), ``"spins"`` (C, T, N) int8 and ``"q"``
        (C // 2, T), the overlap of chain pairs (2j, 2j + 1).
    """

    spins: jax.Array
    trace: jax.Array
    mean: jax.Array
    acceptance_rate: jax.Array
    records: dict = {}


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
    record=(),
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
    record : sequence of str
        Extra observables recorded every sweep (:data:`~.observables.RECORDABLE`: ``"m"``,
        ``"n"``, ``"q"``, ``"energy"``, ``"spins"``), returned in ``records``. ``"q"`` pairs
        chains ``(2j, 2j + 1)`` as two replicas of the same network (an even ``C``).

    Everything is traceable: ``jax.vmap`` over stacked networks (e.g. ``supervised_network``
    of a batch of data sets inside the vmapped function) and ``jax.jit`` work; the shapes
    (``N``, the number of rows, ``C``, ``num_sweeps``) and ``order``/``convention`` are
    static, so a new number of examples ``M`` for the unsupervised rule (``K M`` rows)
    compiles again.

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
    record = tuple(record)
    main = "n" if archetypes is None else "m"
    if "q" in record and spins0.shape[0] % 2:
        raise ValueError(f'record "q" pairs chains: spins0 needs an even C, got {spins0.shape}')
    observe = make_observer(net, archetypes, (main,) + record)
    states = spins_lib.init_chains(model, spins0)
    final, trace, infos = spins_lib.run_chains(
        rng_key, step, states, beta, int(num_sweeps), observe, batched=kernel == "chain_parallel"
    )
    trace = {k: jnp.asarray(v) for k, v in trace.items()}  # (C, T, ...)
    records = {k: trace[k] for k in record if k != "q"}
    if "q" in record:
        records["q"] = paired_replica_overlap(trace["spins"])
    main_trace = trace[main]
    return SimulationResult(
        final.spins,
        main_trace,
        main_trace[:, int(burn_in) :].mean(1),
        jnp.asarray(infos.acceptance_rate),
        records,
    )
