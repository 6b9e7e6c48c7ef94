"""SGHMC cost per chain-step: our driver, a bare jitted scan and the functional-prior reference.

Model: tanh 1x50 MLP (``serial(Dense(50, b_std=1.0), Tanh(), Dense(1, b_std=1.0))``, NTK
parameterisation), isotropic Gaussian prior, Gaussian likelihood (noise sd 0.3), synthetic
regression data ``N = 1000``, ``D = 8``, minibatch 32. Timed, side by side in one run:

* ``driver``: ``samplers.sgmcmc.sample`` with ``sghmc`` / ``adaptive_sghmc``
  (``batches="replace"``, ``progress_bar=False``, ``shard=False``; draws thinned so that only
  ten are stored);
* ``bare scan``: the same SGHMC update written as one jitted ``lax.scan`` over steps with
  ``randint`` minibatches, ``vmap`` over chains (the BlackJAX-style hand-written loop); the
  driver's overhead is measured against it;
* ``reference``: the SG-MCMC code of the functional-prior paper (Tran et al. 2022, "All you
  need is a good functional prior for Bayesian deep learning", github
  tranbahien/you-need-a-good-prior: ``optbnn.sgmcmc_bayes_net.RegressionNet.train`` with its
  ``AdaptiveSGHMC`` / ``SGHMC`` optimisers, its ``MLP``, ``LikGaussian`` and
  ``FixedGaussianPrior``), run unchanged under PyTorch with one thread; it runs chains one
  after the other (``sample_multi_chains`` loops), so its cost per chain-step does not depend
  on the number of chains;
* ``torch minimal``: minimal PyTorch SGHMC loops (plain, and adaptive SGHMC from the math of
  Springenberg et al. 2016), one chain: what PyTorch costs without the reference's plumbing.

The PyTorch rows run in a child process with the interpreter ``--torch-python`` (torch need not
be installed next to JAX); the reference is imported from the checkout ``--reference`` put on
``sys.path`` (its setup.py pins torch<2, so it is not pip-installed). Rows whose interpreter or
checkout is missing are skipped with a message.

Every process pins itself to one core before JAX or PyTorch starts: XLA sizes its CPU thread
pool from the affinity mask (there is no XLA flag for it), and an unpinned process counts the
time of threads spinning on the second core. Compilation is excluded (one warm-up call); wall
and process CPU time are reported per chain-step, as medians of the repeats; the JAX rows are
timed in rounds (bare scan, driver, adaptive driver, then again), so that a drift of the
machine's speed does not fall on one row, and a row's overhead over the bare scan is the
median over rounds of its CPU time over the bare scan's in the same round. On an idle core
the two agree; on a shared machine CPU time is the less disturbed one, and the ratios (overhead
over the bare scan, reference / this) are taken on CPU time.

Run: ``python benchmarks/sgmcmc_speed.py [--quick | --smoke] [--chains 1,4,64]
[--torch-python PYTHON] [--reference PATH]``.
"""

from __future__ import annotations

import os
import sys

from _pinning import pin_to_one_core  # noqa: E402

pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

N, D, B, WIDTH = 1000, 8, 32, 50
NOISE = 0.3
STEP, ALPHA = 1e-3, 0.1  # SGHMC step size h and friction alpha
LR, MDECAY = 1e-2, 0.05  # adaptive SGHMC learning rate and momentum decay
OVERHEAD_GOAL = 0.10  # driver cost over the bare scan, per chain-step


