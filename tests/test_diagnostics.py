"""Tests for bayesnn.diagnostics with a tiny linear "network"."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayesnn import diagnostics as D
from samplers import results as R

CHAINS, DRAWS, DIM = 4, 50, 3


def predict(params, x):
    return x @ params["w"] + params["b"][None, :]


def loglik(f, y):
    return jax.scipy.stats.norm.logpdf(y, f, 0.5).sum(-1)


def sample_y(key, f):
    return f + 0.5 * jax.random.normal(key, f.shape)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    positions = {
        "w": rng.normal(size=(CHAINS, DRAWS, DIM, 1)).astype(np.float32),
        "b": rng.normal(size=(CHAINS, DRAWS, 1)).astype(np.float32),
    }
    x = rng.normal(size=(7, DIM)).astype(np.float32)
    y = rng.normal(size=(7, 1)).astype(np.float32)
    return positions, x, y


def test_predict_draws_matches_direct_and_chunks(setup):
    positions, x, _ = setup
    want = np.einsum("nd,cgdo->cgno", x, positions["w"]) + positions["b"][:, :, None, :]
    full = D.predict_draws(predict, positions, x, chunk_size=None)
    chunked = D.predict_draws(predict, positions, x, chunk_size=16)  # 200 draws: ragged chunks
    assert full.shape == (CHAINS, DRAWS, 7, 1)
    np.testing.assert_allclose(full, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["rank", "split"])
def test_function_space_diagnostics(setup, method):
    positions, x, _ = setup
    res = D.function_space_diagnostics(predict, positions, x, method=method)
    f = res.inference_data.posterior["f"]
    assert f.dims == ("chain", "draw", "probe", "f_dim_0") and f.shape == (CHAINS, DRAWS, 7, 1)
    assert res.rhat.shape == (7, 1) and res.ess.shape == (7, 1)
    # Independent draws: R-hat near 1 and ESS near the number of draws.
    assert res.max_rhat < 1.1
    assert res.min_ess > 0.4 * CHAINS * DRAWS
    table = az.summary(res.inference_data)
    np.testing.assert_allclose(table["r_hat"].max(), res.max_rhat, atol=0.011)
    if method == "split":
        f_np = f.values
        for i in range(7):
            np.testing.assert_allclose(
                res.rhat[i, 0], az.rhat(f_np[:, :, i, 0], method="split"), rtol=1e-4
            )
    # Chains stuck at different functions: function-space R-hat flags it.
    shifted = dict(positions, b=positions["b"] + 3.0 * np.arange(CHAINS)[:, None, None])
    bad = D.function_space_diagnostics(predict, shifted, x, method=method)
    assert bad.max_rhat > 1.5 and np.all(bad.rhat > 1.5)


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_posterior_predictive_inference_data(setup, rng_key):
    positions, x, y = setup
    idata = D.posterior_predictive_inference_data(
        predict, positions, x, y, loglik, sample_fn=sample_y, rng_key=rng_key
    )
    assert {"posterior", "posterior_predictive", "log_likelihood", "observed_data"} <= set(
        idata.groups()
    )
    f = np.asarray(D.predict_draws(predict, positions, x))
    want = stats.norm.logpdf(y[None, None], f, 0.5).sum(-1)
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "obs")
    np.testing.assert_allclose(ll.values, want, rtol=1e-5)
    ppc = idata.posterior_predictive["y"].values
    assert ppc.shape == (CHAINS, DRAWS, 7, 1)
    resid = (ppc - f).ravel()
    assert abs(resid.std() - 0.5) < 4 * 0.5 / np.sqrt(2 * resid.size)
    np.testing.assert_array_equal(idata.observed_data["y"].values, y)
    loo = az.loo(idata, pointwise=False)
    assert np.isfinite(loo["elpd_loo"])


def test_extends_existing_inference_data(setup, tmp_path):
    positions, x, y = setup
    base = R.to_inference_data(positions)
    out = D.posterior_predictive_inference_data(predict, positions, x, y, loglik, idata=base)
    assert set(out.posterior.data_vars) == {"w", "b", "f"}
    assert "f" not in base.posterior.data_vars  # input not modified
    assert "log_likelihood" in out.groups()
    out.to_netcdf(str(tmp_path / "ext.nc"))
    short = R.to_inference_data(jax.tree_util.tree_map(lambda a: a[:, :10], positions))
    with pytest.raises(ValueError, match="idata: posterior"):
        D.posterior_predictive_inference_data(predict, positions, x, y, loglik, idata=short)


def test_diagnostics_errors(setup):
    positions, x, y = setup
    with pytest.raises(ValueError, match="disagree"):
        D.predict_draws(predict, dict(positions, b=positions["b"][:, :3]), x)
    with pytest.raises(ValueError, match="num_chains, num_draws"):
        D.predict_draws(predict, {"w": np.zeros(3)}, x)
    with pytest.raises(ValueError, match="chunk_size"):
        D.predict_draws(predict, positions, x, chunk_size=0)
    with pytest.raises(ValueError, match="x holds NaN"):
        D.predict_draws(predict, positions, jnp.full_like(x, jnp.nan))
    with pytest.raises(ValueError, match="method"):
        D.function_space_diagnostics(predict, positions, x, method="nope")
    with pytest.raises(ValueError, match="rng_key"):
        D.posterior_predictive_inference_data(predict, positions, x, y, loglik, sample_fn=sample_y)
    with pytest.raises(ValueError, match="log_likelihood_fn must return"):
        D.posterior_predictive_inference_data(predict, positions, x, y, lambda f, y: f)
    with pytest.raises(ValueError, match="observations"):
        D.posterior_predictive_inference_data(predict, positions, x, y[:5], loglik)
    with pytest.raises(ValueError, match="y holds NaN"):
        D.posterior_predictive_inference_data(predict, positions, x, y * np.nan, loglik)


def test_nan_draws_raise(setup):
    """NaN draws: split R-hat / ESS raise naming the first bad chain and draw (was NaN or a
    silently finite number); function-space diagnostics name the positions."""
    x = np.random.default_rng(0).normal(size=(4, 20, 2))
    x[2, 7, 1] = np.nan
    for fn in (R.split_rhat, R.rhat, R.ess):
        with pytest.raises(ValueError, match="NaN or inf draws .*chain 2, draw 7"):
            fn(x)
    positions, xp, _ = setup
    bad = dict(positions, b=positions["b"].copy())
    bad["b"][1, 3] = np.nan
    with pytest.raises(ValueError, match="positions: predictions are NaN .*chain 1, draw 3"):
        D.function_space_diagnostics(predict, bad, xp, method="split")
