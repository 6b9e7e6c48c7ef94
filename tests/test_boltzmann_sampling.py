"""Gibbs sampling from a tiny mDBM against exact enumeration of its Boltzmann distribution."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mdbm_helpers import host_params
from scipy import stats

from bayesnn import boltzmann as bm

SPEC = bm.fully_connected_spec(num_visible=3, num_bins=2, num_hidden=2, num_classes=3)
NUM_CHAINS = 6000


_host_params = host_params


@pytest.fixture(scope="module")
def coupling():
    params = _host_params(np.random.default_rng(11), SPEC, 3.0, 0.7)
    return bm.monotone_coupling(params, SPEC, 0.05)


def _all_states(spec=SPEC):
    """Every joint configuration of ``spec``: (integer states, one-hot state pytree)."""
    choices = [range(lay.num_states) for lay in spec.layers for _ in range(lay.num_vars)]
    confs = np.array(list(itertools.product(*choices)))
    out, i = [], 0
    for lay in spec.layers:
        out.append(jax.nn.one_hot(confs[:, i : i + lay.num_vars], lay.num_states))
        i += lay.num_vars
    return confs, tuple(out)


def _counts(trace, confs):
    idx = np.concatenate([np.asarray(jnp.argmax(u[:, -1], -1)) for u in trace], axis=1)
    radix = [lay.num_states for lay in SPEC.layers for _ in range(lay.num_vars)]
    pos = np.full(int(np.prod(radix)), -1)
    pos[np.ravel_multi_index(tuple(confs.T), radix)] = np.arange(len(confs))
    return np.bincount(pos[np.ravel_multi_index(tuple(idx.T), radix)], minlength=len(confs))


def test_energy_matches_dense_quadratic_form(coupling):
    c = coupling
    confs, z = _all_states()
    E = np.asarray(bm.energy(c, SPEC, z), np.float64)
    W = np.asarray(c.dense_matrix(SPEC), np.float64)
    zf = np.concatenate([np.asarray(x).reshape(len(confs), -1) for x in z], axis=1)
    bf = np.concatenate([np.asarray(x).ravel() for x in c.b])
    np.testing.assert_allclose(E, -0.5 * np.einsum("si,ij,sj->s", zf, W, zf) - zf @ bf, atol=1e-4)


def test_gibbs_samples_match_boltzmann_distribution_and_conditionals(coupling):
    c = coupling
    confs, z = _all_states()
    logp = -np.asarray(bm.energy(c, SPEC, z), np.float64)
    run = jax.jit(
        lambda key, ev: bm.sample(key, c, SPEC, NUM_CHAINS, 1, num_burnin=15, evidence=ev)
    )
    # unconditional (an evidence with nothing observed)
    ev0 = bm.make_evidence(
        SPEC, jnp.zeros((NUM_CHAINS, 3), jnp.int32), jnp.zeros((NUM_CHAINS, 3), bool)
    )
    trace, info = run(jax.random.key(0), ev0)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    counts = _counts(trace, confs)
    assert stats.chisquare(counts, p * NUM_CHAINS).pvalue > 1e-3
    assert info.num_changed.shape == (NUM_CHAINS, 1)
    # conditional on visible pixel 0 = 1 and the label = 2
    pix = jnp.zeros((NUM_CHAINS, 3), jnp.int32).at[:, 0].set(1)
    mask = jnp.zeros((NUM_CHAINS, 3), bool).at[:, 0].set(True)
    ev = bm.make_evidence(SPEC, pix, mask, labels=jnp.full((NUM_CHAINS,), 2))
    trace, _ = run(jax.random.key(1), ev)
    keep = (confs[:, 0] == 1) & (confs[:, -1] == 2)
    pc = np.where(keep, np.exp(logp - logp.max()), 0.0)
    pc /= pc.sum()
    counts = _counts(trace, confs)
    assert counts[~keep].sum() == 0
    assert stats.chisquare(counts[keep], pc[keep] * NUM_CHAINS).pvalue > 1e-3


# a tiny convolutional model, small enough to enumerate: 2x2 binary image with lateral 3x3
# couplings, one binary hidden unit (2x2 stride-2 kernel), a 3-way label
CONV_SPEC = bm.ConvMDBMSpec(
    layers=(bm.ConvLayer(2, 2, 1, 2), bm.ConvLayer(1, 1, 1, 2), bm.ConvLayer(1, 1, 1, 3)),
    rows=(
        bm.ConvRow(2, 2, 2, ((0, 3),)),
        bm.ConvRow(2, 1, 1, ((0, 2), (1, 1))),
        bm.ConvRow(2, 1, 1, ((1, 1), (2, 1))),
    ),
)


def test_structural_conv_colouring_is_valid_with_groups_and_strides():
    """The colouring built from the conv structure (no W) never gives one colour to two
    interacting variables, here with 2 groups per position and stride-2 reads."""
    spec = bm.ConvMDBMSpec(
        layers=(bm.ConvLayer(4, 4, 1, 2), bm.ConvLayer(2, 2, 2, 2), bm.ConvLayer(1, 1, 1, 3)),
        rows=(
            bm.ConvRow(2, 4, 4, ((0, 3),)),
            bm.ConvRow(4, 2, 2, ((0, 3), (1, 3))),
            bm.ConvRow(3, 1, 1, ((1, 2), (2, 1))),
        ),
    )
    c = bm.unconstrained_coupling(bm.init_params(jax.random.key(1), spec), spec)  # same graph
    colors, num_colors = bm.sampling.color_classes(c, spec)
    col = np.concatenate([np.asarray(x) for x in colors])
    W = np.abs(np.asarray(jax.jit(lambda c: c.dense_matrix(spec))(c))) > 0
    var = np.concatenate(
        [
            o + np.repeat(np.arange(lay.num_vars), lay.num_states)
            for o, lay in zip((0, 16, 24), spec.layers, strict=True)
        ]
    )
    ii, jj = np.nonzero(W)
    clash = (var[ii] != var[jj]) & (col[var[ii]] == col[var[jj]])
    assert not np.any(clash), (var[ii][clash], var[jj][clash])
    assert 4 <= num_colors < len(col)  # lateral 3x3 pixel couplings; some parallelism


def test_conv_chromatic_gibbs_matches_boltzmann_distribution():
    """Chromatic block Gibbs on a conv mDBM: colours never join interacting variables, and
    the samples match the enumerated Boltzmann distribution (chi-square)."""
    spec = CONV_SPEC
    p = bm.init_params(jax.random.key(4), spec, 3.0)
    rng = np.random.default_rng(5)
    p = p._replace(b=tuple(jnp.asarray(0.7 * rng.normal(size=x.shape)) for x in p.b))
    c = bm.monotone_coupling(p, spec, 0.05)
    colors, num_colors = bm.sampling.color_classes(c, spec)
    col = np.concatenate([np.asarray(x) for x in colors])
    W = np.asarray(c.dense_matrix(spec))
    var = np.repeat(np.arange(6), [2, 2, 2, 2, 2, 3])
    for i in range(6):
        for j in range(6):
            if i != j and col[i] == col[j]:
                assert np.abs(W[np.ix_(var == i, var == j)]).max() == 0.0
    assert num_colors >= 4  # the four pixels are mutually coupled (3x3 lateral kernel)
    confs, z = _all_states(spec)
    logp = -np.asarray(bm.energy(c, spec, z), np.float64)
    p_exact = np.exp(logp - logp.max())
    p_exact /= p_exact.sum()
    n = 4000
    trace, info = jax.jit(lambda k: bm.sample(k, c, spec, n, 1, num_burnin=20))(jax.random.key(9))
    assert info.num_changed.shape == (n, 1)
    idx = np.concatenate([np.asarray(jnp.argmax(u[:, -1], -1)) for u in trace], axis=1)
    radix = [lay.num_states for lay in spec.layers for _ in range(lay.num_vars)]
    code = np.ravel_multi_index(tuple(idx.T), radix)
    pos = np.full(int(np.prod(radix)), -1)
    pos[np.ravel_multi_index(tuple(confs.T), radix)] = np.arange(len(confs))
    counts = np.bincount(pos[code], minlength=len(confs))
    assert stats.chisquare(counts, p_exact * n).pvalue > 1e-3