def timed(fn, repeats):
    """Median (wall, CPU) seconds of ``fn()`` over ``repeats`` calls after one warm-up call.

    ``fn`` must block until its work is done.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


# --------------------------------------------------------------------------------------------
# PyTorch side: runs in a child process started with ``--torch-worker`` (no JAX imported there)
# --------------------------------------------------------------------------------------------


def _torch_minimal(x, y, steps, repeats):
    """Minimal PyTorch SGHMC loops (one chain) on the same model and minibatch size."""
    import torch

    torch.manual_seed(0)
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

    tau = [torch.ones_like(p) for p in params]
    g_avg = [torch.ones_like(p) for p in params]
    v_avg = [torch.ones_like(p) for p in params]
    v_mom = [torch.zeros_like(p) for p in params]

    def adaptive_loop():
        for _ in range(steps):
            g = grads()
            with torch.no_grad():
                for i, p in enumerate(params):
                    gi = g[i]
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

    return {
        "torch minimal sghmc": timed(sghmc_loop, repeats),
        "torch minimal adaptive_sghmc": timed(adaptive_loop, repeats),
    }


def _reference(x, y, steps, repeats, reference_path):
    """The functional-prior reference's own sampler loop, one chain, ``steps`` steps per call.

    ``RegressionNet.train`` with ``num_samples=None`` runs ``num_burn_in_steps`` sampler steps
    (its DataLoader minibatches, forward pass, ``backward``, gradient-norm clipping and the
    optimiser step) and stores no draws.
    """
    sys.path.insert(0, str(reference_path))
    from optbnn.bnn.likelihoods import LikGaussian
    from optbnn.bnn.nets.mlp import MLP
    from optbnn.bnn.priors import FixedGaussianPrior
    from optbnn.sgmcmc_bayes_net.regression_net import RegressionNet

    out = {}
    with tempfile.TemporaryDirectory() as ckpt_dir:
        for method in ("sghmc", "adaptive_sghmc"):
            net = MLP(D, 1, [WIDTH], "tanh")
            bnn = RegressionNet(
                net, LikGaussian(NOISE**2), FixedGaussianPrior(std=1.0), ckpt_dir,
                sampling_method=method,
            )  # fmt: skip

            def run(bnn=bnn):
                bnn.train(
                    x_train=x, y_train=y, num_samples=None, num_burn_in_steps=steps,
                    batch_size=B, lr=LR, mdecay=MDECAY,
                )  # fmt: skip

            out[f"reference {method}"] = timed(run, repeats)
    return out


def torch_worker(argv):
    """Child-process entry: time the PyTorch rows, print them as one JSON line."""
    data_path, reference_path, steps, repeats = argv[0], argv[1], int(argv[2]), int(argv[3])
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    with np.load(data_path) as f:
        x_np, y_np = f["x"], f["y"]
    out = _torch_minimal(torch.as_tensor(x_np), torch.as_tensor(y_np), steps, repeats)
    if reference_path:
        out.update(_reference(x_np, y_np, steps, repeats, reference_path))
    result = {k: [w / steps, c / steps] for k, (w, c) in out.items()}
    print(json.dumps({"torch": torch.__version__, "rows": result}))


if __name__ == "__main__" and sys.argv[1:2] == ["--torch-worker"]:
    torch_worker(sys.argv[2:])
    sys.exit(0)


# --------------------------------------------------------------------------------------------
# JAX side
# --------------------------------------------------------------------------------------------

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bayesnn import likelihoods, nn, priors  # noqa: E402
from bayesnn.model import BayesianNeuralNet  # noqa: E402
from samplers import sgmcmc  # noqa: E402


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


def timed_interleaved(fns, repeats):
    """(wall, CPU) seconds of each ``fns[name]()`` in each of ``repeats`` rounds, the calls of
    a round made one after another (after one warm-up call each), so that a drift of the
    machine's speed during the run (another process on a sibling core, the clock) affects
    every row alike instead of the rows timed later. Returns ``{name: (walls, cpus)}``."""
    for fn in fns.values():
        fn()
    times = {name: ([], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name][0].append(time.perf_counter() - w0)
            times[name][1].append(time.process_time() - c0)
    return times


def bench_jax(model, data, chains, steps, repeats):
    """Per-step (wall, CPU) seconds (medians over rounds) of the bare scan and the driver at
    ``chains`` chains, and each row's overhead over the bare scan: the median over rounds of
    its CPU time over the bare scan's in the same round (robust to a machine whose speed
    drifts between rounds)."""
    pos = init_positions(model, chains)
    keys = jax.random.split(jax.random.key(2), chains)
    bare = bare_scan(model, data, steps)
    runs = {"bare scan sghmc": lambda: jax.block_until_ready(bare(keys, pos))}
    for name, kernel, h in [
        ("driver sghmc", sgmcmc.sghmc(alpha=ALPHA), STEP),
        ("driver adaptive_sghmc", sgmcmc.adaptive_sghmc(mdecay=MDECAY), LR),
    ]:

        def run(kernel=kernel, h=h):
            res = sgmcmc.sample(
                jax.random.key(3), kernel, model.logdensity, data, pos,
                num_samples=10, thinning=max(1, steps // 10), batch_size=B, step_size=h,
                batches="replace", progress_bar=False, shard=False,
            )  # fmt: skip
            return jax.block_until_ready(res.positions)

        runs[name] = run
    times = timed_interleaved(runs, repeats)
    per_step = {
        name: (statistics.median(w) / steps, statistics.median(c) / steps)
        for name, (w, c) in times.items()
    }
    bare_cpu = np.asarray(times["bare scan sghmc"][1])
    overhead = {  # median over rounds of the CPU-time ratio within a round
        name: float(np.median(np.asarray(c) / bare_cpu) - 1) for name, (_, c) in times.items()
    }
    return per_step, overhead


def bench_torch(data, steps, repeats, torch_python, reference):
    """Run the PyTorch rows in a child process; ``{}`` (and a message) if it cannot."""
    if not torch_python:
        print("no --torch-python interpreter with torch: the PyTorch rows are skipped")
        return {}, None
    if not reference:
        print("no --reference checkout: the reference rows are skipped")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, x=np.asarray(data[0]), y=np.asarray(data[1]))
        cmd = [torch_python, os.path.abspath(__file__), "--torch-worker", path, reference or ""]
        proc = subprocess.run(
            cmd + [str(steps), str(repeats)], capture_output=True, text=True, check=False
        )
    if proc.returncode:
        print(f"the PyTorch worker failed, its rows are skipped:\n{proc.stderr[-2000:]}")
        return {}, None
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: tuple(v) for k, v in out["rows"].items()}, out["torch"]


def find_torch_python():
    """This interpreter if it has torch, else ``$BAYESNN_TORCH_PYTHON``, else ``None``."""
    try:
        import torch  # noqa: F401

        return sys.executable
    except ImportError:
        return os.environ.get("BAYESNN_TORCH_PYTHON")


def machine():
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(
            line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line
        )
    except Exception:  # pragma: no cover - lscpu missing
        name = platform.processor()
    pinned = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (
        f"{name}, {os.cpu_count()} cores, pinned to {pinned}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )


SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (about a minute)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    parser.add_argument("--chains", default="1,4,64", help="comma-separated chain counts")
    parser.add_argument(
        "--torch-python",
        default=find_torch_python(),
        help="Python interpreter with torch for the PyTorch rows "
        "(default: this one if it has torch, else $BAYESNN_TORCH_PYTHON)",
    )
    parser.add_argument(
        "--reference",
        default=os.environ.get("OPTBNN_PATH"),
        help="checkout of github tranbahien/you-need-a-good-prior (the folder holding "
        "optbnn/; default $OPTBNN_PATH)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    args = parser.parse_args()
    steps, torch_steps, repeats = (2000, 300, 3) if args.quick else (20000, 2000, 5)
    repeats = args.rounds or repeats
    if args.smoke:
        steps, torch_steps, repeats, args.chains = 20, 10, 1, "2"
    chain_counts = [int(c) for c in args.chains.split(",")]

    model, data = make_problem()
    rows, overheads = {}, {}
    for chains in chain_counts:
        per_step, overhead = bench_jax(model, data, chains, steps, repeats)
        for name, t in per_step.items():
            rows[(name, chains)] = tuple(s / chains for s in t)  # per chain-step
            overheads[(name, chains)] = overhead[name]
    torch_rows, torch_version = ({}, None)
    if not args.no_torch:
        torch_rows, torch_version = bench_torch(
            data, torch_steps, repeats, args.torch_python, args.reference
        )

    print(f"machine: {machine()}")
    print(
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch_version}; "
        f"steps per call {steps} (PyTorch {torch_steps}), median of {repeats} calls"
    )
    print()
    print("| sampler | chains | wall us / chain-step | CPU us / chain-step | vs bare scan (CPU) |")
    print("| --- | --- | --- | --- | --- |")
    for (name, chains), (wall, cpu) in rows.items():
        over = overheads[(name, chains)]
        overhead = "" if name.startswith("bare") else f"{100 * over:+.1f}%"
        print(f"| {name} | {chains} | {1e6 * wall:.1f} | {1e6 * cpu:.1f} | {overhead} |")
    for name, (wall, cpu) in torch_rows.items():
        print(f"| {name} | 1 | {1e6 * wall:.1f} | {1e6 * cpu:.1f} | |")
    print()
    for c in chain_counts:
        overhead = overheads[("driver sghmc", c)]
        verdict = "within" if overhead <= OVERHEAD_GOAL else "ABOVE"
        print(
            f"driver sghmc overhead over the bare scan, {c} chains: {100 * overhead:+.1f}% "
            f"({verdict} the {100 * OVERHEAD_GOAL:.0f}% goal; noisy below ~20,000 steps a call)"
        )
    ratios = [
        (kernel, c, torch_rows[f"reference {kernel}"][1] / rows[(f"driver {kernel}", c)][1])
        for kernel in ("sghmc", "adaptive_sghmc")
        if f"reference {kernel}" in torch_rows
        for c in chain_counts
    ]
    if ratios:
        print()
        print("| kernel | chains | reference / driver, per chain-step (CPU) |")
        print("| --- | --- | --- |")
        for kernel, chains, ratio in ratios:
            print(f"| {kernel} | {chains} | {ratio:.0f}x |")


if __name__ == "__main__":
    main()
