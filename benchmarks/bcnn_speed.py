"""SGHMC per chain-step on the quick Fashion-MNIST CNN: bayesnn (JAX) against plain PyTorch.

The network of the reference note's section 6: ``Conv(16, 3x3, SAME) + ReLU + AvgPool(2) ->
Conv(32, 3x3, SAME) + ReLU + AvgPool(2) -> Flatten -> Dense(10)``, batch 128, about 0.79
GFLOP per SGHMC step (forward + backward counted as 3x the forward convolutions and matrix
products). Three measurements, each in its own process pinned to core 0 with one thread:

* ``jax``: ``BayesianNeuralNet.sample`` with ``sgmcmc.sghmc``, ``C`` chains vmapped, all
  steps inside one compiled ``lax.scan`` (compiled once before timing);
* ``torch``: a plain PyTorch SGHMC loop of the same network and update, one chain (the
  per-chain-step time of ``C`` chains run one after the other), ``torch.set_num_threads(1)``,
  run with the interpreter of ``--torch-python`` (default: ``$BAYESNN_TORCH_PYTHON``, else
  ``torchenv/bin/python`` beside the repository; skipped with a message when it is missing);
* ``peak``: a 2048 x 2048 float32 matrix product in JAX on the same core, the denominator
  of the achieved FLOP/s.

Reported: wall and CPU milliseconds per chain-step, the ratio torch / jax, and the achieved
GFLOP/s as a fraction of the measured peak (ratios and rates from CPU time, which other
processes sharing the core inflate much less than wall time). ``--profile`` times the pieces
of one step instead (forward, gradient, each convolution, pooling, minibatch gather, noise).
Data are random images (the speed does not depend on them).

    PYTHONPATH=. python benchmarks/bcnn_speed.py --smoke                 # seconds
    PYTHONPATH=. python benchmarks/bcnn_speed.py --chains 1,8 --steps 30 # the comparison
    PYTHONPATH=. python benchmarks/bcnn_speed.py --profile --chains 8    # where the time goes
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

FLOP_PER_IMAGE = 3 * 2 * (28 * 28 * 9 * 16 + 14 * 14 * 144 * 32 + 1568 * 10)
N_DATA = 2048


def _pin():
    """One core: the affinity mask also sizes XLA's thread pools (set before importing jax)."""
    from _pinning import pin_to_one_core

    pin_to_one_core()


def _problem(width):
    """The quick CNN as a ``BayesianNeuralNet`` and ``N_DATA`` random images and labels."""
    import numpy as np

    from bayesnn import BayesianNeuralNet, likelihoods, nn, priors

    he = float(np.sqrt(2.0))
    arch = nn.serial(
        nn.Conv(width, (3, 3), padding="SAME", W_std=he, b_std=1.0),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Conv(2 * width, (3, 3), padding="SAME", W_std=he, b_std=1.0),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Flatten(),
        nn.Dense(10, b_std=1.0),
    )
    model = BayesianNeuralNet.create(
        arch, (28, 28, 1), priors.IsotropicGaussian.create, likelihoods.Categorical()
    )
    rng = np.random.default_rng(0)
    x = rng.random((N_DATA, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, N_DATA).astype(np.int32)
    return model, x, y


def worker_jax(chains, steps, batch, width):
    _pin()
    import jax

    from samplers import sgmcmc

    model, x, y = _problem(width)
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(0), chains))

    kernel = sgmcmc.sghmc(alpha=20.0)  # one kernel object: the compiled run is cached on it

    def run(n):
        r = model.sample(
            jax.random.key(1), kernel, x, y, init, num_samples=1,
            thinning=n, batch_size=batch, step_size=1e-3, progress_bar=False,
        )  # fmt: skip
        jax.block_until_ready(r.state)

    run(2)  # compile (the step count is a traced loop bound: no recompilation below)
    wall, cpu = time.perf_counter(), time.process_time()
    run(steps)
    return time.perf_counter() - wall, time.process_time() - cpu


