import numpy as np
import pytest

from bayesnn.demo import main, run_demo
from samplers.convergence import ConvergenceWarning


def test_demo_runs_small_and_reports_finite_metrics(tmp_path, capsys):
    with pytest.warns(ConvergenceWarning):
        out = run_demo(
            "yacht",
            num_chains=2,
            num_samples=10,
            num_burnin=3000,
            thinning=10,
            step_size=0.002,  # a short burn-in is too short for the engine's choice to settle
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
    assert "step size 0.002 (given)" in printed and "NOT converged" in printed
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
