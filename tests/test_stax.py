import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn import nn


def test_serial_shapes_and_names():
    net = nn.serial(nn.Dense(7, b_std=1.0), nn.Relu(), nn.Dense(3, b_std=None))
    params = net.init(jax.random.key(0), (5,))
    assert set(params) == {"dense_0", "dense_2"}
    assert params["dense_0"]["W"].shape == (5, 7) and params["dense_0"]["b"].shape == (7,)
    assert set(params["dense_2"]) == {"W"}
    assert net.apply(params, jnp.ones((4, 5))).shape == (4, 3)
    assert net.output_shape((5,)) == (3,)
    names = [
        jax.tree_util.keystr(p, simple=True, separator=".")
        for p, _ in jax.tree_util.tree_leaves_with_path(params)
    ]
    assert names == ["dense_0.W", "dense_0.b", "dense_2.W"]


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_output_variance_matches_parameterization(parameterization):
    """Var f(x) = W_std^2 |x|^2 / d + b_std^2 for one dense layer in both parameterisations."""
    d, w_std, b_std = 20, 1.7, 0.6
    layer = nn.Dense(1, W_std=w_std, b_std=b_std, parameterization=parameterization)
    x = jax.random.normal(jax.random.key(1), (1, d))
    keys = jax.random.split(jax.random.key(2), 20000)
    f = jax.vmap(lambda k: layer.apply(layer.init(k, (d,)), x)[0, 0])(keys)
    expected = w_std**2 * float(jnp.sum(x**2)) / d + b_std**2
    # sample variance of 20000 Gaussians: relative sd sqrt(2/20000) = 1%
    assert abs(float(jnp.var(f)) / expected - 1) < 0.05


def test_activations_apply_elementwise():
    x = jnp.linspace(-2, 2, 9)
    np.testing.assert_allclose(nn.Relu().apply({}, x), np.maximum(x, 0))
    np.testing.assert_allclose(
        nn.LeakyRelu(0.1).apply({}, x), np.where(x > 0, x, 0.1 * x), rtol=1e-6
    )
    np.testing.assert_allclose(nn.Tanh().apply({}, x), np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(nn.Identity().apply({}, x), x)
    assert nn.Gelu().apply({}, x).shape == x.shape
    assert nn.Erf().apply({}, x)[0] < 0 < nn.Erf().apply({}, x)[-1]


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="out_dim"):
        nn.Dense(0)
    with pytest.raises(ValueError, match="W_std"):
        nn.Dense(3, W_std=-1.0)
    with pytest.raises(ValueError, match="b_std"):
        nn.Dense(3, b_std=-0.1)
    with pytest.raises(ValueError, match="parameterization"):
        nn.Dense(3, parameterization="muP")
    with pytest.raises(TypeError, match="not a Layer"):
        nn.serial(nn.Dense(3), "relu")
    layer = nn.Dense(3)
    params = layer.init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match="last axis 4"):
        layer.apply(params, jnp.ones((2, 5)))


def test_dense_on_images_acts_on_channels():
    layer = nn.Dense(3, b_std=0.5)
    params = layer.init(jax.random.key(0), (4, 5, 2))
    assert params["W"].shape == (2, 3) and layer.output_shape((4, 5, 2)) == (4, 5, 3)
    x = jax.random.normal(jax.random.key(1), (6, 4, 5, 2))
    y = layer.apply(params, x)
    W, b = np.asarray(params["W"]), np.asarray(params["b"])
    ref = np.einsum("nhwc,co->nhwo", np.asarray(x), W) / np.sqrt(2) + 0.5 * b
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_layer_spatial_need_defaults_to_pass_through():
    net = nn.serial(nn.Dense(3), nn.Relu())
    assert net.spatial_need("diag") == "diag" and net.spatial_need("full") == "full"
    assert nn.Layer(*nn.Relu()[:5]).spatial_need is None  # five-field Layers still build
