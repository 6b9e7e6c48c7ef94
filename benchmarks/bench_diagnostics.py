"""Weight-space diagnostics: samplers.results (JAX) vs numpyro.diagnostics vs ArviZ.

Times classic split-R-hat and ESS-of-the-mean on a (chains, draws, params) float32 trace,
the three implementations side by side in one run (same estimators: ``az.rhat(method=
"split")``, ``az.ess(method="mean")``; numpyro's ESS does not split chains), and ArviZ's
rank-normalised R-hat (the ``az.summary`` default) for reference. The process pins itself to
one core before JAX starts (XLA sizes its CPU thread pool from the affinity mask); wall and
process CPU time of the fastest of the repeats are reported, ratios on CPU time.

    python benchmarks/bench_diagnostics.py            # 4 x 200 x 20,000
    python benchmarks/bench_diagnostics.py --quick    # 4 x 200 x 2,000
"""

import os

from _pinning import pin_to_one_core  # noqa: E402

pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def _time(fn, repeat=2):
    """(wall, CPU) seconds of the fastest of ``repeat`` calls, after a warm-up call."""
    fn()  # warm-up / compilation
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--params", type=int, default=None)
    parser.add_argument("--no-rank", action="store_true", help="skip ArviZ rank R-hat")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    if args.smoke:
        args.draws = 20
    params = args.params or (50 if args.smoke else 2000 if args.quick else 20000)

    import arviz as az
    import jax
    import numpyro.diagnostics as nd
    import xarray as xr

    from samplers import results as R

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    e = rng.normal(size=(args.chains, args.draws, params)).astype(np.float32)
    x = e.copy()
    for t in range(1, args.draws):  # AR(1), rho = 0.5
        x[:, t] = 0.5 * x[:, t - 1] + np.sqrt(0.75) * e[:, t]
    xj = jax.device_put(x)
    ds = xr.Dataset({"w": (("chain", "draw", "p"), x)})

    rows = []

    def add(name, fn, repeat=2):
        rows.append((name, _time(fn, repeat)))

    add("samplers.results.split_rhat (jit)", lambda: R.split_rhat(xj).block_until_ready())
    add("samplers.results.ess (jit, split)", lambda: R.ess(xj).block_until_ready())
    add("numpyro split_gelman_rubin", lambda: nd.split_gelman_rubin(x))
    add("numpyro effective_sample_size", lambda: nd.effective_sample_size(x))
    add("az.rhat(method='split')", lambda: az.rhat(ds, method="split"), repeat=1)
    add("az.ess(method='mean')", lambda: az.ess(ds, method="mean"), repeat=1)
    if not args.no_rank:
        add("az.rhat(method='rank') [default]", lambda: az.rhat(ds, method="rank"), repeat=1)

    # Agreement on a few columns.
    k = min(params, 50)
    r_ours = np.asarray(R.split_rhat(xj[:, :, :k]))
    r_az = az.rhat(ds.isel(p=slice(0, k)), method="split")["w"].values
    e_ours = np.asarray(R.ess(xj[:, :, :k]))
    e_az = az.ess(ds.isel(p=slice(0, k)), method="mean")["w"].values

    cpu = {name: t[1] for name, t in rows}
    names = [name for name, _ in rows]
    print(
        f"pinned to cores {sorted(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"trace (chains, draws, params) = ({args.chains}, {args.draws}, {params}) float32")
    print(f"{'implementation':40s} {'wall s':>9s} {'CPU s':>9s}")
    for name, (wall, sec) in rows:
        print(f"{name:40s} {wall:9.3f} {sec:9.3f}")
    ours = max(cpu[names[0]], 1e-9), max(cpu[names[1]], 1e-9)
    for label, i in (("numpyro/ours", 2), ("ArviZ/ours", 4)):
        r_ratio, e_ratio = cpu[names[i]] / ours[0], cpu[names[i + 1]] / ours[1]
        print(f"ratio {label:13s} R-hat {r_ratio:7.1f}x   ESS {e_ratio:7.1f}x (CPU time)")
    print(f"ours total {sum(ours):.3f} CPU s")
    print(
        f"max rel. diff vs ArviZ on {k} columns: R-hat {np.max(np.abs(r_ours / r_az - 1)):.1e}, "
        f"ESS {np.max(np.abs(e_ours / e_az - 1)):.1e}"
    )


if __name__ == "__main__":
    main()
