"""Forward/backward mean-field solve time of a fully connected monotone DBM.

Model (as the timing measurement of Feng, Winston and Kolter, TMLR 2023, Section 10.2): 784 binary visible pixels (2 states),
H hidden binary units (default 500), a 10-way label; row blocks visible+hidden and
hidden+label; m = 0.01; batch 128; 40% of pixels observed; tol 1e-4 on the true mean-field
residual. Compares, side by side in one process on one pinned thread:

- ours: Anderson on undamped mean field (alpha = 1), Anderson on the damped FB map with the
  batched Newton prox (alpha = 0.5, 0.125), plain FB (alpha = 1), Peaceman-Rachford
  (alpha = 0.5, Woodbury resolvent);
- "reference-style" (their published solver's algorithm, re-implemented here): Anderson on
  the damped FB map with alpha = 0.125, their relative-change stopping rule
  ``||f(x) - x|| / (1e-5 + ||f(x)||) < tol``, and its prox (Newton on the multiplier to
  |sum z - 1| < 1e-4 with a Halley inner loop to 1e-4 per Newton step), with host-side
  convergence checks in Python loops as their code does.

Backward: gradient of ``mean(q^2)`` through the fixed point by implicit differentiation (GMRES
on the undamped map); the time is (forward + backward) - forward.

Usage: python benchmarks/mdbm_speed.py [--quick] [--hidden 500] [--reps 3] [--no-reference]
(--quick: hidden 100, batch 32, two solvers, no reference-style run.) The script sets only
CPU thread flags (one pinned thread) and never forces a platform: on a GPU machine it runs on
the GPU, where the wall-time columns are the ones to read.
"""

import os

from _pinning import pin_to_one_core  # noqa: E402

pin_to_one_core()  # before jax: XLA sizes its thread pool from the affinity mask

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bayesnn import boltzmann as bm  # noqa: E402
from bayesnn.boltzmann.model import clamp as _clamp  # noqa: E402

SMOKE_HELP = "tiny sizes: checks that the script runs (seconds); its numbers are not results"


def _timeit(fn, reps):
    out = fn()
    jax.block_until_ready(out)
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return out, float(np.median(cpu)), float(np.median(wall))


# ---------------------------------------------------------------- reference-style solver
def _ref_prox(y, alpha, tol=1e-4, max_iter=5000):
    """Reference-style prox: Newton on nu with a Halley inner loop, host-checked stops."""
    beta = (1 - alpha) / alpha
    nu = 1.0 - jnp.max(y, axis=-1, keepdims=True)

    def z_of(nu):
        c = y + nu - alpha
        x = jnp.minimum(c / alpha - 1.0 + 1.0, c - 1.0 + 1.0)  # start as the reference
        for _ in range(max_iter):
            ex = jnp.exp(x)
            h = -alpha * x + c - (1 - alpha) * ex
            if float(jnp.max(jnp.abs(h))) <= tol:
                break
            dh = -alpha - (1 - alpha) * ex
            d2h = -(1 - alpha) * ex
            x = x - 2 * h * dh / (2 * dh * dh - h * d2h)
        return jnp.exp(x)

    del beta
    for _ in range(max_iter):
        z = z_of(nu)
        phi = jnp.sum(z, -1, keepdims=True) - 1.0
        if float(jnp.max(jnp.abs(phi))) < tol:
            break
        g = z / (alpha + (1 - alpha) * z)
        nu = nu - phi / jnp.sum(g, -1, keepdims=True)
    return z


def reference_style_forward(coupling, spec, ev, alpha=0.125, tol=1e-4, max_iter=200, m=5):
    fieldj = jax.jit(lambda q: bm.model.field(coupling, spec, q))

    def f(xf, like):
        x = _unflat(xf, like)
        y = fieldj(x)
        mix = tuple((1 - alpha) * a + alpha * b for a, b in zip(x, y, strict=True))
        z = _clamp(ev, tuple(_ref_prox(v, alpha) for v in mix))
        return _flat(z)

    q0 = _clamp(ev, bm.model.uniform_state(spec, ev.mask[0].shape[0]))
    x0 = _flat(q0)
    X, F = [x0], [f(x0, q0)]
    X.append(F[0])
    F.append(f(X[1], q0))
    steps = 0
    for k in range(2, max_iter):
        n = min(k, m)
        G = jnp.stack(F[-n:], 1) - jnp.stack(X[-n:], 1)
        H = jnp.einsum("bin,bjn->bij", G, G) + 1e-4 * jnp.eye(n)[None]
        Hb = jnp.zeros((G.shape[0], n + 1, n + 1)).at[:, 0, 1:].set(1).at[:, 1:, 0].set(1)
        Hb = Hb.at[:, 1:, 1:].set(H)
        rhs = jnp.zeros((G.shape[0], n + 1, 1)).at[:, 0].set(1.0)
        a = jnp.linalg.solve(Hb, rhs)[:, 1:, 0]
        x = jnp.einsum("bi,bin->bn", a, jnp.stack(F[-n:], 1))
        fx = f(x, q0)
        X.append(x)
        F.append(fx)
        X, F = X[-m:], F[-m:]
        steps = k - 1
        rel = float(jnp.linalg.norm(fx - x) / (1e-5 + jnp.linalg.norm(fx)))
        if rel < tol:  # NaN passes this test in the reference; kept as is
            break
    return _unflat(F[-1], q0), steps


def _flat(q):
    return jnp.concatenate([x.reshape(x.shape[0], -1) for x in q], axis=1)


