"""Speed of functional-prior tuning: bayesnn (JAX) against a minimal PyTorch re-implementation
of the reference settings of Tran et al. (2022), side by side in one process.

Setting (reference UCI notebook, Boston split 0, D = 13): tanh 1x50 BNN, Gaussian (GPi-G)
prior with per-layer scales, hierarchical RBF-ARD GP target (log l_d ~ N(log sqrt(2D), 1),
log s2 ~ N(0.1, 1)), 100 measurement points (70% train inputs, 30% uniform box), 128
functions per side, critic 100 -> 200 -> 200 -> 1 (softplus), lambda = 10, RMSprop(0.05) on
the prior.

Runs (one thread each, pinned):

* ``torch-ref``: critic weights reset every prior step, one Adagrad(0.02) created once (as
  the reference), 200 critic steps on one batch, GP draws by a loop of float64 Choleskys.
* ``jax-ref``: the same algorithm in bayesnn (``warm_start=False``, Adagrad(0.02) reset with
  the weights, 200 critic steps).
* ``jax-warm``: bayesnn defaults (warm-started critic, Adam, ``--warm-steps`` critic steps).
* ``jax-sliced``: sliced-W1 estimator (no critic).

Every tuned prior is scored by the same independent critic (``evaluate_w1``) at a fixed
measurement set. Usage::

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        python benchmarks/fprior_speed.py [--quick] [--iters 200]
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bayesnn import functional_prior as fp  # noqa: E402
from bayesnn.gp import RBF, GPPrior, LogNormal  # noqa: E402
from bayesnn.nn import stax  # noqa: E402


def load_boston():
    try:
        from bayesnn.datasets import load_uci

        s = load_uci("boston", 0, root="/work/shared/data/uci")
        return np.asarray(s.x_train, np.float32), np.asarray(s.x_test, np.float32)
    except Exception:  # pragma: no cover - fallback for a fresh checkout
        rng = np.random.default_rng(0)
        return rng.normal(size=(455, 13)).astype(np.float32), rng.normal(size=(51, 13)).astype(
            np.float32
        )


# ------------------------------------------------------------------ torch re-implementation
def torch_reference(x_train, x_all, iters, hidden, critic_steps, seed=0):
    """Minimal PyTorch version of the reference mapper (written from the description)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    D = x_train.shape[1]
    n_data, n_fn = 100, 128
    lo, hi = x_all.min(0), x_all.max(0)
    # prior: raw softplus params per layer, start at softplus^-1(1) = 0.5413 (scale 1)
    raw0 = math.log(math.expm1(1.0))
    sizes = [(D, hidden), (hidden, 1)]
    raw = [torch.full((2,), raw0, requires_grad=True) for _ in sizes]
    popt = torch.optim.RMSprop(raw, lr=0.05)

    def bnn(x, n):
        h = x.unsqueeze(0).expand(n, -1, -1)
        for li, (a, b) in enumerate(sizes):
            sw, sb = torch.nn.functional.softplus(raw[li])
            W = sw * torch.randn(n, a, b) / math.sqrt(a)
            bias = sb * torch.randn(n, 1, b)
            h = torch.bmm(h, W) + bias
            if li < len(sizes) - 1:
                h = torch.tanh(h)
        return h[..., 0]

    def gp(x, n):
        xd = x.double().numpy()
        out = np.empty((n, x.shape[0]))
        for i in range(n):
            ls = np.exp(np.log(math.sqrt(2 * D)) + rng.normal(size=D))
            s2 = np.exp(0.1 + rng.normal())
            d2 = (((xd[:, None, :] - xd[None]) / ls) ** 2).sum(-1)
            K = s2 * np.exp(-0.5 * d2)
            jit = 1e-6
            while True:
                try:
                    L = np.linalg.cholesky(K + jit * np.eye(len(K)))
                    break
                except np.linalg.LinAlgError:
                    jit *= 2
            out[i] = L @ rng.normal(size=len(K))
        return torch.from_numpy(out).float()

    critic = torch.nn.Sequential(
        torch.nn.Linear(n_data, 200),
        torch.nn.Softplus(),
        torch.nn.Linear(200, 200),
        torch.nn.Softplus(),
        torch.nn.Linear(200, 1),
    )
    copt = torch.optim.Adagrad(critic.parameters(), lr=0.02)  # created once (reference)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        n_tr = 70
        idx = rng.choice(len(x_train), n_tr, replace=False)
        xm = np.concatenate([x_train[idx], rng.uniform(lo, hi, size=(n_data - n_tr, D))])
        xm = torch.from_numpy(xm.astype(np.float32))
        for m in critic.modules():  # reset weights only
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_normal_(m.weight)
                torch.nn.init.normal_(m.bias)
        fg = gp(xm, n_fn)
        with torch.no_grad():
            fb = bnn(xm, n_fn)
        for _ in range(critic_steps):
            copt.zero_grad()
            eps = torch.rand(n_fn, 1)
            mix = (eps * fb + (1 - eps) * fg).requires_grad_(True)
            g = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
            pen = ((g.norm(dim=1) - 1) ** 2).mean()
            loss = -(critic(fb).mean() - critic(fg).mean()) + 10 * pen
            loss.backward()
            copt.step()
        popt.zero_grad()
        fg2 = gp(xm, n_fn)
        w = critic(bnn(xm, n_fn)).mean() - critic(fg2).mean()
        w.backward()
        popt.step()
        times.append(time.perf_counter() - t0)
    scales = [torch.nn.functional.softplus(r).detach().numpy() for r in raw]
    return np.asarray(times), scales


