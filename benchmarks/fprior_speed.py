"""Speed of functional-prior tuning: bayesnn (JAX) against a minimal PyTorch implementation
of the reference settings of Tran et al. (2022), side by side in one process, one thread each.

Setting (reference UCI notebook, Boston split 0, D = 13): tanh 1x50 BNN, layer-wise Gaussian
(GPi-G) prior with per-layer weight/bias scales started at 1, hierarchical RBF-ARD GP target
(log l_d ~ N(log sqrt(2D), 1), log s2 ~ N(0.1, 1)), measurement sets of 100 points (70% train
inputs, 30% uniform in the train+test box, as the reference), 128 functions per side, critic
100 -> 200 -> 200 -> 1 (softplus), two-sided gradient penalty lambda = 10, RMSprop(0.05) on
the prior, 200 prior iterations.

Runs:

* ``torch-ref``: the reference algorithm of Tran et al. (github.com/tranbahien/
  you-need-a-good-prior) written out in PyTorch (its code is not imported): critic weights reset
  every prior step (Xavier-normal weights, N(0, 1) biases), one Adagrad(0.02) created once
  (its accumulators are *not* reset, as in the reference), 200 critic steps on one batch
  pair, then fresh batches for the prior step; GP draws by a loop of float64 Choleskys with
  jitter doubling.
* ``jax-ref``: the same algorithm in bayesnn (``warm_start=False``, Adagrad(0.02) reset with
  the weights, 200 critic steps per prior step): the per-iteration speed of identical work.
* ``jax-warm``: bayesnn defaults (critic and its Adam state warm-started, 500 critic steps
  first, ``--warm-steps`` per prior step afterwards).
* ``jax-sliced``: sliced-W1 estimator (no critic, 256 projections).

Every run stores its prior's hyperparameters every ``--every`` iterations with the wall time
and the process CPU time so far (JAX: compilation included). Each run uses one thread, so the
CPU time is robust to background load on a shared machine; the wall time is not. Every checkpoint is scored afterwards by the *same*
independent critic (:func:`bayesnn.functional_prior.evaluate_w1`, a fresh critic trained on
fresh batches at one fixed measurement set, common random numbers for all checkpoints).
"Time to the reference's W1" is the (wall / CPU) time of the first checkpoint whose
independent W1 is at or below the torch-ref final one. Usage::

    python benchmarks/fprior_speed.py [--quick] [--iters 200]
"""

from __future__ import annotations

import argparse
import math
import os
import time

from _pinning import pin_to_one_core  # noqa: E402

pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bayesnn import functional_prior as fp  # noqa: E402
from bayesnn.gp import RBF, GPPrior, LogNormal  # noqa: E402
from bayesnn.nn import stax  # noqa: E402
from bayesnn.priors import template_of  # noqa: E402

SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


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
def _torch_critic(n_data):
    """The reference critic: n_data -> 200 -> 200 -> 1 with softplus activations."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(n_data, 200),
        torch.nn.Softplus(),
        torch.nn.Linear(200, 200),
        torch.nn.Softplus(),
        torch.nn.Linear(200, 1),
    )


def _torch_critic_steps(critic, copt, fb, fg, steps, penalty=10.0):
    """``steps`` critic updates on one batch pair: -(E f(b) - E f(g)) + two-sided penalty."""
    import torch

    for _ in range(steps):
        copt.zero_grad()
        eps = torch.rand(fb.shape[0], 1)
        mix = (eps * fb + (1 - eps) * fg).requires_grad_(True)
        g = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
        pen = ((g.norm(dim=1) - 1) ** 2).mean()
        loss = -(critic(fb).mean() - critic(fg).mean()) + penalty * pen
        loss.backward()
        copt.step()


def torch_reference(x_train, box, iters, hidden, critic_steps, every, seed=0):
    """Reference mapper in plain PyTorch, written from the algorithm description.

    Returns per-iteration wall and CPU seconds and checkpoints
    ``(iteration, wall s so far, CPU s so far, scales)``.
    """
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    D = x_train.shape[1]
    n_data, n_fn = 100, 128
    lo, hi = box
    raw0 = math.log(math.expm1(1.0))  # softplus^-1(1): start at the fixed N(0, 1) prior
    sizes = [(D, hidden), (hidden, 1)]
    raw = [torch.full((2,), raw0, requires_grad=True) for _ in sizes]
    popt = torch.optim.RMSprop(raw, lr=0.05)

    def bnn(x, n):
        h = x.unsqueeze(0).expand(n, -1, -1)
        for li, (a, b) in enumerate(sizes):
            sw, sb = torch.nn.functional.softplus(raw[li])
            W = sw * torch.randn(n, a, b) / math.sqrt(a)  # NTK "scaled" parameterisation
            bias = sb * torch.randn(n, 1, b)
            h = torch.bmm(h, W) + bias
            if li < len(sizes) - 1:
                h = torch.tanh(h)
        return h[..., 0]

    def gp(x, n):  # hierarchical GP target: one hyperparameter draw + Cholesky per function
        xd = x.double().numpy()
        out = np.empty((n, x.shape[0]))
        for i in range(n):
            ls = np.exp(math.log(math.sqrt(2 * D)) + rng.normal(size=D))
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

    critic = _torch_critic(n_data)
    copt = torch.optim.Adagrad(critic.parameters(), lr=0.02)  # created once (reference)
    times, checkpoints = [], []
    scales = lambda: [torch.nn.functional.softplus(r).detach().numpy().copy() for r in raw]  # noqa: E731
    checkpoints.append((0, 0.0, 0.0, scales()))
    ctimes = []
    for it in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        n_tr = 70
        idx = rng.choice(len(x_train), n_tr, replace=False)
        xm = np.concatenate([x_train[idx], rng.uniform(lo, hi, size=(n_data - n_tr, D))])
        xm = torch.from_numpy(xm.astype(np.float32))
        for m in critic.modules():  # reset the weights only (the optimiser state is kept)
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_normal_(m.weight)
                torch.nn.init.normal_(m.bias)
        fg = gp(xm, n_fn)
        with torch.no_grad():
            fb = bnn(xm, n_fn)
        _torch_critic_steps(critic, copt, fb, fg, critic_steps)
        popt.zero_grad()
        fg2 = gp(xm, n_fn)
        w = critic(bnn(xm, n_fn)).mean() - critic(fg2).mean()
        w.backward()
        popt.step()
        times.append(time.perf_counter() - t0)
        ctimes.append(time.process_time() - c0)
        if (it + 1) % every == 0 or it == iters - 1:
            checkpoints.append((it + 1, float(np.sum(times)), float(np.sum(ctimes)), scales()))
    return np.asarray(times), np.asarray(ctimes), checkpoints


# ------------------------------------------------------------------ critic-loop micro benchmark
def micro(repeats=3, steps=200, n_fn=128, n_data=100):
    """CPU seconds of ``steps`` critic steps (penalty, Adagrad) in PyTorch and in bayesnn.

    The critic loop is 94% of a reference prior iteration (0.87 of 0.93 s). Runs alternate
    torch / JAX ``repeats`` times on the same shapes; process CPU time (one thread each) so
    that background load affects both alike.
    """
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    fb_np = rng.normal(size=(n_fn, n_data)).astype(np.float32)
    fg_np = (1.5 * rng.normal(size=(n_fn, n_data))).astype(np.float32)
    critic = _torch_critic(n_data)
    copt = torch.optim.Adagrad(critic.parameters(), lr=0.02)
    fb, fg = torch.from_numpy(fb_np), torch.from_numpy(fg_np)

    def torch_loop():
        _torch_critic_steps(critic, copt, fb, fg, steps)

    opt = optax.adagrad(0.02)
    params = fp.critic.init_critic(jax.random.key(0), n_data)
    state = fp.critic.CriticState(params, opt.init(params))
    fbj, fgj = jnp.asarray(fb_np), jnp.asarray(fg_np)

    def jax_loop(key):
        out = fp.critic.train_critic(state, fbj, fgj, key, optimizer=opt, num_steps=steps)
        jax.block_until_ready(out)

    c0 = time.process_time()
    jax_loop(jax.random.key(1))  # compile
    compile_s = time.process_time() - c0
    tt, tj = [], []
    for r in range(repeats):
        c0 = time.process_time()
        torch_loop()
        tt.append(time.process_time() - c0)
        c0 = time.process_time()
        jax_loop(jax.random.key(2 + r))
        tj.append(time.process_time() - c0)
    print(f"load: {os.popen('uptime').read().strip()}")
    print(f"{steps} critic steps ({n_fn} functions x {n_data} points), CPU s per run:")
    print(f"  torch: {', '.join(f'{t:.3f}' for t in tt)} (median {np.median(tt):.3f})")
    print(f"  jax:   {', '.join(f'{t:.3f}' for t in tj)} (median {np.median(tj):.3f});", end="")
    print(f" compile {compile_s:.1f} s CPU")
    print(f"  ratio torch / jax: {np.median(tt) / np.median(tj):.2f}")


# ------------------------------------------------------------------ bayesnn runs
def run_jax(arch, target, ms, iters, every, **kw):
    """Fit with bayesnn; returns ((wall, CPU) s/iter, (wall, CPU) total, checkpoints, family)."""
    gp = GPPrior(target, precision="float32")  # GP draws inside the jitted step
    snaps = []
    c0 = time.process_time()
    prior, hist = fp.fit_functional_prior(
        arch,
        gp,
        ms,
        jax.random.key(0),
        family="gaussian",
        steps=iters,
        num_functions=128,
        check_every=every,
        callback=lambda i, w, theta: snaps.append(
            (i + 1, jax.device_get(theta), time.process_time() - c0)
        ),
        **kw,
    )
    t = hist.wall_time
    checkpoints = [(0, 0.0, 0.0, hist.initial_theta)]
    checkpoints += [(i, float(t[i - 1]), c, th) for i, th, c in snaps]
    c = [cp[2] for cp in checkpoints]
    # steady state: from the first check (after compilation) to the end
    if iters > every:
        steady = (
            float((t[-1] - t[every - 1]) / (iters - every)),
            float((c[-1] - c[1]) / (iters - every)),
        )
    else:
        steady = (t[-1] / iters, c[-1] / iters)
    return steady, (float(t[-1]), c[-1]), checkpoints, hist.family


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few iterations (< ~1 min)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--every", type=int, default=10, help="checkpoint interval (iterations)")
    ap.add_argument("--warm-steps", type=int, default=20)
    ap.add_argument("--eval-steps", type=int, default=1000)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--micro", action="store_true", help="only the critic-loop CPU timing")
    ap.add_argument(
        "--runs", default="ref,warm,sliced,torch", help="subset of ref,warm,sliced,torch"
    )
    ap.add_argument("--warm-iters", type=int, default=None, help="iterations of jax-warm")
    ap.add_argument(
        "--target-w1",
        type=float,
        default=None,
        help="torch-ref final independent W1 from an earlier run (the scoring is deterministic)",
    )
    ap.add_argument(
        "--nll", action="store_true", help="test RMSE/NLL (Boston split 0) of each final prior"
    )
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    if args.micro:
        micro(steps=5 if args.smoke else 200)
        return
    iters, every = (6, 2) if args.quick else (args.iters, args.every)
    ref_steps = 50 if args.quick else 200
    eval_steps = 200 if args.quick else args.eval_steps
    first_steps = 100 if args.quick else 500
    if args.smoke:
        iters, every, ref_steps, eval_steps, first_steps, args.warm_steps = 2, 2, 3, 3, 2, 1
        if args.runs == ap.get_default("runs"):  # one JAX fit: each compiles for seconds
            args.runs = "warm,torch"

    x_train, x_test = load_boston()
    x_all = np.concatenate([x_train, x_test])
    D = x_train.shape[1]
    arch = stax.serial(stax.Dense(50, b_std=1.0), stax.Tanh(), stax.Dense(1, b_std=1.0))
    target = RBF(LogNormal(0.1, 1.0), LogNormal(jnp.full((D,), math.log(math.sqrt(2 * D))), 1.0))
    box = (x_all.min(0), x_all.max(0))  # the reference's box spans train and test inputs
    ms = fp.mixture(x_train, 100, 0.7, box=box)
    runs = {}  # name -> (s/iter, total s, checkpoints as (iteration, seconds, theta))

    fam = None
    specs = [
        (
            f"jax-ref (reset, Adagrad, {ref_steps} steps)",
            dict(
                estimator=fp.CriticW1(
                    steps=ref_steps, optimizer=optax.adagrad(0.02), warm_start=False
                )
            ),
        ),
        (
            f"jax-warm (Adam, {first_steps} then {args.warm_steps} steps)",
            dict(estimator=fp.CriticW1(steps=args.warm_steps, first_steps=first_steps)),
        ),
        ("jax-sliced (256 projections)", dict(estimator=fp.SlicedW1())),
    ]
    wanted = set(args.runs.split(","))
    if not wanted <= {"ref", "warm", "sliced", "torch"}:
        raise SystemExit(f"--runs: unknown names in {args.runs!r}")
    specs = [sp for sp, tag in zip(specs, ("ref", "warm", "sliced"), strict=True) if tag in wanted]
    fam = fp.families.make_family("gaussian", template_of(arch.init(jax.random.key(0), (D,))))
    for name, kw in specs:
        n_it = args.warm_iters if (name.startswith("jax-warm") and args.warm_iters) else iters
        steady, total, cps, fam = run_jax(arch, target, ms, n_it, every, **kw)
        runs[name] = (steady, total, cps)
        print(
            f"{name}: {steady[0]:.4f} / {steady[1]:.4f} s/iter (wall / CPU), "
            f"{total[0]:.1f} / {total[1]:.1f} s",
            flush=True,
        )

    if not args.skip_torch and "torch" in wanted:
        try:
            times, ctimes, cps = torch_reference(x_train, box, iters, 50, ref_steps, every)
        except ImportError:
            print("torch not installed: skipping the PyTorch reference")
        else:
            layers = list(fam.init()["W"])
            inv = lambda s: float(np.log(np.expm1(s)))  # noqa: E731
            cps = [
                (
                    i,
                    t,
                    c,
                    {
                        "W": {ly: jnp.float32(inv(sc[j][0])) for j, ly in enumerate(layers)},
                        "b": {ly: jnp.float32(inv(sc[j][1])) for j, ly in enumerate(layers)},
                    },
                )
                for i, t, c, sc in cps
            ]
            name = f"torch-ref (reset, Adagrad, {ref_steps} steps)"
            steady = (float(np.median(times)), float(np.median(ctimes)))
            runs[name] = (steady, (float(times.sum()), float(ctimes.sum())), cps)
            tot = runs[name][1]
            print(
                f"{name}: {steady[0]:.4f} / {steady[1]:.4f} s/iter (wall / CPU), "
                f"{tot[0]:.1f} / {tot[1]:.1f} s",
                flush=True,
            )

    # one independent evaluator for every checkpoint of every run
    x_eval = ms.sample(jax.random.key(123))
    gp_eval = GPPrior(target, precision="float64")

    def score(theta):
        est, se = fp.evaluate_w1(
            jax.random.key(7), arch, fam, theta, gp_eval, x_eval, num_steps=eval_steps
        )
        return float(est), float(se)

    # rows: (iteration, wall s, CPU s, W1, se)
    scored = {
        name: [(i, t, c, *score(th)) for i, t, c, th in cps] for name, (_, _, cps) in runs.items()
    }

    cpu = os.popen("lscpu | grep 'Model name'").read().strip()
    load = os.popen("uptime").read().strip()
    print(f"\nmachine: {cpu}\nload at the end: {load}")
    print(f"threads: 1 (XLA_FLAGS={os.environ['XLA_FLAGS']}; torch.set_num_threads(1))")
    print(f"prior iterations: {iters}; independent critic: {eval_steps} Adam steps")
    ref_name = next((n for n in runs if n.startswith("torch")), None)
    target_w1 = scored[ref_name][-1][3] if ref_name else args.target_w1
    print(
        "\n| run | s / prior iteration (wall / CPU) | total s (wall / CPU) | final indep. W1 "
        "| time to torch-ref final W1 (wall / CPU) |"
    )
    print("|---|---|---|---|---|")
    w0 = scored[next(iter(scored))][0]
    print(f"| untuned N(0, 1) prior | | | {w0[3]:.3f} +- {w0[4]:.3f} | |")
    for name, (steady, total, _) in runs.items():
        rows = scored[name]
        reach = ""
        if target_w1 is not None:
            hit = next((r for r in rows if r[3] <= target_w1), None)
            reach = f"{hit[1]:.1f} / {hit[2]:.1f} s (it {hit[0]})" if hit else "not reached"
        fin = rows[-1]
        print(
            f"| {name} | {steady[0]:.4f} / {steady[1]:.4f} | {total[0]:.1f} / {total[1]:.1f} "
            f"| {fin[3]:.3f} +- {fin[4]:.3f} | {reach} |"
        )
    if target_w1 is not None and not ref_name:
        print(f"(torch-ref final W1 {target_w1:.3f} given by --target-w1, from an earlier run)")
    print("\ncheckpoints (iteration: wall s / CPU s, independent W1):")
    for name, rows in scored.items():
        print(
            f"  {name}: " + "; ".join(f"{i}: {t:.1f}/{c:.1f}s {w:.2f}" for i, t, c, w, _ in rows)
        )
    if args.nll:
        finals = {"untuned N(0, 1) prior": runs[next(iter(runs))][2][0][3]}
        finals.update({name: cps[-1][3] for name, (_, _, cps) in runs.items()})
        nll_table(arch, fam, finals, quick=args.quick)


def nll_table(arch, fam, thetas, quick=False):
    """Test RMSE / NLL on Boston split 0 of the posterior under each final prior.

    The paper's sampler (``fp.sample_posterior``: adaptive SGHMC, 4 chains, noise variance
    0.1 on standardised targets), 2000 burn-in + 40 draws x thinning 100, same key for every
    prior (common random numbers), so differences come from the priors.
    """
    from bayesnn.datasets import load_uci

    s = load_uci("boston", 0, root="/work/shared/data/uci")  # z-scored on the training part
    x, y = jnp.asarray(s.x_train, jnp.float32), jnp.asarray(s.y_train, jnp.float32)
    xt, yt = jnp.asarray(s.x_test, jnp.float32), jnp.asarray(s.y_test, jnp.float32)
    sy = float(np.asarray(s.y_std).reshape(-1)[0])
    kw = dict(num_burnin=200, num_samples=10, thinning=20) if quick else {}
    print("\n| prior from | test RMSE | test NLL | R-hat f (max) | sampling s (wall) |")
    print("|---|---|---|---|---|")
    for name, theta in thetas.items():
        t0 = time.perf_counter()
        post = fp.sample_posterior(
            arch,
            fam.prior(theta),
            (x, y),
            jax.random.key(11),
            sampler=fp.SamplerConfig(
                num_burnin=kw.get("num_burnin", 2000),
                num_samples=kw.get("num_samples", 40),
                thinning=kw.get("thinning", 100),
            ),
            x_eval=xt,
        )
        met = fp.regression_metrics(post, xt, yt, y_std=sy)
        nll = met["nll"]
        rhat = float(np.nanmax(np.asarray(post.rhat)))
        print(
            f"| {name} | {met['rmse']:.3f} | {nll:.3f} | {rhat:.2f} | "
            f"{time.perf_counter() - t0:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
