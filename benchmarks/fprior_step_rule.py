"""The engine's bias-controlled step size for the UCI posterior of ``fprior_uci.py``.

The functional-prior reference samples its UCI posteriors with adaptive SGHMC at a fixed
learning rate 0.01 (mdecay 0.01, batch 32, Gaussian likelihood of fixed variance 0.1 in
standardised units). This script asks the engine's rule
(:func:`samplers.sgmcmc.step_size.tune_step_size`: the largest step whose predicted
stationary variance is within ``tolerance`` of the posterior's, re-estimated while the
chains burn in) what step that kernel would get on one split, so that the reference's rate
can be read against it. The network is that of ``fprior_uci.py`` (tanh 1x50, 1x100 for
protein) with the fixed ``N(0, 1)`` prior (``fg``).

    PYTHONPATH=. python benchmarks/fprior_step_rule.py wine-quality-red --steps 4000
    PYTHONPATH=. python benchmarks/fprior_step_rule.py --smoke   # seconds; not a result
"""

from __future__ import annotations

import argparse
import math
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from fprior_uci import mlp  # noqa: E402

from bayesnn import likelihoods as lik  # noqa: E402
from bayesnn.datasets import load_uci  # noqa: E402
from bayesnn.model import BayesianNeuralNet  # noqa: E402
from bayesnn.priors import LayerwiseGaussian, template_of  # noqa: E402
from samplers import sgmcmc  # noqa: E402
from samplers.sgmcmc import step_size  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", default="wine-quality-red")
    p.add_argument("--root", default="/work/shared/data/uci")
    p.add_argument("--split", type=int, default=0)
    p.add_argument("--steps", type=int, default=4000, help="burn-in steps of the rule")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--noise-var", type=float, default=0.1)
    p.add_argument("--mdecay", type=float, default=0.01)
    p.add_argument("--tolerances", type=float, nargs="+", default=[0.1, 0.3])
    p.add_argument("--smoke", action="store_true", help="tiny sizes; synthetic data if absent")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.chains, args.tolerances = 40, 2, [0.5]
    if args.smoke and not os.path.isdir(os.path.join(args.root, args.dataset)):
        x = jax.random.normal(jax.random.key(0), (64, 3))
        y = jnp.sin(x[:, :1]) + 0.3 * jax.random.normal(jax.random.key(1), (64, 1))
        print(f"UCI splits not found under {args.root}: synthetic data (64 x 3)")
        args.dataset = "synthetic"
    else:
        data = load_uci(args.dataset, args.split, root=args.root)
        x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    d = x.shape[1]
    arch = mlp(100 if args.dataset.startswith("protein") else 50)
    tmpl = template_of(arch.init(jax.random.key(0), (d,)))
    model = BayesianNeuralNet.create(
        arch,
        (d,),
        LayerwiseGaussian.create(tmpl, 1.0, 1.0),
        lik.Gaussian(math.sqrt(args.noise_var)),
    )
    positions = jax.vmap(model.init)(jax.random.split(jax.random.key(1), args.chains))
    kernel = sgmcmc.adaptive_sghmc(mdecay=args.mdecay)
    for tol in args.tolerances:
        try:
            _, info = step_size.tune_step_size(
                jax.random.key(2),
                kernel,
                model.logdensity,
                (x, y),
                positions,
                batch_size=32,
                num_steps=args.steps,
                tolerance=tol,
                batches="replace",
            )
        except FloatingPointError as err:  # no admissible step: the rule says why
            print(f"{args.dataset} split {args.split}: tolerance {tol:g}: {err}")
            continue
        per_chain = ", ".join(f"{float(h):.3g}" for h in info.per_chain)
        print(
            f"{args.dataset} split {args.split}: tolerance {tol:g}: step {float(info.step_size):.3g}"
            f" (per chain {per_chain})"
        )


if __name__ == "__main__":
    main()
