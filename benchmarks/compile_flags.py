"""XLA:CPU compile time of an SG-MCMC run under the test suite's compile-time flags.

The test suite (``tests/conftest.py: COMPILE_FAST_XLA_FLAGS``) compiles with
``--xla_backend_optimization_level=0`` and, beside it, ``--xla_cpu_use_fusion_emitters=false
--xla_cpu_parallel_codegen_split_count=1``. This script measures what the two extra flags buy,
side by side in one run: each configuration runs in its own fresh process (a new JAX, so
nothing is cached), pinned to one core (``_pinning``), and times

* the first call of ``samplers.sgmcmc.sample`` for two SGHMC runs of a tanh MLP
  (8 -> 16 -> 1, 200 data points, 4 chains, batch 32; two frictions: two programs) -- compile
  plus a short run;
* a second, longer call of the already compiled run (2,000 kept draws) -- run time only,

as wall and process CPU time, medians over ``--repeats`` processes per configuration, taken in
alternating order so that a drift of the machine's speed does not fall on one configuration.
Ratios are on CPU time.

Run: ``python benchmarks/compile_flags.py [--smoke] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

BASE = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
CONFIGS = {
    "opt level 0 (before)": BASE,
    "+ classic emitters, one codegen split (suite)": BASE
    + " --xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1",
}


def worker(long_draws: int) -> None:
    from _pinning import pin_to_one_core

    pin_to_one_core()
    import time

    import jax
    import numpy as np

    from bayesnn import BayesianNeuralNet, likelihoods, nn, priors
    from samplers import sgmcmc

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = (x @ np.ones((8, 1)) + 0.1 * rng.normal(size=(200, 1))).astype(np.float32)
    model = BayesianNeuralNet.create(
        nn.serial(nn.Dense(16), nn.Tanh(), nn.Dense(1)),
        (8,),
        lambda t: priors.IsotropicGaussian.create(t, 1.0),
        likelihoods.Gaussian(0.1),
    )
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 4))

    def run(alpha, num_samples, key):
        result = sgmcmc.sample(
            jax.random.key(key), sgmcmc.sghmc(alpha=alpha), model.logdensity, (x, y), init,
            num_samples=num_samples, num_burnin=200, thinning=2, batch_size=32,
            step_size=1e-3, progress_bar=False,
        )  # fmt: skip
        jax.block_until_ready(result.positions)

    wall, cpu = time.perf_counter(), time.process_time()
    run(1.0, 20, 1)
    run(2.0, 20, 1)
    first = (time.perf_counter() - wall, time.process_time() - cpu)
    wall, cpu = time.perf_counter(), time.process_time()
    run(1.0, long_draws, 2)
    second = (time.perf_counter() - wall, time.process_time() - cpu)
    print(json.dumps({"first": first, "second": second}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one process per configuration")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker)
    from _pinning import share_chosen_core

    core = share_chosen_core()
    repeats, draws = (1, 20) if args.smoke else (args.repeats, 2000)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    times = {name: [] for name in CONFIGS}
    for _ in range(repeats):
        for name, flags in CONFIGS.items():
            out = subprocess.run(
                [sys.executable, __file__, "--worker", str(draws)],
                env=dict(env, XLA_FLAGS=flags),
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise RuntimeError(out.stderr[-2000:])
            times[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"pinned to core {core}; {repeats} process(es) per configuration, medians")
    print("| XLA flags | first calls (compile): wall / CPU s | compiled run: wall / CPU s |")
    print("|---|---|---|")
    med = {}
    for name, runs in times.items():
        m = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in ("first", "second")}
        med[name] = m
        print(
            f"| {name} | {m['first'][0]:.2f} / {m['first'][1]:.2f} | "
            f"{m['second'][0]:.2f} / {m['second'][1]:.2f} |"
        )
    before, after = (med[name] for name in CONFIGS)
    print(
        f"compile-time flags: first calls x{after['first'][1] / before['first'][1]:.2f} CPU, "
        f"compiled run x{after['second'][1] / before['second'][1]:.2f} CPU"
    )


if __name__ == "__main__":
    main()
