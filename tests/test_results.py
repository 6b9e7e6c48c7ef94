"""Tests for samplers.results: ArviZ conversion, netCDF, fast split-R-hat and ESS."""

import ast
from pathlib import Path
from typing import NamedTuple

import arviz as az
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import lfilter

from samplers import results as R


class Info(NamedTuple):
    logdensity: np.ndarray
    grad_norm: np.ndarray
    is_nan: np.ndarray


@pytest.fixture(scope="module")
def trace():
    rng = np.random.default_rng(0)
    positions = {
        "layers": [
            {
                "W": jnp.asarray(rng.normal(size=(3, 12, 4, 5)), jnp.bfloat16),
                "b": rng.normal(size=(3, 12, 5)),
            }
        ],
        "noise/scale": rng.normal(size=(3, 12)).astype(np.float32),
    }
    info = Info(rng.normal(size=(3, 12)), rng.random((3, 12)), np.zeros((3, 12), bool))
    loglik = -rng.random((3, 12, 6))
    return positions, info, loglik


def test_round_trip_and_netcdf(trace, tmp_path):
    positions, info, loglik = trace
    idata = R.to_inference_data(
        positions,
        sample_stats=info,
        posterior_predictive={"y": np.ones((3, 12, 6))},
        log_likelihood={"y": loglik},
        observed_data={"y": np.zeros(6)},
        dims={"layers.0.b": ["hidden"]},
        coords={"hidden": np.arange(5)},
    )
    assert set(idata.groups()) == {
        "posterior",
        "sample_stats",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
    }
    post = idata.posterior
    assert set(post.data_vars) == {"layers.0.W", "layers.0.b", "noise_scale"}
    assert post["layers.0.W"].dtype == np.float32 and post["layers.0.W"].shape == (3, 12, 4, 5)
    np.testing.assert_array_equal(
        post["layers.0.W"].values, np.asarray(positions["layers"][0]["W"], np.float32)
    )
    assert post["layers.0.b"].dims == ("chain", "draw", "hidden")
    assert set(idata.sample_stats.data_vars) == {"logdensity", "grad_norm", "is_nan"}
    path = tmp_path / "trace.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    for group in idata.groups():
        a, b = getattr(idata, group), getattr(back, group)
        for var in a.data_vars:
            np.testing.assert_array_equal(a[var].values, b[var].values)
    elpd = az.loo(idata, pointwise=False)
    assert np.isfinite(elpd["elpd_loo"])


def test_bare_array_and_max_weights(tmp_path):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 5, 10, 10))
    idata = R.to_inference_data({"w": w, "s": w[:, :, 0, 0]}, max_weights=7)
    sub = idata.posterior["w"]
    idx = idata.posterior["w_flat_index"].values
    assert sub.shape == (2, 5, 7) and idx[0] == 0 and idx[-1] == 99
    np.testing.assert_array_equal(sub.values, w.reshape(2, 5, 100)[:, :, idx])
    assert idata.posterior["s"].shape == (2, 5)
    bare = R.to_inference_data(w[:, :, 0])
    assert list(bare.posterior.data_vars) == ["theta"]
    bare.to_netcdf(str(tmp_path / "bare.nc"))


