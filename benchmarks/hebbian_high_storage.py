"""P = 4 high-storage Monte Carlo (K = alpha N^3) at small N against the RS theory.

Supervised rule, distinct-index convention (``convention="distinct"``: the P-body sum runs
over pairwise distinct indices, no self-interaction; the RS noise constant is then
(P!/2)(P/2), see ``bayesnn.hebbian.theory.high_storage_rs``), r = 0.8, M = 20 (exact law of
the example mean), T = 0.1, started at archetype 1. For each (N, alpha): B independent data
sets (disorder samples) x C chains of sequential heat bath (random sites, exact dH from the
cached odd power sums, O(K P^2) per flip); m_1 is the Mattis magnetisation averaged over the
second half of the sweeps, then over chains; the table gives its mean and standard error
over data sets, the number of escaped chains (final m_1 < 0.3, reported, not averaged in)
and the RS prediction. Finite-size effects are large at these N (N = 24-48): the RS value is
the N -> infinity limit, so the comparison is a trend check, not a test.

    python benchmarks/hebbian_high_storage.py [--quick]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from bayesnn import hebbian as hb

ORDER, R_Q, M_EX, TEMP = 4, 0.8, 20, 0.1
SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def run_cell(n, alpha, samples, chains, sweeps, seed=0):
    k = max(1, int(round(alpha * n ** (ORDER - 1))))
    keys = jax.random.split(jax.random.key(seed), samples)
    dss = [hb.make_dataset(kk, k, n, M_EX, R_Q) for kk in keys]
    rows = jnp.stack([hb.supervised_network(d.examples, ORDER, R_Q, "distinct").rows for d in dss])
    xis = jnp.stack([d.archetypes for d in dss])

    @jax.jit
    def sim(rows, xis, key):
        def one(rows, xi, key):
            net = hb.HebbianNetwork(rows, ORDER, 1.0, "distinct")
            s0 = jnp.broadcast_to(xi[0], (chains, n))
            res = hb.simulate(key, net, s0, 1 / TEMP, sweeps, xi[:1], burn_in=sweeps // 2)
            return res.mean[:, 0], res.trace[:, -1, 0]

        return jax.vmap(one)(rows, xis, jax.random.split(key, samples))

    t = time.perf_counter()
    mean, final = jax.block_until_ready(sim(rows, xis, jax.random.key(seed + 1)))
    dt = time.perf_counter() - t
    mean, final = np.asarray(mean), np.asarray(final)
    ok = final >= 0.3
    per_sample = np.array(
        [mean[b][ok[b]].mean() if ok[b].any() else np.nan for b in range(samples)]
    )
    good = per_sample[np.isfinite(per_sample)]
    se = good.std(ddof=1) / np.sqrt(good.size) if good.size > 1 else np.nan
    return k, good.mean(), se, int((~ok).sum()), dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    ns = (24, 32) if args.quick else (24, 32, 40, 48)
    alphas = (0.005, 0.02) if args.quick else (0.005, 0.01, 0.02, 0.03, 0.05)
    samples, chains, sweeps = (4, 4, 60) if args.quick else (8, 8, 200)
    if args.smoke:
        ns, alphas, samples, chains, sweeps = (12,), (0.02,), 2, 2, 4
    law = hb.exact_law(R_Q, M_EX)
    rho = float(hb.dataset_entropy(R_Q, M_EX))
    print(f"P={ORDER} r={R_Q} M={M_EX} rho={rho:.4f} T={TEMP}, distinct indices")
    print(f"alpha_c(T=0, rho) = {float(hb.dense_critical_load(ORDER, rho).alpha):.4f}")
    print(f"{samples} data sets x {chains} chains, {sweeps} sweeps (second half averaged)")
    print("\n| N | alpha | K | MC m_1 | s.e. | escaped | RS m_1 | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for alpha in alphas:
        m_rs = hb.high_storage_rs(1 / TEMP, alpha, ORDER, law, "distinct").m
        for n in ns:
            k, m, se, esc, dt = run_cell(n, alpha, samples, chains, sweeps)
            print(
                f"| {n} | {alpha} | {k} | {m:.4f} | {se:.4f} | {esc}/{samples * chains} | "
                f"{float(m_rs):.4f} | {dt:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
