"""Every benchmark script runs in its ``--smoke`` mode (tiny sizes, seconds), so none can rot.

Scripts are discovered (``benchmarks/*.py`` except ``run_all.py`` and ``_*`` helpers), so a new
script is covered as soon as it exists; it must accept ``--smoke``. Each runs in its own
process (a fresh JAX, as a user would start it) with the test suite's XLA flags. Reference
implementations that are not installed (PyTorch, numba) are skipped by the scripts with a
message. A smoke run must leave the recorded results in ``benchmarks/results`` untouched.
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(
    p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py"
)
# Compile-bound even at tiny sizes (the functional-prior fit and the independent W1 critic
# compile for ~5-10 s CPU each, the step-size rule's burn-in rounds too): marked slow,
# outside the default suite and CI (`pytest -m slow tests/test_benchmarks_smoke.py` runs
# them, ~4 minutes of CPU).
# The mDBM scripts compile a training step with implicit gradients, solvers and Gibbs
# kernels (~20-60 s CPU each at any size; 60-200 s on a loaded 2-core machine). The CNN-GP
# scripts compile several kernel programs (float32 and float64, two readouts) and start
# neural-tangents' environment when it exists; the Bayesian-CNN scripts compile
# a convolutional SG-MCMC run and its baselines (bcnn_functional_prior: two CNN prior fits,
# their independent W1 critics and five SG-MCMC runs, ~85 s CPU); compile_flags compiles a
# sampler run in two fresh processes (~25 s).
SLOW = {
    "fprior_drift",
    "fprior_speed",
    "fprior_uci",
    "fprior_step_rule",
    "mdbm_constraint",
    "mdbm_fashion",
    "mdbm_solvers",
    "mdbm_speed",
    "cnngp_speed",
    "cnngp_corrupted",
    "bayesian_cnn",
    "bcnn_speed",
    "bcnn_functional_prior",
    "compile_flags",
}
# Scripts whose owner has not added --smoke yet; the test below fails once they have it, so
# this set only shrinks.
PENDING: set[str] = set()


def _has_smoke(path):
    return '"--smoke"' in path.read_text()


def _params():
    for path in SCRIPTS:
        marks = []
        if path.stem in SLOW:
            marks.append(pytest.mark.slow)
        if path.stem in PENDING:
            marks.append(pytest.mark.skip(reason=f"{path.name}: --smoke not added yet"))
        yield pytest.param(path, marks=marks, id=path.stem)


def test_scripts_are_discovered_and_accept_smoke():
    assert len(SCRIPTS) >= 10, SCRIPTS
    missing = sorted(p.name for p in SCRIPTS if p.stem not in PENDING and not _has_smoke(p))
    assert not missing, f"benchmark scripts without a --smoke mode: {missing}"
    done = sorted(p.name for p in SCRIPTS if p.stem in PENDING and _has_smoke(p))
    assert not done, f"remove from PENDING in this test (they have --smoke now): {done}"


def _results_state():
    return {p: p.stat().st_mtime_ns for p in (BENCHMARKS / "results").rglob("*") if p.is_file()}


@pytest.mark.parametrize("script", list(_params()))
def test_benchmark_smoke(script, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    # The scripts pin themselves to one core (benchmarks/_pinning.py): one core per xdist
    # worker, so two smoke runs side by side do not share core 0.
    cores = sorted(os.sched_getaffinity(0))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    env.setdefault("BAYESNN_PIN_CORE", str(cores[worker % len(cores)]))
    before = _results_state()
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script.name} --smoke failed:\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip(), f"{script.name} --smoke printed nothing"
    assert _results_state() == before, f"{script.name} --smoke rewrote benchmarks/results"
