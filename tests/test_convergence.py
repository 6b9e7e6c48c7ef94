"""samplers.convergence: R-hat/ESS warnings on draws with known mixing."""

import warnings

import arviz as az
import numpy as np
import pytest

from samplers.convergence import ConvergenceWarning, check_convergence


def _ar1(rng, chains, draws, rho, shift=None, size=3):
    x = np.zeros((chains, draws, size))
    x[:, 0] = rng.standard_normal((chains, size))
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal((chains, size))
    if shift is not None:
        x += np.asarray(shift)[:, None, None]
    return x


def test_independent_chains_pass_silently_and_match_arviz():
    draws = _ar1(np.random.default_rng(0), 4, 500, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        report = check_convergence(draws, name="f")
    assert report.converged and report.message == ""
    ds = az.convert_to_dataset({"f": draws})
    np.testing.assert_allclose(report.rhat["f"], az.rhat(ds)["f"].values)
    np.testing.assert_allclose(report.ess_bulk["f"], az.ess(ds)["f"].values)
    assert report.max_rhat < 1.05 and report.min_ess > 1000


def test_disagreeing_chains_warn_with_numbers():
    # chains whose levels differ by one within-chain sd: R-hat ~ sqrt(1 + var(shift)) ~ 1.1
    draws = _ar1(np.random.default_rng(1), 4, 500, 0.0, shift=[0.0, 0.0, 0.0, 1.0])
    with pytest.warns(ConvergenceWarning, match=r"max R-hat 1\.\d+ > 1\.05") as record:
        report = check_convergence({"f": draws, "sigma": draws[..., 0]})
    assert not report.converged
    assert "4 chains x 500 draws" in str(record[0].message)
    assert report.max_rhat == pytest.approx(np.nanmax(report.rhat["f"]))


def test_sticky_chains_warn_on_ess():
    # AR(1) with rho = 0.98: ESS ~ 4 * 500 * (1 - rho) / (1 + rho) ~ 20
    draws = _ar1(np.random.default_rng(2), 4, 500, 0.98)
    with pytest.warns(ConvergenceWarning, match="min bulk ESS"):
        report = check_convergence(draws)
    assert report.min_ess < 100
    quiet = check_convergence(draws, warn=False)
    assert not quiet.converged and quiet.message


def test_bad_input():
    with pytest.raises(ValueError, match="num_chains, num_draws"):
        check_convergence(np.zeros(10))
    with pytest.raises(ValueError, match="at least 2"):
        check_convergence(np.zeros((1, 10)))
    bad = np.zeros((2, 10))
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        check_convergence({"w": bad})
    with pytest.raises(ValueError, match="max_rhat"):
        check_convergence(np.zeros((2, 10)), max_rhat=0.9)
