import numpy as np

from bayesnn.demo import main, run_demo


def test_demo_runs_small_and_reports_finite_metrics(tmp_path, capsys):
    out = run_demo(
        "yacht",
        num_chains=2,
        num_samples=10,
        num_burnin=300,
        thinning=5,
        plot_path=str(tmp_path / "demo.png"),
    )
    assert np.isfinite(out["test_rmse"]) and out["test_rmse"] > 0
    assert np.isfinite(out["test_nll"])
    # The target's scale on yacht is ~15: a trained net must be far better than predicting 0.
    assert out["test_rmse"] < 8.0
    assert (tmp_path / "demo.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "test RMSE" in printed and "r_hat" in printed


def test_cli_parses_demo_command(tmp_path):
    rc = main(
        [
            "demo",
            "--chains",
            "2",
            "--samples",
            "5",
            "--burnin",
            "50",
            "--thinning",
            "2",
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert rc == 0
