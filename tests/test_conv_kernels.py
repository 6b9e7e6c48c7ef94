"""Convolutional, pooling, residual and normalisation layers: finite networks and kernels."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn import nn
from bayesnn.nn import kernels, spatial, stax
from bayesnn.nn.kernels import kernel_fn

REF_DIR = pathlib.Path(__file__).parent / "data" / "nt_reference"


def _key(seed):
    """PRNG key for random initialisations; "unsafe_rbg" compiles much faster than threefry."""
    return jax.random.key(seed, impl="unsafe_rbg")


def _images(seed, n, h=6, w=5, c=2, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=(n, h, w, c)).astype(dtype)


# ----------------------------------------------------------------------------- finite layers


@pytest.mark.parametrize(
    "filt,strides,padding,cin",
    [
        ((3, 3), (1, 1), "SAME", 3),
        ((3, 2), (2, 1), "VALID", 1),
        ((2, 3), (2, 2), "SAME", 3),
        ((1, 3), (1, 2), "SAME", 2),
    ],
)
def test_conv2d_im2col_equals_lax_conv(filt, strides, padding, cin):
    """im2col + matmul equals lax.conv_general_dilated: values, gradients, forward-mode
    derivatives, and per-chain weights under vmap."""
    x = jnp.asarray(_images(0, 3, 7, 6, cin, np.float32))
    W = jax.random.normal(jax.random.key(1), filt + (cin, 4))
    dn = ("NHWC", "HWIO", "NHWC")

    def ref(x, W):
        return jax.lax.conv_general_dilated(x, W, strides, padding, dimension_numbers=dn)

    def ours(x, W):
        return nn.conv2d(x, W, strides, padding)

    @jax.jit  # one compilation for all the checks
    def both(x, W):
        out = []
        for conv in (ours, ref):
            grads = jax.grad(lambda x, W: jnp.sum(jnp.sin(conv(x, W))), (0, 1))(x, W)
            tangent = jax.jvp(conv, (x, W), (jnp.cos(x), jnp.sin(W)))[1]
            # two chains with their own weights and images
            chains = jax.vmap(conv)(jnp.stack([x, x[::-1]]), jnp.stack([W, -0.5 * W]))
            out.append((conv(x, W), *grads, tangent, chains))
        return out

    for a, b in zip(*both(x, W), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _resnet(width=8, param="ntk", readout=stax.GlobalAvgPool):
    block = stax.serial(
        stax.FanOut(2),
        stax.parallel(
            stax.serial(
                stax.Relu(),
                stax.Conv(
                    width, (3, 3), padding="SAME", W_std=1.4, b_std=0.1, parameterization=param
                ),
                stax.Relu(),
                stax.Conv(width, (3, 3), padding="SAME", W_std=1.3, parameterization=param),
            ),
            stax.Identity(),
        ),
        stax.FanInSum(),
    )
    return stax.serial(
        stax.Conv(width, (3, 3), padding="SAME", W_std=1.5, b_std=0.1, parameterization=param),
        block,
        stax.LayerNorm(),
        stax.Relu(),
        readout(),
        stax.Dense(width, W_std=1.2, b_std=0.1, parameterization=param),
    )


def test_finite_shapes_and_parameter_names():
    net = stax.serial(
        stax.Conv(4, (3, 3), strides=(2, 2), padding="SAME", b_std=0.1),
        stax.Relu(),
        stax.AvgPool((2, 2), padding="SAME"),
        stax.MaxPool((2, 2), strides=(1, 1)),
        stax.Flatten(),
        stax.Dense(3),
    )
    params = net.init(jax.random.key(0), (7, 6, 2))
    assert net.output_shape((7, 6, 2)) == (3,)
    assert params["conv_0"]["W"].shape == (3, 3, 2, 4) and params["conv_0"]["b"].shape == (4,)
    assert params["dense_5"]["W"].shape == (4 * 3 * 2, 3)  # 7x6 -> 4x3 -> 4x3 -> 3x2
    assert net.apply(params, jnp.ones((5, 7, 6, 2))).shape == (5, 3)
    res = _resnet(4)
    p = res.init(jax.random.key(1), (6, 5, 2))
    names = [
        jax.tree_util.keystr(k, simple=True, separator=".")
        for k, _ in jax.tree_util.tree_leaves_with_path(p)
    ]
    assert names == [
        "conv_0.W", "conv_0.b", "dense_5.W", "dense_5.b",
        "serial_1.parallel_1.serial_0.conv_1.W", "serial_1.parallel_1.serial_0.conv_1.b",
        "serial_1.parallel_1.serial_0.conv_3.W",
    ]  # fmt: skip
    assert res.apply(p, jnp.ones((2, 6, 5, 2))).shape == (2, 4)


def test_pooling_and_layer_norm_apply():
    x = jnp.asarray(_images(2, 2, 5, 4, 3))
    avg = stax.AvgPool((2, 2), strides=(2, 1), padding="SAME").apply({}, x)
    xp = np.pad(np.asarray(x), ((0, 0), (0, 1), (0, 1), (0, 0)))  # SAME: 5 -> 3 rows, 4 -> 4
    ref = np.stack(
        [
            np.stack([xp[:, 2 * i : 2 * i + 2, j : j + 2].mean((1, 2)) for j in range(4)], 1)
            for i in range(3)
        ],
        1,
    )  # zeros count in the average (normalize_edges=False)
    np.testing.assert_allclose(avg, ref, rtol=1e-6, atol=1e-7)
    mx = stax.MaxPool((2, 3)).apply({}, x)
    np.testing.assert_allclose(mx[:, 1, 0], np.asarray(x)[:, 1:3, 0:3].max((1, 2)))
    np.testing.assert_allclose(stax.GlobalAvgPool().apply({}, x), np.asarray(x).mean((1, 2)))
    ln = stax.LayerNorm(axis=(1, 2, 3)).apply({}, x)
    np.testing.assert_allclose(np.asarray(ln).reshape(2, -1).mean(1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ln).reshape(2, -1).var(1), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- exact kernels


@pytest.mark.parametrize(
    "window,strides,padding", [((2, 2), (2, 2), "VALID"), ((3, 2), (1, 2), "SAME")]
)
def test_pooling_kernels_equal_kernels_of_pooled_inputs(window, strides, padding):
    """Pooling is a fixed linear map L, so the pooled input kernel is the kernel of L x."""
    with jax.enable_x64(True):
        x = jnp.asarray(_images(3, 3))
        k = kernels.input_kernel(x, spatial="full")
        pool = stax.AvgPool(window, strides, padding)
        got = pool.kernel(k)
        ref = kernels.input_kernel(pool.apply({}, x), spatial="full")
        for a, b in ((got.nngp, ref.nngp), (got.var1, ref.var1)):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        gap = spatial.global_avg_pool_kernel(k)
        ref = kernels.input_kernel(jnp.mean(x, axis=(1, 2)))
        np.testing.assert_allclose(gap.nngp, ref.nngp, rtol=1e-12)
        for mode in ("diag", "full"):
            flat = spatial.flatten_kernel(kernels.input_kernel(x, spatial=mode))
            ref = kernels.input_kernel(x.reshape(3, -1))
            np.testing.assert_allclose(flat.nngp, ref.nngp, rtol=1e-12)
            np.testing.assert_allclose(flat.var1, ref.var1, rtol=1e-12)


@pytest.mark.parametrize("padding,strides", [("SAME", (1, 1)), ("VALID", (2, 1))])
def test_conv_kernel_is_patch_covariance(padding, strides):
    """One Conv layer: K(p, p') = W_std^2 patch(x, p) . patch(x', p') / (C F) + b_std^2."""
    with jax.enable_x64(True):
        x = jnp.asarray(_images(4, 3))
        conv = stax.Conv(7, (3, 2), strides, padding, W_std=1.3, b_std=0.4)
        patches = jax.lax.conv_general_dilated_patches(
            x, (3, 2), strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        ref = 1.69 * jnp.einsum("ihwf,jxyf->ijhwxy", patches, patches) / 12 + 0.16
        full = conv.kernel(kernels.input_kernel(x, spatial="full"))
        np.testing.assert_allclose(full.nngp, ref, rtol=1e-12)
        diag = conv.kernel(kernels.input_kernel(x, spatial="diag"))
        h, w = ref.shape[2:4]
        ref_d = jnp.einsum("ijhwhw->ijhw", ref)
        np.testing.assert_allclose(diag.nngp, ref_d, rtol=1e-12)
        np.testing.assert_allclose(diag.var1, jnp.einsum("iihw->ihw", ref_d), rtol=1e-12)
        assert diag.nngp.shape == (3, 3, h, w)


def test_spatial_need_chosen_from_architecture():
    flat = stax.serial(stax.Conv(3, (3, 3)), stax.Relu(), stax.Flatten(), stax.Dense(1))
    gap = stax.serial(stax.Conv(3, (3, 3)), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    pool = stax.serial(stax.Conv(3, (2, 2)), stax.AvgPool((2, 2)), stax.Flatten(), stax.Dense(1))
    assert flat.spatial_need("full") == "diag"
    assert gap.spatial_need("full") == "full"
    assert pool.spatial_need("full") == "full"
    assert _resnet(readout=stax.Flatten).spatial_need("full") == "diag"
    assert _resnet().spatial_need("full") == "full"


def _nt_namespace():
    ns = {name: getattr(stax, name) for name in stax.__all__}

    def Dense(out_dim, W_std=1.0, b_std=None, parameterization="ntk"):
        # neural-tangents' Dense has b_std=None by default (no "+1" bias term in the standard
        # NTK); ours keeps its earlier default 0.0 (a bias parameter with prior scale zero)
        return stax.Dense(out_dim, W_std, b_std, parameterization)

    ns["Dense"] = Dense
    return ns


def _reference_cases():
    path = REF_DIR / "cases.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())["cases"]


@pytest.mark.skipif(not (REF_DIR / "cases.json").exists(), reason="no neural-tangents references")
@pytest.mark.parametrize("case", _reference_cases(), ids=lambda c: c["name"])
def test_kernels_equal_neural_tangents(case):
    """float64 NNGP/NTK equal neural-tangents 0.6.5's (stored by make_reference.py) to 1e-10.

    Diagonal entries of K(x1, x1) pass a point with itself through ReLU's arc-cosine kernel:
    neural-tangents computes the angle with arccos(k12 / sqrt(k11 k22)) of a correlation
    rounded near 1, an error of up to ~sqrt(eps) ~ 1e-8 in the angle and ~1e-9 in the NTK
    (ours is exact there, angle 0); those entries get 1e-8.
    """
    z = np.load(REF_DIR / case["file"])
    arch = eval(case["stax"], _nt_namespace())
    n = z["x1"].shape[0]
    with jax.enable_x64(True):
        # one kernel of [x1; x2] holds K(x1, x1) and K(x1, x2) (one compilation, not two)
        both = kernel_fn(arch, np.concatenate([z["x1"], z["x2"]]), block_size=None)
    off = ~np.eye(n, dtype=bool)
    for name, ours in zip(("nngp", "ntk"), both, strict=True):
        ours = np.asarray(ours)
        ref = z[f"{name}_11"]
        err = np.abs(ours[:n, :n] - ref) / np.abs(ref).max()
        assert err[off].max() < 1e-10, (name, err)
        assert np.diag(err).max() < 1e-8, (name, err)
        ref = z[f"{name}_12"]
        np.testing.assert_allclose(ours[:n, n:], ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_blocked_equals_unblocked_for_images():
    x = jnp.asarray(_images(5, 5, 4, 3, 1, np.float32))
    y = jnp.asarray(_images(6, 3, 4, 3, 1, np.float32))
    for readout in (stax.Flatten, stax.GlobalAvgPool):
        arch = stax.serial(
            stax.Conv(3, (3, 3), padding="SAME", b_std=0.1), stax.Relu(), readout(),
            stax.Dense(1, b_std=0.1),
        )  # fmt: skip
        for x2 in (None, y):
            full = kernel_fn(arch, x, x2, block_size=None)
            blocked = kernel_fn(arch, x, x2, block_size=2)
            for a, b in zip(full, blocked, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # a spatial output (no readout): the mirrored blocks swap the position pairs too
    conv = stax.serial(stax.Conv(3, (2, 2), b_std=0.1), stax.Relu(), stax.Conv(2, (2, 2)))
    full = kernel_fn(conv, x, get="nngp", block_size=None)
    blocked = kernel_fn(conv, x, get="nngp", block_size=2)
    assert full.shape == (5, 5, 2, 1, 2, 1)
    np.testing.assert_allclose(blocked, full, rtol=1e-6, atol=1e-7)


def test_float32_diagonal_exact_for_conv():
    x = _images(7, 40, 6, 6, 2)
    arch = stax.serial(
        stax.Conv(3, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), stax.Relu(),
        stax.Conv(3, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), stax.Relu(),
        stax.Flatten(), stax.Dense(1, W_std=1.5, b_std=0.1),
    )  # fmt: skip
    K32, T32 = kernel_fn(arch, jnp.asarray(x, jnp.float32))
    with jax.enable_x64(True):
        K64, T64 = kernel_fn(arch, jnp.asarray(x))
    for a, b in ((K32, K64), (T32, T64)):
        a, b = np.asarray(a, np.float64), np.asarray(b)
        assert np.abs(np.diag(a) - np.diag(b)).max() / np.abs(b).max() < 1e-6
        assert np.abs(a - b).max() / np.abs(b).max() < 1e-6


@pytest.mark.slow  # ~30-150 s: jit of the Hessian of a full-spatial kernel
def test_hessian_finite_at_duplicated_inputs():
    """Second derivatives of a kernel entry w.r.t. the inputs at x = x' are finite."""
    last = stax.GlobalAvgPool()
    arch = stax.serial(
        stax.Conv(3, (2, 2), b_std=0.1), stax.Relu(), stax.Conv(3, (2, 2)), stax.Erf(), last,
        stax.Dense(1),
    )  # fmt: skip
    x = jnp.asarray(_images(8, 2, 3, 3, 1, np.float32))
    x = x.at[1].set(x[0])

    def entry(x):
        K, T = kernel_fn(arch, x, block_size=None)
        return K[0, 1] + T[0, 1] + K[0, 0]

    hess = jax.jit(jax.hessian(entry))(x)
    assert np.all(np.isfinite(np.asarray(hess)))


def test_dense_kernel_hessian_finite_at_duplicated_inputs():
    """The NNGP kernel of a dense net has finite second derivatives at x = x' (the safe
    sqrt/atan2 rules are differentiable to second order)."""
    mlp = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(4), stax.Tanh(), stax.Dense(1))
    xd = jnp.asarray(np.random.default_rng(9).normal(size=(2, 3)), jnp.float32)
    xd = xd.at[1].set(xd[0])
    hess = jax.jit(jax.hessian(lambda x: jnp.sum(kernel_fn(mlp, x, get="nngp"))))(xd)
    assert np.all(np.isfinite(np.asarray(hess)))


# ----------------------------------------------------------------------------- finite width


def test_monte_carlo_resnet_covariance_matches_nngp():
    """Residual conv net, LayerNorm, GlobalAvgPool: MC output covariance -> NNGP.

    Width 96, 30 draws x 96 readout units; tolerance 4.5 standard errors plus an
    O(1/width) finite-width bias.
    """
    x = jnp.asarray(_images(10, 3, 4, 3, 2, np.float32))
    width = 96
    arch = _resnet(width)
    mean, se = kernels.monte_carlo_nngp(arch, _key(0), x, n_samples=30)
    K = kernel_fn(arch, x, get="nngp")
    tol = 4.5 * se + 4.0 / width * jnp.abs(K).max()
    assert np.all(np.abs(mean - K) <= tol), (mean, K, se)
    assert np.all(se < 0.05 * jnp.abs(K).max())


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_empirical_ntk_of_wide_conv_net(param):
    x = jnp.asarray(_images(11, 3, 4, 4, 2, np.float32))
    width = 128
    arch = stax.serial(
        stax.Conv(width, (3, 3), padding="SAME", W_std=1.4, b_std=0.2, parameterization=param),
        stax.Relu(),
        stax.Conv(width, (2, 2), strides=(2, 2), W_std=1.4, b_std=0.2, parameterization=param),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(1, W_std=1.4, b_std=0.2, parameterization=param),
    )
    theta = kernel_fn(arch, x, get="ntk")
    keys = jax.random.split(_key(1), 6)
    ntk_fn = jax.jit(
        jax.vmap(lambda k: kernels.empirical_ntk(arch.apply, arch.init(k, x.shape[1:]), x))
    )
    draws = ntk_fn(keys)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / np.sqrt(len(keys))
    tol = 4.5 * se + 4.0 / width * jnp.abs(theta).max()
    assert np.all(np.abs(mean - theta) <= tol), (mean, theta, se)


# ----------------------------------------------------------------------------- bad input


def test_bad_layer_arguments_and_inputs():
    with pytest.raises(ValueError, match="Conv: filter_shape"):
        stax.Conv(3, (0, 3))
    with pytest.raises(ValueError, match="Conv: strides"):
        stax.Conv(3, (3, 3), strides=(1, -1))
    with pytest.raises(ValueError, match="Conv: padding"):
        stax.Conv(3, (3, 3), padding="CIRCULAR")
    with pytest.raises(ValueError, match="Conv: out_chan"):
        stax.Conv(0, (3, 3))
    with pytest.raises(ValueError, match="AvgPool: window_shape"):
        stax.AvgPool((2, 0))
    with pytest.raises(ValueError, match="MaxPool: strides"):
        stax.MaxPool((2, 2), strides=(0, 1))
    with pytest.raises(ValueError, match="FanOut: num"):
        stax.FanOut(0)
    with pytest.raises(ValueError, match="LeakyRelu: alpha"):
        stax.LeakyRelu(float("nan"))
    conv = stax.Conv(3, (3, 3))
    with pytest.raises(ValueError, match=r"Conv: input must be NHWC.*\(H, W, C\)"):
        conv.init(jax.random.key(0), (5, 2))
    params = conv.init(jax.random.key(0), (5, 5, 2))
    with pytest.raises(ValueError, match="Conv: input must be NHWC"):
        conv.apply(params, jnp.ones((5, 5, 2)))
    with pytest.raises(ValueError, match="Conv: filter_shape .* larger than the input"):
        conv.init(jax.random.key(0), (2, 5, 2))
    with pytest.raises(ValueError, match="Conv: filter_shape .* larger than the input"):
        kernel_fn(stax.serial(conv, stax.Flatten(), stax.Dense(1)), jnp.ones((2, 2, 5, 2)))
    res = stax.serial(
        stax.FanOut(2), stax.parallel(stax.Conv(3, (3, 3)), stax.Identity()), stax.FanInSum()
    )
    with pytest.raises(ValueError, match="FanInSum: branch 1 has shape"):
        res.init(jax.random.key(0), (5, 5, 2))
    with pytest.raises(ValueError, match="FanInSum: branch 1 has kernel shape"):
        kernel_fn(stax.serial(stax.Conv(3, (1, 1)), res), jnp.ones((2, 5, 5, 2)))
    with pytest.raises(ValueError, match="LayerNorm: axis 4 is missing"):
        stax.LayerNorm(axis=4).init(jax.random.key(0), (5, 5, 2))
    with pytest.raises(ValueError, match="LayerNorm: axis"):
        stax.LayerNorm(axis=2).apply({}, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="LayerNorm: axis .* channel axis"):
        kernel_fn(
            stax.serial(stax.Conv(3, (1, 1)), stax.LayerNorm(axis=1)), jnp.ones((2, 3, 3, 1))
        )
    with pytest.raises(NotImplementedError, match="MaxPool"):
        kernel_fn(stax.serial(stax.Conv(3, (1, 1)), stax.MaxPool((2, 2))), jnp.ones((2, 3, 3, 1)))
    with pytest.raises(ValueError, match="x1 must be"):
        kernel_fn(conv, jnp.ones((2, 5, 5)))
    with pytest.raises(ValueError, match="x2 must have the shape"):
        kernel_fn(conv, jnp.ones((2, 5, 5, 2)), jnp.ones((2, 5, 4, 2)))
    with pytest.raises(ValueError, match="Conv: its input has no spatial axes"):
        kernel_fn(stax.serial(stax.Dense(3), conv), jnp.ones((2, 4)))
    big = stax.serial(stax.Conv(3, (3, 3), padding="SAME"), stax.GlobalAvgPool(), stax.Dense(1))
    with pytest.raises(ValueError, match="max_memory_bytes"):
        kernel_fn(big, jnp.ones((50, 28, 28, 1)), max_memory_bytes=1 << 20)
