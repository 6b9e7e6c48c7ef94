"""Baseline: plain mean-field DBM without the monotone constraint.

Same architecture and energy, ``W = D - A^T A`` with no rescaling, so ``I - W`` need not be
positive definite: the mean-field equations :math:`q = \\operatorname{softmax}(W q + b)` can
have several solutions (different starts converge to different points) and the naive
iteration can oscillate. :func:`multistart_mean_field` runs the same solver from several
random starts; :func:`fixed_point_spread` measures how far apart the results are. Under the
monotone parameterisation all starts reach one point.

References: Peterson and Anderson, "A mean field theory learning algorithm for neural
networks", Complex Systems 1987; Salakhutdinov and Hinton, AISTATS 2009; Feng, Winston and
Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

import jax
import jax.numpy as jnp

from bayesnn.boltzmann.model import DEFAULT_CONFIG, _clamp, field
from bayesnn.boltzmann.parameterization import unconstrained_coupling
from bayesnn.boltzmann.solver import solve

__all__ = [
    "unconstrained_coupling",
    "random_simplex_state",
    "multistart_mean_field",
    "fixed_point_spread",
]


def random_simplex_state(rng_key, spec, batch, concentration=0.3):
    """Random points of the product of simplices (Dirichlet), shape ``(batch, n_l, k_l)``.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    keys = jax.random.split(rng_key, len(spec.layers))
    return tuple(
        jax.random.dirichlet(k, jnp.full((lay.num_states,), concentration), (batch, lay.num_vars))
        for k, lay in zip(keys, spec.layers, strict=True)
    )


def multistart_mean_field(rng_key, coupling, spec, evidence, num_starts, config=DEFAULT_CONFIG):
    """Solve mean field from ``num_starts`` random starts (uniform start first).

    Parameters
    ----------
    rng_key : PRNGKey
    coupling : Coupling
        Constrained (:func:`monotone_coupling`) or not (:func:`unconstrained_coupling`).
    spec : MDBMSpec
    evidence : Evidence
    num_starts : int
    config : SolverConfig

    Returns
    -------
    qs : tuple of arrays (num_starts, batch, n_l, k_l)
    info : SolverInfo
        Leaves with a leading ``num_starts`` axis.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    if int(num_starts) < 2:
        raise ValueError(f"num_starts must be >= 2, got {num_starts}")
    batch = evidence.mask[0].shape[0]
    keys = jax.random.split(rng_key, num_starts)

    def one(key):
        q0 = random_simplex_state(key, spec, batch)
        return solve(
            lambda q: field(coupling, spec, q),
            lambda q: _clamp(evidence, q),
            q0,
            method=config.method,
            alpha=config.alpha,
            tol=config.tol,
            max_iter=config.max_iter,
            memory=config.memory,
            num_newton=config.num_newton,
        )

    return jax.lax.map(one, keys)


def fixed_point_spread(qs):
    """Largest max-abs difference of each start's solution from the first one, per example.

    Parameters
    ----------
    qs : tuple of arrays (num_starts, batch, n_l, k_l)

    Returns
    -------
    array (batch,)

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    return jnp.max(jnp.stack([jnp.max(jnp.abs(q - q[:1]), axis=(0, 2, 3)) for q in qs]), axis=0)
