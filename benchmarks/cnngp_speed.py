"""CNN-GP NNGP+NTK speed, peak memory and float32 error: bayesnn vs neural-tangents.

Architectures (both libraries build them from the same stax string):

* ``flatten``: [Conv(3x3, SAME, W_std=1.5, b_std=0.1), ReLU] x 3, Flatten, Dense(1); per-position
  (diagonal spatial) covariances suffice, ``O(N^2 H W)`` per layer.
* ``gap``: the same convolutions, GlobalAvgPool, Dense(1); covariances of all position pairs,
  ``O(N^2 (H W)^2)``.

Inputs: the first N Fashion-MNIST training images (28 x 28, scaled to [0, 1], centred per
image), full ``K(X, X)`` NNGP and NTK at once. Every measurement runs in its own subprocess
pinned to one core (``_pinning.chosen_core``, before jax is imported), so the peak resident
memory (``getrusage`` maxrss) is that run's; wall and CPU time of the first call (compile +
run) and of a second call (run only). neural-tangents 0.6.5 runs in its own virtual
environment (jax 0.4.26; ``--nt-python``), ``nt.batch`` over blocks of ``--nt-batch`` rows;
ours uses ``kernel_fn``'s default blocking. float32 error: ``max |K32 - K64| / max |K64|``,
each library against its own float64 result.

    python benchmarks/cnngp_speed.py            # N = 1000 (flatten), 200 (gap): long on CPU
    python benchmarks/cnngp_speed.py --quick    # N = 200 (flatten), 20 (gap)
    python benchmarks/cnngp_speed.py --smoke    # seconds: N = 8, 12 x 12 crops, Flatten only
    python benchmarks/cnngp_speed.py --conv-grad  # finite Conv: weight gradient inside scan

``--conv-grad`` times the weight gradient of one convolution (batch 128, 14 x 14, 16 -> 32
channels, 3 x 3 SAME) jitted alone and inside ``lax.scan`` (10 steps), for
``lax.conv_general_dilated`` and for ``bayesnn.nn.conv2d`` (im2col + matmul, what ``Conv``
uses).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

DATA = pathlib.Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
ROOT = pathlib.Path(__file__).resolve().parents[1]
# neural-tangents' own environment (jax 0.4.26): $BAYESNN_NT_PYTHON, else ntenv beside the repo
NT_PYTHON = os.environ.get("BAYESNN_NT_PYTHON", str(ROOT.parent / "ntenv" / "bin" / "python"))

_CONV = "Conv(8, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Relu()"
ARCHS = {
    "flatten": f"serial({_CONV}, {_CONV}, {_CONV}, Flatten(), Dense(1, W_std=1.5, b_std=0.1))",
    "gap": f"serial({_CONV}, {_CONV}, {_CONV}, GlobalAvgPool(), Dense(1, W_std=1.5, b_std=0.1))",
}


def load_images(n: int, crop: int) -> np.ndarray:
    """First n training images, (n, crop, crop, 1), float64, [0, 1] then centred per image."""
    with gzip.open(DATA, "rb") as f:
        raw = f.read()
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:n].astype(np.float64) / 255
    lo = (28 - crop) // 2
    x = x[:, lo : lo + crop, lo : lo + crop, None]
    return x - x.mean(axis=(1, 2, 3), keepdims=True)


def worker(args) -> None:
    """One measurement in this (pinned) process; prints one JSON line."""
    from _pinning import pin_to_one_core

    pin_to_one_core()
    import resource
    import time

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    x = load_images(args.n, args.crop).astype(args.dtype)
    code = ARCHS[args.arch[0]]
    if args.worker == "nt":
        import neural_tangents as nt
        from neural_tangents import stax as nt_stax

        kf = eval(code, vars(nt_stax))[2]
        bs = min(args.nt_batch, args.n)
        if args.n % bs:
            raise SystemExit(f"--nt-batch {bs} must divide N = {args.n}")
        fn = nt.batch(kf, batch_size=bs)

        def run():
            return fn(x, None, ("nngp", "ntk"))

    else:
        sys.path.insert(0, str(ROOT))
        from bayesnn.nn import stax
        from bayesnn.nn.kernels import kernel_fn

        arch = eval(code, {n: getattr(stax, n) for n in stax.__all__})

        def run():
            return kernel_fn(arch, x)

    times = []
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(run())
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    nngp, ntk = (np.asarray(o) for o in out)
    np.savez(args.out, nngp=nngp, ntk=ntk)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    print(
        json.dumps(
            {
                "first_wall": times[0][0],
                "first_cpu": times[0][1],
                "wall": times[1][0],
                "cpu": times[1][1],
                "maxrss_mib": rss,
                "jax": jax.__version__,
            }
        )
    )


def conv_grad_in_scan() -> None:
    """Weight gradient of a convolution, alone and inside lax.scan (pinned, this process)."""
    from _pinning import pin_to_one_core

    os.environ.pop("XLA_FLAGS", None)
    pin_to_one_core()
    import time

    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(ROOT))
    from bayesnn.nn import conv2d

    x = jax.random.normal(jax.random.key(0), (128, 14, 14, 16))
    W = jax.random.normal(jax.random.key(1), (3, 3, 16, 32))
    dn = ("NHWC", "HWIO", "NHWC")
    fns = {
        "lax.conv_general_dilated": lambda x, W: jax.lax.conv_general_dilated(
            x, W, (1, 1), "SAME", dimension_numbers=dn
        ),
        "bayesnn.nn.conv2d (im2col)": lambda x, W: conv2d(x, W, (1, 1), "SAME"),
    }
    print("| convolution | weight grad alone: wall / cpu (ms) | inside scan, per step (ms) |")
    print("|---|---|---|")
    for name, f in fns.items():
        g = jax.grad(lambda W, x, f=f: jnp.sum(f(x, W) ** 2))
        alone = jax.jit(g)

        def body(W, _, g=g):
            return W - 1e-6 * g(W, x), None

        loop = jax.jit(lambda W, body=body: jax.lax.scan(body, W, None, length=10)[0])
        jax.block_until_ready(alone(W, x))
        jax.block_until_ready(loop(W))
        t, c = time.perf_counter(), time.process_time()
        for _ in range(5):
            jax.block_until_ready(alone(W, x))
        ta, ca = (time.perf_counter() - t) / 5, (time.process_time() - c) / 5
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(loop(W))
        tl, cl = (time.perf_counter() - t) / 10, (time.process_time() - c) / 10
        print(f"| {name} | {1e3 * ta:.1f} / {1e3 * ca:.1f} | {1e3 * tl:.1f} / {1e3 * cl:.1f} |")


def measure(lib, arch, n, crop, dtype, tmp, nt_python, nt_batch):
    out = os.path.join(tmp, f"{lib}_{arch}_{n}_{dtype}.npz")
    py = nt_python if lib == "nt" else sys.executable
    cmd = [py, __file__, "--worker", lib, "--arch", arch, "--n", str(n), "--crop", str(crop)]
    cmd += ["--dtype", dtype, "--out", out, "--nt-batch", str(nt_batch)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{lib} {arch} {dtype} failed:\n{res.stderr[-3000:]}")
    line = [s for s in res.stdout.splitlines() if s.startswith("{")][-1]
    return json.loads(line), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--arch", choices=sorted(ARCHS), action="append")
    ap.add_argument("--n", type=int, help="N for every architecture chosen")
    ap.add_argument("--crop", type=int, default=28)
    ap.add_argument("--nt-python", default=NT_PYTHON)
    ap.add_argument("--nt-batch", type=int, default=50)
    ap.add_argument("--skip-nt", action="store_true")
    ap.add_argument("--conv-grad", action="store_true")
    # worker mode (internal)
    ap.add_argument("--worker", choices=["ours", "nt"])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out")
    args = ap.parse_args()
    from _pinning import share_chosen_core

    share_chosen_core()  # every measurement on one core
    if args.worker:
        return worker(args)
    if args.conv_grad:
        return conv_grad_in_scan()
    if not DATA.exists():
        raise SystemExit(f"Fashion-MNIST not found at {DATA}")
    sizes = {"flatten": 1000, "gap": 200}
    crop = args.crop
    if args.quick:
        sizes = {"flatten": 200, "gap": 20}
    if args.smoke:
        sizes, crop = {"flatten": 8, "gap": 8}, 12
    archs = args.arch or sorted(ARCHS)
    if args.smoke and not args.arch:
        archs = ["flatten"]  # the script's paths once; both readouts' kernels have unit tests
    use_nt = not args.skip_nt and pathlib.Path(args.nt_python).exists()
    libs = ["ours"] + (["nt"] if use_nt else [])
    print(f"# CNN-GP NNGP+NTK, {crop}x{crop} Fashion-MNIST, one pinned core per run")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            n = args.n or sizes[arch]
            nt_batch = min(args.nt_batch, n)
            print(f"\n## {arch}, N = {n}" + (f" (nt.batch {nt_batch})" if use_nt else ""))
            print(
                "| library | dtype | first call wall / cpu (s) | second call wall / cpu (s) "
                "| peak RSS (MiB) | float32 err NNGP / NTK (diag) |"
            )
            print("|---|---|---|---|---|---|")
            rows = {}
            for lib in libs:
                for dtype in ("float64", "float32"):
                    r, path = measure(lib, arch, n, crop, dtype, tmp, args.nt_python, nt_batch)
                    rows[lib, dtype] = r
                    err = ""
                    if dtype == "float32":
                        a, b = np.load(path), np.load(rows[lib, "float64"]["path"])
                        e = []
                        for g in ("nngp", "ntk"):
                            d = np.abs(a[g].astype(np.float64) - b[g])
                            scale = np.abs(b[g]).max()
                            e.append(f"{d.max() / scale:.1e} ({np.diag(d).max() / scale:.1e})")
                        err = " / ".join(e)
                    r["path"] = path
                    print(
                        f"| {lib} | {dtype} | {r['first_wall']:.2f} / {r['first_cpu']:.2f} "
                        f"| {r['wall']:.2f} / {r['cpu']:.2f} | {r['maxrss_mib']:.0f} | {err} |",
                        flush=True,
                    )
            if use_nt:
                for dtype in ("float32", "float64"):
                    o, t = rows["ours", dtype], rows["nt", dtype]
                    print(
                        f"\n{dtype}: nt / ours second call: wall {t['wall'] / o['wall']:.2f}x, "
                        f"CPU {t['cpu'] / o['cpu']:.2f}x; first call: wall "
                        f"{t['first_wall'] / o['first_wall']:.2f}x, CPU "
                        f"{t['first_cpu'] / o['first_cpu']:.2f}x; peak RSS ours / nt "
                        f"{o['maxrss_mib'] / t['maxrss_mib']:.2f}"
                    )
                a = np.load(rows["ours", "float64"]["path"])
                b = np.load(rows["nt", "float64"]["path"])
                for g in ("nngp", "ntk"):
                    off = ~np.eye(n, dtype=bool)
                    d = np.abs(a[g] - b[g]) / np.abs(b[g]).max()
                    print(
                        f"float64 {g}: ours vs nt max rel. diff {d[off].max():.1e} off-diagonal,"
                        f" {np.diag(d).max():.1e} diagonal"
                    )


if __name__ == "__main__":
    main()
