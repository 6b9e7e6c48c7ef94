import os

import numpy as np
import pytest

import bayesnn.datasets as datasets
from bayesnn.demo import main, run_demo
from samplers.convergence import ConvergenceWarning


def test_demo_runs_small_and_reports_finite_metrics(tmp_path, capsys):
    with pytest.warns(ConvergenceWarning):
        out = run_demo(
            "yacht",
            num_chains=2,
            num_samples=10,
            num_burnin=6000,
            thinning=10,
            # a short burn-in is too short for the engine's choice to settle; 0.002 is near
            # yacht's stability limit (test RMSE 0.4-39 over seeds 0-5, machine-dependent),
            # 0.001 for 6,000 steps reaches RMSE 0.4-1.4 on all six
            step_size=0.001,
            plot_path=str(tmp_path / "demo.png"),
        )
    assert np.isfinite(out["test_rmse"]) and out["test_rmse"] > 0
    assert np.isfinite(out["test_nll"])
    # The target's scale on yacht is ~15: a trained net must be far better than predicting 0.
    assert out["test_rmse"] < 8.0
    assert (tmp_path / "demo.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "test RMSE" in printed and "r_hat" in printed
    # 20 draws cannot converge, and the demo says so
    assert "step size 0.001 (given)" in printed and "NOT converged" in printed
    assert out["step_size_info"] is None and not out["converged"]


def test_cli_passes_arguments_to_demo(tmp_path, monkeypatch):
    import bayesnn.demo as demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda dataset, **kw: seen.update(kw, dataset=dataset))
    rc = main(
        [
            "demo",
            "--dataset",
            "energy",
            "--chains",
            "2",
            "--samples",
            "5",
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert rc == 0
    assert seen["dataset"] == "energy" and seen["num_chains"] == 2 and seen["num_samples"] == 5
    assert seen["plot_path"] == str(tmp_path / "p.png")


def test_demo_bad_output_paths_fail_before_sampling(tmp_path, monkeypatch, capsys):
    """Unwritable, missing-folder, directory and unknown-format plot paths raise before any
    data is loaded or sampled (load_uci is replaced by a tripwire); the CLI turns them into
    a usage error (exit status 2) instead of a traceback after minutes of sampling."""

    def tripwire(*args, **kwargs):
        raise AssertionError("data loaded before the plot path was checked")

    monkeypatch.setattr(datasets, "load_uci", tripwire)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    cases = [
        (tmp_path / "missing" / "p.png", "does not exist"),
        (tmp_path, "is a directory"),
        (tmp_path / "p.unknownfmt", "unknown image format"),
    ]
    if os.geteuid() != 0:  # root ignores directory permissions
        cases.append((locked / "p.png", "not writable"))
    for path, match in cases:
        with pytest.raises(ValueError, match=match):
            run_demo("yacht", plot_path=str(path), verbose=False)
    with pytest.raises(ValueError, match="num_chains"):
        run_demo("yacht", num_chains=0, plot_path=None)
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--plot", str(tmp_path / "missing" / "p.png")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
    locked.chmod(0o700)


@pytest.mark.slow
def test_demo_defaults_converge():
    """The default demo meets the convergence bar it checks: function-space R-hat <= 1.05 and
    bulk ESS >= 50 at its probe points, with a test RMSE of a trained net (rating sd ~0.8)."""
    out = run_demo(plot_path=None, verbose=False)
    assert out["max_rhat"] <= 1.05 and out["min_ess"] >= 50, (out["max_rhat"], out["min_ess"])
    assert out["test_rmse"] < 0.75
