"""Shared helpers for the monotone-DBM tests."""

import jax.numpy as jnp
import numpy as np

from bayesnn import boltzmann as bm


def host_params(rng, spec, scale, b_scale):
    """Like ``init_params`` (``N(0, scale^2 / fan_in)``) plus random unary terms, drawn with
    numpy so that no PRNG program has to be compiled."""
    lays = spec.layers
    A = tuple(
        tuple(
            jnp.asarray(
                scale
                / np.sqrt(sum(lays[i].num_vars for i in lids))
                * rng.normal(size=(dim, lays[lid].num_vars, lays[lid].num_states)),
                jnp.float32,
            )
            for lid in lids
        )
        for dim, lids in spec.rows
    )
    b = tuple(
        jnp.asarray(b_scale * rng.normal(size=(lay.num_vars, lay.num_states)), jnp.float32)
        for lay in lays
    )
    return bm.MDBMParams(A, b)
