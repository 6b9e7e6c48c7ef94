"""Generate float64 neural-tangents reference kernels for bayesnn's conv layers.

Run with a separate environment that has neural-tangents 0.6.5 (it does not import on the
jax that bayesnn uses); see README.md in this folder for the exact versions::

    /path/to/ntenv/bin/python tests/data/nt_reference/make_reference.py

For every case in ``CASES`` it draws the inputs with a fixed seed, evaluates the stax
architecture text with neural-tangents' ``stax`` names and stores, in ``<name>.npz``:

- ``x1`` (N1, H, W, C) and ``x2`` (N2, H, W, C): the inputs (float64, NHWC);
- ``nngp_11``, ``ntk_11`` (N1, N1): ``kernel_fn(x1, None)``;
- ``nngp_12``, ``ntk_12`` (N1, N2): ``kernel_fn(x1, x2)``.

``cases.json`` lists each case's name, architecture text, input shapes and seed. The text
uses only names that bayesnn.nn shares with stax, so a test can ``eval`` it in either
namespace. This script is not a dependency of bayesnn or of its tests.
"""

import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
N1, N2 = 4, 3

# (name, input shape (H, W, C), architecture text, notes)
CASES = [
    (
        "conv_same_relu_flatten",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Relu(), "
        "Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Relu(), "
        "Flatten(), Dense(1, W_std=1.2, b_std=0.05))",
        "SAME, stride 1, ntk parameterisation, Flatten readout (diagonal spatial suffices)",
    ),
    (
        "conv_valid_erf_nobias",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='VALID', W_std=1.3), Erf(), "
        "Conv(4, (2, 2), padding='VALID', W_std=1.1), Erf(), Flatten(), Dense(1, W_std=0.9))",
        "VALID (6x6 -> 4x4 -> 3x3), b_std None everywhere, Erf",
    ),
    (
        "conv_default_padding",
        (8, 8, 1),
        "serial(Conv(3, (3, 3)), Relu(), Conv(3, (3, 3), W_std=1.4, b_std=0.2), Relu(), "
        "Flatten(), Dense(1))",
        "defaults: padding VALID, strides None (=1), W_std 1.0, b_std None, ntk",
    ),
    (
        "conv_same_stride2",
        (8, 8, 1),
        "serial(Conv(4, (3, 3), strides=(2, 2), padding='SAME', W_std=1.5, b_std=0.1), Relu(), "
        "Conv(4, (3, 3), strides=(2, 2), padding='SAME', W_std=1.5, b_std=0.1), Relu(), "
        "Flatten(), Dense(1, W_std=1.0, b_std=0.1))",
        "SAME, stride 2 (8x8 -> 4x4 -> 2x2; XLA SAME padding: total pad max((out-1)*s+f-in, 0),"
        " low side gets floor(pad/2))",
    ),
    (
        "conv_valid_stride2",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), strides=(2, 2), padding='VALID', W_std=1.5, b_std=0.3), Relu(), "
        "Conv(4, (2, 2), strides=(1, 1), padding='VALID', W_std=1.2, b_std=0.3), Relu(), "
        "Flatten(), Dense(1, W_std=1.0, b_std=0.1))",
        "VALID, stride 2 (6x6 -> 2x2 -> 1x1)",
    ),
    (
        "conv_nonsquare",
        (7, 6, 2),
        "serial(Conv(4, (3, 2), strides=(1, 2), padding='SAME', W_std=1.4, b_std=0.2), Relu(), "
        "Conv(4, (2, 3), strides=(2, 1), padding='VALID', W_std=1.3), Relu(), "
        "Flatten(), Dense(1, W_std=1.0, b_std=0.1))",
        "non-square input, filters and strides (7x6 -> 7x3 -> 3x1)",
    ),
    (
        "conv_standard",
        (6, 6, 2),
        "serial(Conv(5, (3, 3), padding='SAME', W_std=1.5, b_std=0.1, "
        "parameterization='standard'), Relu(), "
        "Conv(3, (3, 3), padding='SAME', W_std=1.5, b_std=0.1, parameterization='standard'), "
        "Relu(), Flatten(), Dense(1, W_std=1.2, b_std=0.05, parameterization='standard'))",
        "standard parameterisation: the NTK depends on the finite fan-in (input channels 2, "
        "then out_chan 5 and 3, times the filter size; Flatten then Dense has fan-in 6*6*3)",
    ),
    (
        "conv_standard_nobias_gap",
        (6, 6, 2),
        "serial(Conv(5, (3, 3), padding='SAME', W_std=1.5, parameterization='standard'), "
        "Relu(), Conv(3, (2, 2), strides=(2, 2), padding='VALID', W_std=1.5, "
        "parameterization='standard'), Relu(), GlobalAvgPool(), "
        "Dense(1, W_std=1.2, parameterization='standard'))",
        "standard parameterisation, b_std None (no +1 bias term in the NTK), GlobalAvgPool",
    ),
    (
        "avgpool_valid",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Relu(), "
        "AvgPool((2, 2)), Conv(4, (2, 2), padding='VALID', W_std=1.5, b_std=0.1), Relu(), "
        "Flatten(), Dense(1, W_std=1.0, b_std=0.1))",
        "AvgPool window 2x2, strides None (= window), VALID (6x6 -> 3x3): needs the full "
        "pixel-pair covariance",
    ),
    (
        "avgpool_same_stride1",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='VALID', W_std=1.5, b_std=0.1), Relu(), "
        "AvgPool((3, 3), strides=(1, 1), padding='SAME'), "
        "Conv(4, (2, 2), padding='VALID', W_std=1.2), Relu(), Flatten(), "
        "Dense(1, W_std=1.0, b_std=0.1))",
        "AvgPool 3x3, stride 1, SAME with normalize_edges=False (the default): zero padding "
        "counts in the average (divide by 9 everywhere)",
    ),
    (
        "gap_readout",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Relu(), "
        "Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Relu(), GlobalAvgPool(), "
        "Dense(1, W_std=1.2, b_std=0.05))",
        "GlobalAvgPool readout (full pixel-pair covariance)",
    ),
    (
        "residual_block",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.4, b_std=0.1), "
        "FanOut(2), parallel(serial(Conv(4, (3, 3), padding='SAME', W_std=1.3, b_std=0.1), "
        "Relu(), Conv(4, (3, 3), padding='SAME', W_std=1.3, b_std=0.1)), Identity()), "
        "FanInSum(), Relu(), GlobalAvgPool(), Dense(1, W_std=1.0, b_std=0.1))",
        "residual block serial(FanOut(2), parallel(serial(Conv, Relu, Conv), Identity()), "
        "FanInSum()) written flat inside the outer serial after a Conv (both branches Gaussian, so "
        "Relu after FanInSum is allowed); GlobalAvgPool readout",
    ),
    (
        "residual_block_flatten",
        (8, 8, 1),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.4, b_std=0.1), "
        "serial(FanOut(2), parallel(serial(Conv(4, (3, 3), padding='SAME', W_std=1.3), "
        "Relu(), Conv(4, (3, 3), padding='SAME', W_std=1.3)), Identity()), FanInSum()), "
        "Relu(), Flatten(), Dense(1, W_std=1.0, b_std=0.1))",
        "residual block as its own serial, no bias in the branch, Flatten readout",
    ),
    (
        "layernorm_channel",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), LayerNorm(axis=-1), "
        "Relu(), Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Relu(), Flatten(), "
        "Dense(1, W_std=1.0, b_std=0.1))",
        "LayerNorm(axis=-1): normalises over the channel axis only, i.e. each pixel's "
        "variance (cov1/cov2 at that pixel) is scaled to 1; eps=1e-12 (nt default)",
    ),
    (
        "layernorm_all",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), "
        "LayerNorm(axis=(1, 2, 3)), Relu(), Conv(4, (3, 3), padding='VALID', W_std=1.5, "
        "b_std=0.1), Relu(), GlobalAvgPool(), Dense(1, W_std=1.0, b_std=0.1))",
        "LayerNorm(axis=(1, 2, 3)): normalises over H, W and channels (the mean over pixels of "
        "the per-pixel variance is scaled to 1); eps=1e-12",
    ),
    (
        "gelu",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Gelu(), "
        "Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Gelu(), Flatten(), "
        "Dense(1, W_std=1.2, b_std=0.05))",
        "Gelu (exact erf form): neural-tangents has a closed form (Tsuchida et al. 2020, "
        "arXiv:2002.08517); bayesnn computes Gelu by its Hermite fallback",
    ),
    (
        "gelu_gap",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5), Gelu(), "
        "Conv(4, (3, 3), padding='SAME', W_std=1.5), Gelu(), GlobalAvgPool(), Dense(1))",
        "Gelu with GlobalAvgPool readout, no biases",
    ),
    (
        "dense_on_channels",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1), Relu(), "
        "Dense(3, W_std=1.3, b_std=0.2), Erf(), Flatten(), Dense(1, W_std=1.0, b_std=0.1))",
        "Dense on NHWC acts on the channel axis at every pixel",
    ),
    (
        "dense_on_channels_standard",
        (6, 6, 2),
        "serial(Conv(4, (3, 3), padding='SAME', W_std=1.5, b_std=0.1, "
        "parameterization='standard'), Relu(), "
        "Dense(3, W_std=1.3, b_std=0.2, parameterization='standard'), Relu(), "
        "AvgPool((2, 2)), Flatten(), Dense(1, W_std=1.0, b_std=0.1, "
        "parameterization='standard'))",
        "standard parameterisation with Dense on channels (fan-in 4) and AvgPool",
    ),
]

