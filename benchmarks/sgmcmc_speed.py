"""SGHMC steps per second: our driver vs a bare jitted scan vs a minimal PyTorch loop.

Model: tanh 1x50 MLP (``serial(Dense(50, b_std=1.0), Tanh(), Dense(1, b_std=1.0))``, NTK
parameterisation), isotropic Gaussian prior, Gaussian likelihood (noise sd 0.3), synthetic
regression data ``N = 1000``, ``D = 8``, minibatch 32 drawn with replacement. Timed:

* ``driver``: ``samplers.sgmcmc.sample`` with ``sghmc`` / ``adaptive_sghmc``
  (``batches="replace"``, ``progress_bar=False``, ``shard=False``; draws thinned so that only
  a few are stored);
* ``bare scan``: the same SGHMC update written as one jitted ``lax.scan`` over steps with
  ``randint`` minibatches, ``vmap`` over chains (the BlackJAX-style hand-written loop);
* ``torch``: a minimal PyTorch SGHMC loop (plain and the adaptive SGHMC of Springenberg et
  al. 2016), one chain, if ``torch`` is installed.

Threads are pinned to one (``XLA_FLAGS`` below unless already set; ``torch.set_num_threads(1)``).
Compilation is excluded (one warm-up call); the median process CPU time of the repeats is
reported (robust to other jobs on a shared machine).

Run: ``python benchmarks/sgmcmc_speed.py [--quick] [--chains 1,4] [--no-torch]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bayesnn import likelihoods, nn, priors  # noqa: E402
from bayesnn.model import BayesianNeuralNet  # noqa: E402
from samplers import sgmcmc  # noqa: E402

N, D, B, WIDTH = 1000, 8, 32, 50
NOISE = 0.3
STEP, ALPHA = 1e-3, 0.1  # SGHMC step size h and friction alpha
LR, MDECAY = 1e-2, 0.05  # adaptive SGHMC learning rate and momentum decay
REF_MS = 1.36  # functional-prior reference code, ms per step, one core


def make_problem():
    kx, kw, kn = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (N, D))
    y = jnp.tanh(x @ jax.random.normal(kw, (D, 1))) + NOISE * jax.random.normal(kn, (N, 1))
    arch = nn.serial(nn.Dense(WIDTH, b_std=1.0), nn.Tanh(), nn.Dense(1, b_std=1.0))
    model = BayesianNeuralNet.create(
        arch, (D,), priors.IsotropicGaussian.create, likelihoods.Gaussian(NOISE)
    )
    return model, (x, y)


def init_positions(model, chains):
    return jax.vmap(model.init)(jax.random.split(jax.random.key(1), chains))


def bare_scan(model, data, steps):
    """Hand-written loop: jitted ``lax.scan`` of the SGHMC update, ``vmap`` over chains."""
    x, y = data
    grad_fn = jax.grad(model.logdensity)

    def chain(key, position):
        momentum = jax.tree.map(jnp.zeros_like, position)
        scale = jnp.sqrt(2 * ALPHA * STEP)

        def body(carry, k):
            position, momentum = carry
            k_idx, k_noise = jax.random.split(k)
            idx = jax.random.randint(k_idx, (B,), 0, N)
            g = grad_fn(position, (x[idx], y[idx]), N)
            leaves, treedef = jax.tree_util.tree_flatten(position)
            keys = jax.random.split(k_noise, len(leaves))
            noise = jax.tree_util.tree_unflatten(
                treedef,
                [
                    jax.random.normal(kk, p.shape, p.dtype)
                    for kk, p in zip(keys, leaves, strict=True)
                ],
            )
            momentum = jax.tree.map(
                lambda p, gg, n: (1 - ALPHA * STEP) * p + STEP * gg + scale * n, momentum, g, noise
            )
            position = jax.tree.map(lambda q, p: q + STEP * p, position, momentum)
            return (position, momentum), None

        (position, _), _ = jax.lax.scan(body, (position, momentum), jax.random.split(key, steps))
        return position

    return jax.jit(jax.vmap(chain))


def time_call(fn, repeats):
    """Median time of ``fn()`` (blocking on its output) after one warm-up call.

    On the CPU, process CPU time, not wall time: with one thread they agree on an idle
    machine, and CPU time is far less disturbed when other jobs share the cores. On an
    accelerator the host sleeps while the device works, so wall time is used there.
    """
    clock = time.process_time if jax.default_backend() == "cpu" else time.perf_counter
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = clock()
        jax.block_until_ready(fn())
        times.append(clock() - t0)
    return statistics.median(times)


def bench_jax(model, data, chains, steps, repeats):
    pos = init_positions(model, chains)
    keys = jax.random.split(jax.random.key(2), chains)
    bare = bare_scan(model, data, steps)
    out = {"bare scan": time_call(lambda: bare(keys, pos), repeats) / steps}
    for name, kernel, h in [
        ("driver sghmc", sgmcmc.sghmc(alpha=ALPHA), STEP),
        ("driver adaptive_sghmc", sgmcmc.adaptive_sghmc(mdecay=MDECAY), LR),
    ]:

        def run(kernel=kernel, h=h):
            res = sgmcmc.sample(
                jax.random.key(3), kernel, model.logdensity, data, pos,
                num_samples=10, thinning=steps // 10, batch_size=B, step_size=h,
                batches="replace", progress_bar=False, shard=False,
            )  # fmt: skip
            return res.positions

        out[name] = time_call(run, repeats) / steps
    return out


def bench_torch(data, steps, repeats):
    """Minimal PyTorch SGHMC loops (one chain), the same model and minibatches."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.as_tensor(np.array(data[0]))
    y = torch.as_tensor(np.array(data[1]))
    params = [
        torch.randn(D, WIDTH), torch.randn(WIDTH), torch.randn(WIDTH, 1), torch.randn(1)
    ]  # fmt: skip
    for p in params:
        p.requires_grad_(True)
    c1, c2 = 1.0 / D**0.5, 1.0 / WIDTH**0.5

    def neg_logdensity(batch_x, batch_y):
        w1, b1, w2, b2 = params
        f = torch.tanh(batch_x @ w1 * c1 + b1) @ w2 * c2 + b2
        nll = 0.5 * ((batch_y - f) ** 2).sum() / NOISE**2
        prior = 0.5 * sum((p**2).sum() for p in params)
        return prior + N / B * nll

    def grads():
        idx = torch.randint(0, N, (B,))
        for p in params:
            p.grad = None
        neg_logdensity(x[idx], y[idx]).backward()
        return [p.grad for p in params]

    momentum = [torch.zeros_like(p) for p in params]
    scale = (2 * ALPHA * STEP) ** 0.5

    def sghmc_loop():
        for _ in range(steps):
            g = grads()
            with torch.no_grad():
                for p, m, gg in zip(params, momentum, g, strict=True):
                    m.mul_(1 - ALPHA * STEP).add_(gg, alpha=-STEP).add_(
                        torch.randn_like(p), alpha=scale
                    )
                    p.add_(m, alpha=STEP)

    # Adaptive SGHMC (Springenberg et al. 2016), from the math in adaptive_sghmc.py.
    tau = [torch.ones_like(p) for p in params]
    g_avg = [torch.ones_like(p) for p in params]
    v_avg = [torch.ones_like(p) for p in params]
    v_mom = [torch.zeros_like(p) for p in params]

    def adaptive_loop(burnin=True):
        for _ in range(steps):
            g = grads()
            with torch.no_grad():
                for i, p in enumerate(params):
                    gi = g[i]
                    if burnin:
                        r = 1.0 / (tau[i] + 1.0)
                        tau[i] = tau[i] - tau[i] * g_avg[i] ** 2 / (v_avg[i] + 1e-16) + 1.0
                        g_avg[i] = g_avg[i] - g_avg[i] * r + r * gi
                        v_avg[i] = v_avg[i] - v_avg[i] * r + r * gi * gi
                    minv = 1.0 / (v_avg[i].sqrt() + 1e-16)
                    var = (2.0 * LR**2 * MDECAY * minv - LR**4).clamp(min=1e-16)
                    v_mom[i] = (
                        v_mom[i] - LR**2 * minv * gi - MDECAY * v_mom[i]
                        + var.sqrt() * torch.randn_like(p)
                    )  # fmt: skip
                    p.add_(v_mom[i])

    out = {}
    for name, loop in [("torch sghmc", sghmc_loop), ("torch adaptive_sghmc", adaptive_loop)]:
        loop()
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            loop()
            times.append(time.process_time() - t0)
        out[name] = statistics.median(times) / steps
    return out