def worker_profile(chains, steps, batch, width):
    """Pieces of one SGHMC step timed alone (same shapes, ``chains`` chains vmapped, each
    inside ``lax.scan`` plus one pass summing its output), per chain-step: ``[(name, wall_ms,
    cpu_ms), ...]``; the minibatch gather, the noise draws are integer/random-bit work."""
    _pin()
    import jax
    import jax.numpy as jnp

    from bayesnn import nn
    from samplers.sgmcmc import base, minibatch

    model, x, y = _problem(width)
    x, y = jnp.asarray(x), jnp.asarray(y)
    pos = jax.vmap(model.init)(jax.random.split(jax.random.key(0), chains))
    keys = jax.random.split(jax.random.key(1), chains)
    idx = jax.vmap(lambda k: jax.random.permutation(k, N_DATA)[:batch])(keys)
    xb, yb = x[idx], y[idx]  # (chains, batch, ...): every chain has its own minibatch
    vg = jax.value_and_grad(model.logdensity)

    def grads(p, xb, yb):
        return jax.vmap(lambda q, a, b: vg(q, (a, b), N_DATA))(p, xb, yb)

    one = jax.tree.map(lambda a: a[:1], pos)
    h1 = jax.random.normal(jax.random.key(2), (chains, batch, 28, 28, width))
    h2 = jax.random.normal(jax.random.key(3), (chains, batch, 14, 14, width))
    w1 = pos["net"]["conv_0"]["W"]
    w2 = pos["net"]["conv_3"]["W"]
    pool = nn.AvgPool((2, 2), (2, 2))
    state = jax.vmap(lambda k: minibatch.init(k, N_DATA, "epoch"))(keys)
    pieces = [
        ("forward", jax.vmap(model.predict), (pos, xb), chains),
        ("value_and_grad, 1 chain", grads, (one, xb[:1], yb[:1]), 1),
        ("value_and_grad", grads, (pos, xb, yb), chains),
        ("conv 1 forward: nn.conv2d", jax.vmap(nn.conv2d, (0, 0, None, None)),
         (xb, w1, (1, 1), "SAME"), chains),
        ("conv 2 forward: nn.conv2d", jax.vmap(nn.conv2d, (0, 0, None, None)),
         (h2, w2, (1, 1), "SAME"), chains),
        ("AvgPool 2x2 of conv 1's output", jax.vmap(lambda h: pool.apply({}, h)), (h1,), chains),
        ("minibatch gather (epoch scheme)",
         jax.vmap(lambda x, k, st: minibatch.next_batch(k, st, 3, (x, y), batch, "epoch"),
                  (None, 0, 0)),
         (x, keys, state), chains),
        ("noise draws (one normal per parameter)",
         jax.vmap(lambda p, k: base.tree_normal(k, p)), (pos, keys), chains),
    ]  # fmt: skip
    out = []
    for name, fn, args, per in pieces:
        static = tuple(i for i, a in enumerate(args) if type(a) in (tuple, str))
        dynamic = [i for i in range(len(args)) if i not in static]

        def looped(*dyn, fn=fn, args=args, dynamic=dynamic):
            """``steps`` evaluations inside ``lax.scan`` (the sampler's context: buffers are
            reused, no output is allocated per call); a scalar carry perturbs the first input
            and accumulates a sum of the outputs, so nothing is hoisted or dropped."""

            def body(c, _):
                full = list(args)
                for i, d in zip(dynamic, dyn, strict=True):
                    full[i] = d
                first = dynamic[0]
                full[first] = jax.tree.map(lambda a: a + c.astype(a.dtype), full[first])
                res = fn(*full)
                total = sum(jnp.sum(r).astype(jnp.float32) for r in jax.tree.leaves(res))
                return c + 1e-30 * total, None

            return jax.lax.scan(body, jnp.float32(0.0), None, length=steps)[0]

        f = jax.jit(looped)
        dyn = [args[i] for i in dynamic]
        jax.block_until_ready(f(*dyn))
        wall, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(f(*dyn))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out.append((name, 1e3 * wall / (steps * per), 1e3 * cpu / (steps * per)))
    wall, cpu = worker_jax(chains, steps, batch, width)
    out.append(("whole SGHMC step (model.sample)", 1e3 * wall / (chains * steps),
                1e3 * cpu / (chains * steps)))  # fmt: skip
    return out


def worker_peak():
    _pin()
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (2048, 2048), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best_wall = best_cpu = float("inf")
    for _ in range(5):
        t, c = time.perf_counter(), time.process_time()
        f(a).block_until_ready()
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return 2 * 2048**3 / best_wall, 2 * 2048**3 / best_cpu