def _unflat(xf, like):
    out, i = [], 0
    for x in like:
        out.append(xf[:, i : i + x[0].size].reshape(x.shape))
        i += x[0].size
    return tuple(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    args.quick = args.quick or args.smoke
    hidden = 8 if args.smoke else 100 if args.quick else args.hidden
    batch = 4 if args.smoke else 32 if args.quick else args.batch
    reps = 1 if args.quick else args.reps
    m = 0.01
    spec = bm.fully_connected_spec(784, 2, hidden, 10)
    params = bm.init_params(jax.random.key(1), spec)
    coupling = jax.jit(bm.monotone_coupling, static_argnums=(1, 2))(params, spec, m)
    pix = jax.random.randint(jax.random.key(0), (batch, 784), 0, 2)
    mask = jax.random.bernoulli(jax.random.key(2), 0.4, (batch, 784))
    ev = bm.make_evidence(spec, pix, mask)
    print(
        f"# fully connected mDBM: 784 x 2 visible, {hidden} x 2 hidden, label 10, "
        f"N = {bm.parameterization.state_size(spec)}, batch {batch}, m = {m}, 40% observed, tol 1e-4"
    )
    print(f"# XLA_FLAGS={os.environ.get('XLA_FLAGS')}")
    print(
        f"# backend {jax.default_backend()}: {jax.devices()[0].device_kind}"
        + ("" if jax.default_backend() == "cpu" else " (read the wall columns; CPU = host time)")
    )
    rows = []
    configs = [  # (method, alpha, Anderson mixing): mixing 0.5 is the library default
        ("anderson", 1.0, 1.0),
        ("anderson", 1.0, 0.5),
        ("anderson", 0.5, 1.0),
        ("anderson", 0.125, 1.0),
        ("fb", 1.0, 1.0),
        ("pr", 0.5, 1.0),
    ]
    if args.quick:
        configs = configs[:1] if args.smoke else configs[:3]
    for method, alpha, mixing in configs:
        cfg = bm.SolverConfig(
            method=method, alpha=alpha, mixing=mixing, tol=1e-4, max_iter=300, fallback=None
        )
        fwd = jax.jit(lambda c, e, cfg=cfg: bm.infer(c, spec, e, config=cfg))

        def loss(c, e, cfg=cfg):
            q, info = bm.infer(c, spec, e, config=cfg)
            return sum(jnp.mean(x**2) for x in q), info

        fb = jax.jit(jax.value_and_grad(loss, has_aux=True))
        (q, info), cpu_f, wall_f = _timeit(lambda fwd=fwd: fwd(coupling, ev), reps)
        _, cpu_fb, wall_fb = _timeit(lambda fb=fb: fb(coupling, ev), reps)
        res = float(jnp.max(info.residual))
        rows.append(
            (
                f"ours {method} alpha={alpha}"
                + (f" mixing={mixing}" if method == "anderson" else ""),
                int(info.num_steps),
                cpu_f * 1e3,
                wall_f * 1e3,
                (cpu_fb - cpu_f) * 1e3,
                res,
                bool(jnp.all(info.converged)),
            )
        )
    run_ref = not (args.no_reference or args.quick)
    if run_ref:
        c0, w0 = time.process_time(), time.perf_counter()
        q_ref, steps = reference_style_forward(coupling, spec, ev)
        cpu_r, wall_r = time.process_time() - c0, time.perf_counter() - w0
        res = float(
            jnp.max(
                bm.solver.mean_field_residual(
                    lambda q: bm.model.field(coupling, spec, q), lambda q: _clamp(ev, q), q_ref
                )
            )
        )
        rows.append(
            (
                "reference-style anderson alpha=0.125",
                steps,
                cpu_r * 1e3,
                wall_r * 1e3,
                float("nan"),
                res,
                res < 1e-4,
            )
        )
    print("| solver | steps | fwd CPU ms | fwd wall ms | bwd CPU ms | true MF residual | conv |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.2e} | {r[6]} |")
    if run_ref:
        best = min(r[2] for r in rows[:-1])
        print(f"\nreference-style fwd CPU / best ours fwd CPU = {rows[-1][2] / best:.1f}x")
    _profile(coupling, spec, ev, batch, 3 * reps)


def _profile(coupling, spec, ev, batch, reps):
    """Where a default solve step goes: exact field vs the solvers' field (state 0
    eliminated), and the cost of one Anderson step (solves capped at 2 and 12 steps)."""
    q = bm.model.uniform_state(spec, batch)
    exact = jax.jit(lambda c, q: bm.model.field(c, spec, q))
    solver_field = jax.jit(coupling.solver_field(spec))  # built once, as in a solve
    _, cpu_e, _ = _timeit(lambda: exact(coupling, q), reps)
    _, cpu_s, _ = _timeit(lambda: solver_field(q), reps)
    steps = []
    for cap in (2, 12):
        cfg = bm.SolverConfig(tol=1e-12, max_iter=cap, fallback=None)  # never converges
        f = jax.jit(lambda c, e, cfg=cfg: bm.infer(c, spec, e, config=cfg))
        steps.append(_timeit(lambda f=f: f(coupling, ev), reps)[1])
    step = (steps[1] - steps[0]) / 10
    print(
        f"\nprofile (CPU ms, same run): exact field W q + b {cpu_e * 1e3:.1f}, solver field "
        f"{cpu_s * 1e3:.1f} ({cpu_e / cpu_s:.2f}x); one Anderson step {step * 1e3:.1f}, of "
        f"which the field {100 * cpu_s / step:.0f}%"
    )


if __name__ == "__main__":
    main()