# ------------------------------------------------------------------ bayesnn runs
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few iterations (< ~1 min)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warm-steps", type=int, default=20)
    ap.add_argument("--skip-torch", action="store_true")
    args = ap.parse_args()
    iters = 6 if args.quick else args.iters
    ref_steps = 50 if args.quick else 200
    eval_steps = 200 if args.quick else 1500

    x_train, x_test = load_boston()
    x_all = np.concatenate([x_train, x_test])
    D = x_train.shape[1]
    arch = stax.serial(stax.Dense(50, b_std=1.0), stax.Tanh(), stax.Dense(1, b_std=1.0))
    target = RBF(LogNormal(0.1, 1.0), LogNormal(jnp.full((D,), math.log(math.sqrt(2 * D))), 1.0))
    box = (x_all.min(0), x_all.max(0))
    ms = fp.mixture(x_train, 100, 0.7, box=box)
    rows = []

    def run_jax(name, precision, **kw):
        gp = GPPrior(target, precision=precision)
        t0 = time.perf_counter()
        prior, hist = fp.fit_functional_prior(
            arch,
            gp,
            ms,
            "gaussian",
            steps=iters,
            key=jax.random.key(0),
            num_functions=128,
            check_every=max(1, iters // 4),
            **kw,
        )
        total = time.perf_counter() - t0
        # steady-state per-iteration time: from the check timestamps
        steady = (
            (hist.wall_time[-1] - hist.wall_time[(iters // 4) - 1]) / (iters - iters // 4)
            if iters >= 4
            else total / iters
        )
        rows.append((name, steady, total, hist.family, hist.theta))

    run_jax(
        f"jax-ref (reset, Adagrad, {ref_steps} steps)",
        "float64",
        warm_start=False,
        critic_steps=ref_steps,
        critic_optimizer=optax.adagrad(0.02),
    )
    run_jax(
        "jax-ref f32 GP in jit",
        "float32",
        warm_start=False,
        critic_steps=ref_steps,
        critic_optimizer=optax.adagrad(0.02),
    )
    run_jax(
        f"jax-warm ({args.warm_steps} steps)",
        "float32",
        critic_steps=args.warm_steps,
        first_critic_steps=500 if not args.quick else 100,
    )
    run_jax("jax-sliced", "float32", estimator="sliced")

    torch_row = None
    if not args.skip_torch:
        try:
            times, scales = torch_reference(x_train, x_all, iters, 50, ref_steps)
            torch_row = (
                f"torch-ref (reset, Adagrad, {ref_steps} steps)",
                np.median(times),
                times.sum(),
                scales,
            )
        except ImportError:
            print("torch not installed: skipping the PyTorch reference")

    # independent evaluation at one fixed measurement set
    x_eval = ms.sample(jax.random.key(123))
    gp_eval = GPPrior(target, precision="float64")
    fam = rows[0][3]

    def score(theta):
        est, se = fp.evaluate_w1(
            jax.random.key(7),
            arch,
            fam,
            theta,
            gp_eval,
            x_eval,
            num_steps=eval_steps,
            num_samples=128,
        )
        return float(est), float(se)

    cpu = os.popen("lscpu | grep 'Model name'").read().strip()
    print(f"machine: {cpu} (shared, loaded)")
    print(f"threads: 1 (XLA_FLAGS={os.environ['XLA_FLAGS']}; torch.set_num_threads(1))")
    print(f"prior iterations: {iters}; critic steps (reference algorithm): {ref_steps}")
    print(f"{'run':42s} {'s/iter':>8s} {'total s':>8s} {'indep. W1':>10s} {'+-':>6s}")
    w0 = score(fam.init())
    print(f"{'untuned N(0,1) prior':42s} {'':>8s} {'':>8s} {w0[0]:10.3f} {w0[1]:6.3f}")
    for name, steady, total, _, theta in rows:
        w = score(theta)
        print(f"{name:42s} {steady:8.4f} {total:8.2f} {w[0]:10.3f} {w[1]:6.3f}")
    if torch_row is not None:
        name, med, total, scales = torch_row
        layers = list(fam.init()["W"])
        inv = lambda s: float(np.log(np.expm1(s)))  # noqa: E731
        theta = {
            "W": {ly: jnp.asarray(inv(scales[i][0])) for i, ly in enumerate(layers)},
            "b": {ly: jnp.asarray(inv(scales[i][1])) for i, ly in enumerate(layers)},
        }
        w = score(theta)
        print(f"{name:42s} {med:8.4f} {total:8.2f} {w[0]:10.3f} {w[1]:6.3f}")


if __name__ == "__main__":
    main()
