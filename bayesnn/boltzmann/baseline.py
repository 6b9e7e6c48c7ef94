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

from bayesnn.boltzmann.model import DEFAULT_CONFIG, clamp, field
from bayesnn.boltzmann.solver import solve

__all__ = [
    "random_simplex_state",
    "multistart_mean_field",
    "fixed_point_spread",
]


def random_simplex_state(rng_key, spec, batch, temperature=0.5):
    """Random points of the product of simplices, shape ``(batch, n_l, k_l)``.

    Each variable gets :math:`q = \\operatorname{softmax}(g / \\tau)` with i.i.d. standard
    Gumbel ``g``: the Concrete (Gumbel-softmax) distribution with uniform class probabilities
    and temperature :math:`\\tau`. Small :math:`\\tau` puts the points near the vertices; for
    two states and :math:`\\tau = 1` it is uniform on the simplex. (One PRNG draw for all
    layers.)

    Parameters
    ----------
    rng_key : PRNGKey
    spec : MDBMSpec
    batch : int
    temperature : float
        Positive temperature :math:`\\tau`.

    Returns
    -------
    tuple of arrays (batch, n_l, k_l)

    References
    ----------
    Maddison, Mnih and Teh, "The Concrete distribution", ICLR 2017; Jang, Gu and Poole,
    "Categorical reparameterization with Gumbel-softmax", ICLR 2017.
    """
    if not float(temperature) > 0.0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    sizes = [lay.num_vars * lay.num_states for lay in spec.layers]
    g = jax.random.gumbel(rng_key, (batch, sum(sizes))) / temperature
    out, i = [], 0
    for size, lay in zip(sizes, spec.layers, strict=True):
        y = g[:, i : i + size].reshape(batch, lay.num_vars, lay.num_states)
        out.append(jax.nn.softmax(y, axis=-1))
        i += size
    return tuple(out)


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
            lambda q: clamp(evidence, q),
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