def machine():
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(
            line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line
        )
    except Exception:  # pragma: no cover - lscpu missing
        name = platform.processor()
    return f"{name}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 1 minute)")
    parser.add_argument("--chains", default="1,4", help="comma-separated chain counts")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch loops")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = parser.parse_args()
    steps, torch_steps, repeats = (2000, 300, 3) if args.quick else (20000, 2000, 5)
    if args.smoke:
        steps, torch_steps, repeats, args.chains = 20, 10, 1, "2"

    model, data = make_problem()
    rows = {}
    for chains in (int(c) for c in args.chains.split(",")):
        for name, t in bench_jax(model, data, chains, steps, repeats).items():
            rows[(name, chains)] = t / chains  # per chain-step
    if not args.no_torch:
        torch_rows = bench_torch(data, torch_steps, repeats)
        if not torch_rows:
            print("torch not installed: the PyTorch rows are skipped")
        for name, t in torch_rows.items():
            rows[(name, 1)] = t

    print(f"machine: {machine()}; jax {jax.__version__}, backend {jax.default_backend()}")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}; steps {steps} (torch {torch_steps})")
    print()
    print("| sampler | chains | us per chain-step | vs bare scan | reference / this |")
    print("| --- | --- | --- | --- | --- |")
    for (name, chains), t in rows.items():
        bare = rows.get(("bare scan", chains))
        overhead = f"{100 * (t / bare - 1):+.1f}%" if bare and name != "bare scan" else ""
        print(f"| {name} | {chains} | {1e6 * t:.1f} | {overhead} | {REF_MS * 1e-3 / t:.0f}x |")
    print()
    print(f"reference: functional-prior code {REF_MS} ms/step (one core, measured separately)")


if __name__ == "__main__":
    main()
