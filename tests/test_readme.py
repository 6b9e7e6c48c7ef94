"""The README's quickstarts run as written, at a tiny size (as numpyro runs its examples)."""

import os
import pathlib
import re

import numpy as np
import pytest

from bayesnn import datasets

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
FULL_SIZE = "num_samples=100, num_burnin=3000, thinning=20"
SMALL_SIZE = "num_samples=13, num_burnin=16, thinning=1"  # 52 draws >= num_pp_samples


def _quickstart(heading="## Quickstart: a BNN sampled with SGHMC") -> str:
    text = README.read_text()
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"{heading!r} has no python block"
    return match.group(1)


def test_bnn_quickstart_runs_and_ends_with_diagnostics(capsys):
    import matplotlib.pyplot as plt

    code = _quickstart()
    assert FULL_SIZE in code, "the test shrinks the run by replacing these settings"
    namespace: dict = {}
    # (warnings at this tiny size, e.g. PSIS-LOO's Pareto k, are expected and left shown)
    exec(compile(code.replace(FULL_SIZE, SMALL_SIZE), str(README), "exec"), namespace)
    plt.close("all")
    out = capsys.readouterr().out
    assert re.search(r"max R-hat \d+\.\d+, min bulk ESS \d+ over 20 probes", out), out
    assert "elpd_loo" in out
    diag, idata = namespace["diag"], namespace["idata_fs"]
    assert diag.rhat.shape == (20, 1)
    assert np.isfinite(diag.max_rhat)
    n_train = namespace["data"].x_train.shape[0]
    assert idata.posterior_predictive["y"].shape == (4, 13, n_train, 1)
    assert idata.log_likelihood["y"].shape == (4, 13, n_train)


# The CNN quickstart's sizes and their tiny replacements (each must occur in the README).
CNN_SHRINK = {
    "x[:5000, ...": "x[:128, ...",
    "y[:5000]": "y[:128]",
    "x_test[:2000, ...": "x_test[:32, ...",
    "y_test[:2000]": "y_test[:32]",
    "num_decays=2\n": "num_decays=2, max_epochs=2\n",
    "num_samples=16, num_burnin=500, thinning=50": "num_samples=2, num_burnin=3, thinning=2",
    # h = 0.1 * 2 alpha B / N is 0.4 at N = B = 128, unstable in the stiffest directions
    "step_size=0.1 * 2 * 2.0 * 128 / len(y)": "step_size=TINY_STEP",
}
TINY_STEP = 0.04
FASHION = pathlib.Path(
    os.environ.get("BAYESNN_FASHION_MNIST") or datasets.DEFAULT_FASHION_MNIST_DIR
)


@pytest.mark.skipif(
    not (FASHION / "t10k-labels-idx1-ubyte.gz").is_file(), reason="dataset-fashion-mnist"
)
def test_cnn_quickstart_streams_the_predictive_of_the_draws_in_theta(capsys):
    import jax

    from bayesnn.baselines import mean_predictive_probs
    from samplers import sgmcmc

    code = _quickstart("## Quickstart: a Bayesian CNN")
    assert "temperature=0.5," in code, "the stored run below repeats the README's temperature"
    for full, small in CNN_SHRINK.items():
        assert full in code, f"the test shrinks the run by replacing {full!r}"
        code = code.replace(full, small)
    namespace: dict = {"TINY_STEP": TINY_STEP}
    exec(compile(code, str(README), "exec"), namespace)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2  # posterior and MAP: accuracy, NLL, ECE
    probs = np.asarray(namespace["probs"])
    assert probs.shape == (32, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.asarray(namespace["result"].accumulated.count) == 2)
    # The streamed mean is the mean over the stored draws mapped back to theta (same run).
    ns = namespace
    stored = sgmcmc.sample(
        jax.random.key(1), sgmcmc.sghmc(alpha=2.0), ns["mass"].logdensity(ns["model"].logdensity),
        ns["model"].check_data(ns["x"], ns["y"]), ns["z0"], temperature=0.5, batch_size=128,
        step_size=TINY_STEP, num_samples=2, num_burnin=3, thinning=2,
    )  # fmt: skip
    theta = ns["mass"].from_z(stored.positions)
    expected = mean_predictive_probs(ns["model"], theta, ns["x_test"])
    np.testing.assert_allclose(probs, np.asarray(expected), rtol=1e-4, atol=1e-6)
    z_as_theta = mean_predictive_probs(ns["model"], stored.positions, ns["x_test"])
    assert np.abs(np.asarray(z_as_theta) - probs).max() > 1e-3  # position_fn was applied