def test_conversion_errors(trace):
    positions, info, _ = trace
    with pytest.raises(ValueError, match="positions: leaf 'x'"):
        R.to_inference_data({"x": np.zeros(5)})
    with pytest.raises(ValueError, match="positions: leaf 'b'.*leading axes"):
        R.to_inference_data({"a": np.zeros((2, 4)), "b": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="sample_stats: leaf 'logdensity'"):
        R.to_inference_data(positions, sample_stats=Info(np.zeros((2, 12)), *info[1:]))
    with pytest.raises(ValueError, match="log_likelihood"):
        R.to_inference_data(positions, log_likelihood=np.zeros((3, 11, 4)))
    with pytest.raises(ValueError, match="max_weights"):
        R.to_inference_data(positions, max_weights=0)
    with pytest.raises(ValueError, match="same variable name"):
        R.flatten_names({"a/b": 1, "a_b": 2})


@pytest.mark.parametrize("shape", [(3, 57, 2), (2, 9, 2), (4, 8, 2)])
def test_agreement_with_arviz(shape):
    rng = np.random.default_rng(sum(shape))
    e = rng.normal(size=shape)
    x = lfilter([1.0], [1.0, -0.6], e, axis=1) + rng.normal(size=shape[:1] + (1, 1)) * 0.3
    r, es, ei = (
        np.asarray(R.split_rhat(x)),
        np.asarray(R.ess(x)),
        np.asarray(R.ess(x, split=False)),
    )
    ru = np.asarray(R.rhat(x))
    for i in range(shape[2]):
        np.testing.assert_allclose(r[i], az.rhat(x[:, :, i], method="split"), rtol=1e-5)
        np.testing.assert_allclose(ru[i], az.rhat(x[:, :, i], method="identity"), rtol=1e-5)
        np.testing.assert_allclose(es[i], az.ess(x[:, :, i], method="mean"), rtol=1e-4)
        np.testing.assert_allclose(ei[i], az.ess(x[:, :, i], method="identity"), rtol=1e-4)


def test_constant_quantity():
    x = np.ones((2, 20, 1))
    assert float(R.ess(x)[0]) == 40.0
    assert np.isnan(float(R.split_rhat(x)[0]))


def test_ar1_ess_and_rhat():
    # Stationary AR(1) with coefficient rho: ESS of the mean ~ m n (1 - rho) / (1 + rho).
    rng = np.random.default_rng(5)
    m, n, reps, rho = 4, 2000, 64, 0.8
    e = rng.normal(size=(m, n, reps)) * np.sqrt(1 - rho**2)
    e[:, 0] = rng.normal(size=(m, reps))
    x = lfilter([1.0], [1.0, -rho], e, axis=1).astype(np.float32)
    want = m * n * (1 - rho) / (1 + rho)
    got = np.asarray(R.ess(x))
    # Each estimate has ~10% sd; the mean of 64 replicates is within a few percent.
    assert abs(got.mean() / want - 1) < 0.06, (got.mean(), want)
    assert 0.6 < got.min() / want and got.max() / want < 1.5
    r = np.asarray(R.split_rhat(x))
    assert r.max() < 1.05
    shifted = x + np.arange(m, dtype=np.float32)[:, None, None]
    # Chain offsets 0..3 (split: 8 chains, variance of means 10/7): R-hat ~ sqrt(1 + 10/7).
    r_shift = np.asarray(R.split_rhat(shifted))
    np.testing.assert_allclose(r_shift.mean(), np.sqrt(1 + 10 / 7), rtol=0.02)
    np.testing.assert_allclose(r_shift, np.sqrt(1 + 10 / 7), rtol=0.1)


def test_weight_space_summary():
    rng = np.random.default_rng(2)
    tree = {"w": rng.normal(size=(3, 40, 6, 4)), "frozen": np.zeros((3, 40, 8))}
    table = R.weight_space_summary(tree, chunk_size=8)
    assert list(table.index) == ["frozen", "w"]
    assert table.loc["w", "size"] == 24 and table.loc["frozen", "size"] == 8
    flat = tree["w"].reshape(3, 40, 24)
    np.testing.assert_allclose(
        table.loc["w", "rhat_max"], np.max(np.asarray(R.split_rhat(flat))), rtol=1e-5
    )
    np.testing.assert_allclose(
        table.loc["w", "ess_min"], np.min(np.asarray(R.ess(flat))), rtol=1e-5
    )
    assert np.isnan(table.loc["frozen", "rhat_max"])
    with pytest.raises(ValueError, match="chunk_size"):
        R.weight_space_summary(tree, chunk_size=0)
    with pytest.raises(ValueError, match="leading axes"):
        R.weight_space_summary({"a": np.zeros((3, 40)), "b": np.zeros((3, 41))})
    with pytest.raises(ValueError, match="at least 8 draws"):
        R.ess(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="chain, draw"):
        R.split_rhat(np.zeros(5))


def test_samplers_does_not_import_bayesnn():
    tree = ast.parse(Path(R.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.split(".")[0] == "bayesnn"]
