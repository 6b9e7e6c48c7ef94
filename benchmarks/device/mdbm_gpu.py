"""Forward/backward mDBM solve times on the default device, rows printed as they come."""

import time

import jax
import jax.numpy as jnp

from bayesnn import boltzmann as bm

spec = bm.fully_connected_spec(784, 2, 500, 10)
params = bm.init_params(jax.random.key(1), spec)
coupling = jax.jit(bm.monotone_coupling, static_argnums=(1, 2))(params, spec, 0.01)
pix = jax.random.randint(jax.random.key(0), (128, 784), 0, 2)
mask = jax.random.bernoulli(jax.random.key(2), 0.4, (128, 784))
ev = bm.make_evidence(spec, pix, mask)
print(jax.devices(), flush=True)
for method, alpha in [("anderson", 1.0), ("anderson", 0.5), ("fb", 1.0)]:
    cfg = bm.SolverConfig(method=method, alpha=alpha, tol=1e-4, max_iter=300)
    fwd = jax.jit(lambda c, e, cfg=cfg: bm.infer(c, spec, e, config=cfg))

    def loss(c, e, cfg=cfg):
        q, info = bm.infer(c, spec, e, config=cfg)
        return sum(jnp.mean(x**2) for x in q), info

    fb = jax.jit(jax.value_and_grad(loss, has_aux=True))
    for name, fn in [("fwd", fwd), ("fwd+bwd", fb)]:
        t = time.perf_counter()
        out = jax.block_until_ready(fn(coupling, ev))
        first = time.perf_counter() - t
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            out = jax.block_until_ready(fn(coupling, ev))
            ts.append(time.perf_counter() - t)
        info = out[1] if name == "fwd" else out[0][1]
        print(
            f"{method} alpha={alpha} {name}: first call {first:.2f} s, then median "
            f"{1e3 * sorted(ts)[2]:.2f} ms; steps {int(info.num_steps)}, "
            f"residual {float(jnp.max(info.residual)):.2e}",
            flush=True,
        )