TORCH_WORKER = r"""
import json, math, os, sys, time
os.sched_setaffinity(0, {int(os.environ.get("BAYESNN_PIN_CORE", "0"))})
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
chains, steps, batch, width, n = (int(a) for a in sys.argv[1:6])
x = torch.rand(n, 1, 28, 28); y = torch.randint(0, 10, (n,))
he = math.sqrt(2.0)
def ntk(shape, fan):
    return torch.randn(*shape), he / math.sqrt(fan)
def net():
    return [torch.randn(width, 1, 3, 3), torch.randn(width), torch.randn(2 * width, width, 3, 3),
            torch.randn(2 * width), torch.randn(10, 7 * 7 * 2 * width), torch.randn(10)]
def logdensity(p, xb, yb):
    h = torch.relu(torch.nn.functional.conv2d(xb, p[0], padding=1) * (he / 3.0) + p[1][:, None, None])
    h = torch.nn.functional.avg_pool2d(h, 2)
    h = torch.relu(torch.nn.functional.conv2d(h, p[2], padding=1) * (he / math.sqrt(9 * width))
                   + p[3][:, None, None])
    h = torch.nn.functional.avg_pool2d(h, 2).flatten(1)
    f = h @ p[4].T / math.sqrt(h.shape[1]) + p[5]
    ll = -torch.nn.functional.cross_entropy(f, yb)
    return n * ll - 0.5 * sum((q * q).sum() for q in p)
def run(steps):
    p = [q.requires_grad_() for q in net()]
    m = [torch.zeros_like(q) for q in p]
    h, alpha = 1e-3, 20.0
    scale = math.sqrt(2 * alpha * h)
    for t in range(steps):
        idx = torch.randint(0, n, (batch,))
        g = torch.autograd.grad(logdensity(p, x[idx], y[idx]), p)
        with torch.no_grad():
            for q, mq, gq in zip(p, m, g):
                mq.mul_(1 - alpha * h).add_(gq, alpha=h).add_(torch.randn_like(q), alpha=scale)
                q.add_(mq, alpha=h)
run(3)
w, c = time.perf_counter(), time.process_time()
for _ in range(chains):
    run(steps)
print(json.dumps([time.perf_counter() - w, time.process_time() - c]))
"""


def _child(args):
    cmd = [sys.executable, __file__, "--worker", *args]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      env.get("PYTHONPATH")])
    )  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--chains", default="1,8", help="chain counts (comma separated)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per chain")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--torch-python",
        default=os.environ.get(
            "BAYESNN_TORCH_PYTHON",
            str(pathlib.Path(__file__).resolve().parents[2] / "torchenv" / "bin" / "python"),
        ),
    )
    parser.add_argument(
        "--profile", action="store_true", help="time the pieces of one step (largest --chains)"
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from _pinning import share_chosen_core

    share_chosen_core()  # jax and torch workers on one core
    if args.worker:
        kind, *rest = args.worker
        if kind in ("jax", "profile"):
            worker = worker_jax if kind == "jax" else worker_profile
            print(json.dumps(worker(*(int(a) for a in rest))))
        else:
            print(json.dumps(worker_peak()))
        return
    width, steps, batch = 16, args.steps, args.batch_size
    chain_counts = [int(c) for c in args.chains.split(",")]
    if args.smoke:
        width, steps, batch, chain_counts = 2, 3, 16, [2]
    if args.profile:
        c = max(chain_counts)
        rows = _child(["profile", str(c), str(steps), str(batch), str(width)])
        print(f"pieces of one SGHMC step, {c} chains, batch {batch}, per chain-step (ms)")
        print(f"{'piece':<42} {'wall':>8} {'cpu':>8}")
        for name, wall, cpu in rows:
            print(f"{name:<42} {wall:>8.2f} {cpu:>8.2f}")
        return
    flop_step = FLOP_PER_IMAGE * batch * (width / 16) ** 2  # conv2 dominates: ~quadratic
    peak_wall, peak = _child(["peak"])
    print(
        f"matmul peak (one core, float32 2048^2, best of 5): {peak / 1e9:.1f} GFLOP/s of CPU "
        f"time ({peak_wall / 1e9:.1f} by wall clock)"
    )
    print("ratios and GFLOP/s from CPU time (robust to other processes on the core)")
    have_torch = os.path.exists(args.torch_python)
    if not have_torch:
        print(f"torch: {args.torch_python} not found, PyTorch comparison skipped")
    print(f"{'chains':>6} {'jax ms/chain-step':>18} {'cpu':>7} {'torch ms':>9} {'cpu':>7} "
          f"{'torch/jax':>9} {'GFLOP/s':>8} {'% peak':>7}")  # fmt: skip
    for c in chain_counts:
        wall, cpu = _child(["jax", str(c), str(steps), str(batch), str(width)])
        jax_ms, jax_cpu = 1e3 * wall / (c * steps), 1e3 * cpu / (c * steps)
        gflops = flop_step / (jax_cpu / 1e3) / 1e9
        t_ms = t_cpu = float("nan")
        if have_torch:
            out = subprocess.run(
                [args.torch_python, "-c", TORCH_WORKER, str(c), str(steps), str(batch),
                 str(width), str(N_DATA)],
                capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode:
                print(f"torch failed: {out.stderr[-500:]}")
            else:
                tw, tc = json.loads(out.stdout.strip().splitlines()[-1])
                t_ms, t_cpu = 1e3 * tw / (c * steps), 1e3 * tc / (c * steps)
        print(
            f"{c:>6} {jax_ms:>18.2f} {jax_cpu:>7.2f} {t_ms:>9.2f} {t_cpu:>7.2f} "
            f"{t_cpu / jax_cpu:>9.2f} {gflops:>8.2f} {100 * gflops * 1e9 / peak:>6.1f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
