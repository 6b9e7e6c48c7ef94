"""Build the NUTS gold standard: ``python tests/data/nuts_gold/make_gold.py`` (minutes).

For each problem of ``problems.py`` runs numpyro's NUTS on the full-data log posterior (the
model's ``logdensity`` with the whole training set, so exactly the posterior that SG-MCMC
targets), 4 chains (draws, warm-up and tree depth per problem in ``SETTINGS``), chains
started from the architecture initialisation, and stores the predictive mean and standard deviation of the
network output ``f`` at the probe points, with NUTS's function-space R-hat and bulk ESS, in
``<problem>.npz``.
"""

from __future__ import annotations

import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", False)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402
from problems import build  # noqa: E402

NUM_CHAINS = 4
# (warm-up, draws per chain, max tree depth): the BNN's trees are capped at depth 8 (255
# leapfrog steps) to bound the build time on a shared 2-core machine
SETTINGS = {"logistic": (2000, 5000, 10), "bnn": (1000, 1500, 8)}


def run(name):
    model, (x, y), x_probe = build(name)
    data_size = x.shape[0]

    def potential(position):
        return -model.logdensity(position, (x, y), data_size)

    keys = jax.random.split(jax.random.key(2026), NUM_CHAINS)
    init = jax.vmap(model.init)(keys)
    num_warmup, num_samples, depth = SETTINGS[name]
    mcmc = MCMC(
        NUTS(potential_fn=potential, target_accept_prob=0.9, max_tree_depth=depth),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=NUM_CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.key(0), init_params=init, extra_fields=("diverging",))
    seconds = time.perf_counter() - start
    draws = mcmc.get_samples(group_by_chain=True)
    f = jax.vmap(jax.vmap(model.predict, (0, None)), (0, None))(draws, x_probe)[..., 0]
    f = np.asarray(f, np.float64)  # (chains, draws, probes)
    rhat = np.asarray(az.rhat(az.convert_to_dataset(f[..., None, :]))["x"]).ravel()
    ess = np.asarray(az.ess(az.convert_to_dataset(f[..., None, :]))["x"]).ravel()
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    flat = f.reshape(-1, f.shape[-1])
    out = {
        "x_probe": np.asarray(x_probe),
        "mean": flat.mean(0),
        "std": flat.std(0),
        "rhat": rhat,
        "ess_bulk": ess,
        "num_draws": np.asarray(flat.shape[0]),
        "divergences": np.asarray(divergences),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.npz")
    np.savez(path, **out)
    print(
        f"{name}: {seconds:.0f} s, max R-hat {rhat.max():.4f}, min bulk ESS {ess.min():.0f}, "
        f"divergences {divergences}, predictive sd range {flat.std(0).min():.3f}-"
        f"{flat.std(0).max():.3f}"
    )


if __name__ == "__main__":
    for problem in sys.argv[1:] or ["logistic", "bnn"]:
        run(problem)
