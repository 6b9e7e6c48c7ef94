"""The README's BNN quickstart runs as written, at a tiny size (as numpyro runs its examples)."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
FULL_SIZE = "num_samples=100, num_burnin=3000, thinning=20"
SMALL_SIZE = "num_samples=13, num_burnin=16, thinning=1"  # 52 draws >= num_pp_samples


def _quickstart() -> str:
    text = README.read_text()
    section = text.split("## Quickstart: a BNN sampled with SGHMC", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the BNN quickstart has no python block"
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