NAMES = (
    "serial Conv AvgPool GlobalAvgPool Flatten FanOut FanInSum parallel LayerNorm Identity "
    "Dense Relu Erf Gelu"
).split()


def build(text):
    namespace = {name: getattr(stax, name) for name in NAMES}
    return eval(text, {"__builtins__": {}}, namespace)


def main():
    records = []
    for index, (name, shape, text, notes) in enumerate(CASES):
        rng = np.random.default_rng(1000 + index)
        x1 = rng.standard_normal((N1, *shape))
        x2 = rng.standard_normal((N2, *shape))
        _, _, kernel_fn = build(text)
        k11 = kernel_fn(x1, None, ("nngp", "ntk"))
        k12 = kernel_fn(x1, x2, ("nngp", "ntk"))
        out = {
            "x1": x1,
            "x2": x2,
            "nngp_11": np.asarray(k11.nngp, np.float64),
            "ntk_11": np.asarray(k11.ntk, np.float64),
            "nngp_12": np.asarray(k12.nngp, np.float64),
            "ntk_12": np.asarray(k12.ntk, np.float64),
        }
        for key, value in out.items():
            if not np.all(np.isfinite(value)):
                raise RuntimeError(f"{name}: non-finite {key}")
            if value.dtype != np.float64:
                raise RuntimeError(f"{name}: {key} is {value.dtype}")
        for key in ("nngp_11", "ntk_11", "nngp_12", "ntk_12"):
            if out[key].shape != (N1, N1 if key.endswith("11") else N2):
                raise RuntimeError(f"{name}: {key} has shape {out[key].shape}")
        np.savez_compressed(os.path.join(HERE, f"{name}.npz"), **out)
        records.append(
            {
                "name": name,
                "file": f"{name}.npz",
                "stax": text,
                "x1_shape": list(x1.shape),
                "x2_shape": list(x2.shape),
                "seed": 1000 + index,
                "notes": notes,
            }
        )
        print(f"{name}: nngp_11 diag {np.diag(out['nngp_11'])}", file=sys.stderr)
    import neural_tangents

    meta = {
        "generator": "make_reference.py",
        "neural_tangents": neural_tangents.__version__,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "numpy": np.__version__,
        "x64": True,
        "inputs": "standard normal, numpy default_rng(seed); x1 then x2 from the same rng",
        "keys": "x1, x2, nngp_11, ntk_11 (kernel_fn(x1, None)), nngp_12, ntk_12 "
        "(kernel_fn(x1, x2))",
        "cases": records,
    }
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
