"""Tests for bayesnn.datasets.corruptions: MNIST-C image corruptions and the corrupted loader."""

import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bayesnn import datasets
from bayesnn.datasets import corruptions as C

FASHION_DIR = Path(os.environ.get("BAYESNN_FASHION_MNIST") or datasets.DEFAULT_FASHION_MNIST_DIR)
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(), reason="Fashion-MNIST absent"
)
RANDOM = [name for name in C.CORRUPTIONS if name not in ("identity", "contrast")]


def _images(n, seed=0):
    """Synthetic garment-like images in [0, 255]: a bright blob on black, with texture."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:28, :28]
    centre = rng.uniform(9, 19, size=(n, 2, 1, 1))
    radius = rng.uniform(5, 9, size=(n, 1, 1))
    inside = (rr - centre[:, 0]) ** 2 + (cc - centre[:, 1]) ** 2 < radius**2
    return np.where(inside, rng.integers(60, 256, size=(n, 28, 28)), 0).astype(np.uint8)


@pytest.fixture(scope="module")
def clean():
    if (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        return datasets.load_fashion_mnist("test", path=FASHION_DIR)[0][:120]
    return _images(120)


# ---------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_shot_noise_moments_match_clipped_poisson(severity):
    # exact mean and variance of clip(N / c, 0, 1), N ~ Poisson(c x), against 20,000 draws
    c = C._SHOT[severity - 1]
    n = 20_000
    for x in (0.05, 0.3, 0.8):
        out = C.shot_noise(np.full((n // 784 + 1, 28, 28), x), severity, rng=7, max_value=1.0)
        out = out.astype(np.float64).ravel()[:n]
        k = np.arange(0, int(10 * c + 50))
        pmf = stats.poisson.pmf(k, c * x)
        v = np.minimum(k / c, 1.0)
        mean, var = pmf @ v, pmf @ v**2 - (pmf @ v) ** 2
        assert abs(out.mean() - mean) < 5 * np.sqrt(var / n)
        # variance of the sample variance: (mu4 - var^2) / n
        mu4 = pmf @ (v - mean) ** 4
        assert abs(out.var() - var) < 5 * np.sqrt((mu4 - var**2) / n)
        if stats.poisson.sf(c, c * x) < 1e-10:  # clipping negligible: unbiased, variance x / c
            assert abs(mean - x) < 1e-8 and abs(var - x / c) < 1e-8


def test_shot_noise_keeps_black_black_and_scale():
    x = _images(4)
    out = C.shot_noise(x, 5, rng=0)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.all(out[x == 0] == 0) and out.max() <= 255
    # the same images in [0, 1] give the same result divided by 255
    out01 = C.shot_noise(x / 255.0, 5, rng=0, max_value=1.0)
    np.testing.assert_allclose(out01 * 255, out, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("severity", [1, 4, 5])
def test_impulse_noise_flips_binomial_fraction(severity):
    amount = C._IMPULSE[severity - 1]
    x = np.full((50, 28, 28), 0.5)
    out = C.impulse_noise(x, severity, rng=3, max_value=1.0)
    changed = out != np.float32(0.5)
    n = x.size
    assert abs(changed.mean() - amount) < 5 * np.sqrt(amount * (1 - amount) / n)
    assert set(np.unique(out[changed])) <= {0.0, 1.0}
    salt = (out[changed] == 1.0).mean()
    assert abs(salt - 0.5) < 5 * np.sqrt(0.25 / changed.sum())


# ----------------------------------------------------------------------------------- blurs


@pytest.mark.parametrize("delta, iterations", [(1, 2), (2, 2), (4, 2)])
def test_glass_shuffle_is_a_local_permutation(delta, iterations):
    x = np.random.default_rng(1).random((6, 28, 28))
    y = C._glass_shuffle(x.copy(), delta, iterations, np.random.default_rng(2))
    np.testing.assert_array_equal(np.sort(y.reshape(6, -1)), np.sort(x.reshape(6, -1)))
    assert not np.array_equal(x, y)
    # swaps reach rows/columns h + dy >= 1 only: row 0 and column 0 never move
    np.testing.assert_array_equal(y[:, 0], x[:, 0])
    np.testing.assert_array_equal(y[:, :, 0], x[:, :, 0])


def test_glass_blur_keeps_mean_intensity(clean):
    # the shuffle permutes pixels and the row blurs (nearest edges) keep the sum where the
    # image is black near the top and bottom edges; the uint8 truncation loses < 1 grey level
    x = clean[np.all(clean[:, :4] == 0, axis=(1, 2)) & np.all(clean[:, 24:] == 0, axis=(1, 2))]
    assert len(x) >= 10
    for severity in (1, 5):
        out = C.glass_blur(x, severity, rng=0).astype(np.float64)
        diff = out.mean(axis=(1, 2)) - x.mean(axis=(1, 2))
        assert np.all(diff <= 0.01) and np.all(diff >= -1.01), diff


def test_row_blur_acts_on_axis_0_only():
    # MNIST-C's gaussian(..., multichannel=True) on a 2-D image: sigma (s, 0)
    x = np.zeros((1, 28, 28))
    x[0, 14, 10] = 1.0
    y = C._row_blur(x, 1.5)
    assert np.all(np.delete(y[0], 10, axis=1) == 0)
    np.testing.assert_allclose(y[0, :, 10].sum(), 1.0)
    assert y[0, 13, 10] > 0.2


def test_motion_blur_is_a_normalised_average():
    x = np.full((3, 28, 28), 0.37)
    np.testing.assert_allclose(C.motion_blur(x, 3, rng=0, max_value=1.0), 0.37, rtol=1e-6)
    imgs = _images(5)
    out = C.motion_blur(imgs, 5, rng=1)
    assert np.all(out >= 0) and np.all(out.max(axis=(1, 2)) <= imgs.max(axis=(1, 2)) + 1e-3)
    # angle 0: taps go right along the row, offsets (0, i)
    dy, dx = C._motion_offsets(5, np.array([0.0, 90.0]))
    np.testing.assert_array_equal(dy[0], 0)
    np.testing.assert_array_equal(dx[0], np.arange(5))
    np.testing.assert_array_equal(dy[1], np.arange(5))


# -------------------------------------------------------------------- masks and overlays


@pytest.mark.parametrize("severity", [1, 4, 5])
def test_spatter_changes_only_where_the_mask_is_nonzero(severity):
    x = _images(40) / 255.0
    out = C.spatter(x, severity, rng=11, max_value=1.0).astype(np.float64)
    m = C._spatter_mask(40, severity, np.random.default_rng(11))
    assert np.all((m == 0) | ((m >= 0.8) & (m <= 1.0))) and m.max() > 0
    np.testing.assert_array_equal(out[m == 0], x[m == 0].astype(np.float32))
    expect = x * (1 - m) + 63 / 255 * m
    np.testing.assert_allclose(out, expect, atol=1e-6)


def test_spatter_ladder_covers_more_each_step():
    area = [(C._spatter_mask(300, s, np.random.default_rng(s)) > 0).mean() for s in range(1, 6)]
    assert all(a < b for a, b in zip(area[:-1], area[1:], strict=True)), area


@pytest.mark.parametrize("name, mask", [("zigzag", C._zigzag_mask), ("dotted_line", None)])
def test_lines_add_light_only_on_their_mask(name, mask):
    x = _images(30) / 255.0
    out = C.CORRUPTIONS[name](x, 2, rng=5, max_value=1.0).astype(np.float64)
    mask = mask or C._dotted_mask
    z = mask(30, 2, np.random.default_rng(5))
    assert z.min() >= 0 and z.max() > 0
    np.testing.assert_allclose(out, np.minimum(x + z, 1.0), atol=1e-6)
    assert np.all(out[z == 0] == x[z == 0].astype(np.float32))
    assert np.all(out >= x.astype(np.float32))
    cols = np.nonzero(z.sum(axis=(0, 1)))[0]
    if name == "zigzag":  # from column 2 to column 25
        assert cols.min() >= 2 and cols.max() <= 25
    else:  # gaps on columns 0-1, 4-5, ..., 24-25 and column 27
        assert not set(cols) & ({0, 1, 27} | set(range(4, 26, 4)) | set(range(5, 26, 4)))


def test_fog_never_exceeds_the_image_maximum():
    x = _images(20) / 255.0
    x[0] = 0.0
    out = C.fog(x, 5, rng=2, max_value=1.0)
    peak = x.max(axis=(1, 2))
    assert np.all(out.max(axis=(1, 2)) <= peak + 1e-6)
    assert np.all(out[0] == 0)  # a black image stays black (MNIST-C's scaling by max(x))
    assert np.all(out >= (x * peak[:, None, None] / (peak[:, None, None] + 3.0)) - 1e-6)
    plasma = C._plasma_fractal(3, 1.4, np.random.default_rng(0))
    np.testing.assert_allclose(plasma.min(axis=(1, 2)), 0.0)
    np.testing.assert_allclose(plasma.max(axis=(1, 2)), 1.0)


@pytest.mark.parametrize("severity", [1, 5])
def test_contrast_keeps_the_mean_and_scales_the_spread(severity):
    x = _images(10).astype(np.float64)
    out = C.contrast(x, severity).astype(np.float64)
    c = C._CONTRAST[severity - 1]
    np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), c * x.std(axis=(1, 2)), rtol=1e-4)


# ------------------------------------------------------------------------ all corruptions


@pytest.mark.parametrize("name", sorted(C.CORRUPTIONS))
def test_contract_shapes_dtype_range_and_determinism(name):
    x = _images(3)
    fn = C.CORRUPTIONS[name]
    a = fn(x, 3, rng=np.random.default_rng(4))
    assert a.shape == (3, 28, 28) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(fn(x, 3, rng=4), a)  # int seed == Generator(seed)
    single = fn(x[0], 3, rng=4)
    assert single.shape == (28, 28)
    if name in RANDOM:
        assert not np.array_equal(fn(x, 3, rng=5), a)


def test_severity_moves_images_further(clean):
    for name in RANDOM + ["contrast"]:
        x = clean[:30] if name == "fog" else clean[:60]  # fog: 256x256 fractal per image
        dist = [np.abs(C.corrupt(x, name, s, rng=0) - x).mean() for s in range(1, 6)]
        assert all(a < b for a, b in zip(dist[:-1], dist[1:], strict=True)), (name, dist)


def test_mnist_c_severity_is_a_valid_step():
    assert set(C.MNIST_C_SEVERITY) == set(C.CORRUPTIONS)
    assert all(1 <= s <= 5 for s in C.MNIST_C_SEVERITY.values())


def test_bad_inputs_raise():
    x = _images(2)
    with pytest.raises(ValueError, match=r"shot_noise: images must have shape"):
        C.shot_noise(x[:, :27], rng=0)
    with pytest.raises(ValueError, match="images must have shape"):
        C.spatter(x[None], rng=0)
    with pytest.raises(ValueError, match="NaN"):
        C.fog(np.full((28, 28), np.nan), rng=0)
    with pytest.raises(ValueError, match=r"\[0, max_value=1\]"):
        C.zigzag(x.astype(np.float64), rng=0, max_value=1.0)
    with pytest.raises(ValueError, match="values must lie"):
        C.contrast(-x.astype(np.float64) - 1)
    with pytest.raises(ValueError, match="uint8 images need max_value=255"):
        C.glass_blur(x, rng=0, max_value=1.0)
    with pytest.raises(ValueError, match="max_value must be positive"):
        C.motion_blur(x, rng=0, max_value=0.0)
    with pytest.raises(ValueError, match="severity must be in 1..5"):
        C.impulse_noise(x, 6, rng=0)
    with pytest.raises(TypeError, match="severity must be an integer"):
        C.impulse_noise(x, 2.0, rng=0)
    with pytest.raises(TypeError, match="severity must be an integer"):
        C.impulse_noise(x, True, rng=0)
    with pytest.raises(TypeError, match="rng must be an int seed"):
        C.shot_noise(x, rng=None)
    with pytest.raises(TypeError, match="dtype"):
        C.shot_noise(x.astype(bool), rng=0)
    with pytest.raises(ValueError, match="corruption must be one of"):
        C.corrupt(x, "snow", rng=0)


# ---------------------------------------------------------------------------------- loader


def test_loader_from_idx_files(tmp_path):
    imgs = _images(12, seed=3)
    labels = np.arange(12, dtype=np.uint8) % 10
    datasets.write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    datasets.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    x, y = datasets.load_corrupted_fashion_mnist("impulse_noise", seed=9, path=tmp_path)
    assert x.dtype == np.uint8 and x.shape == (12, 28, 28)
    np.testing.assert_array_equal(y, labels)
    expect = C.impulse_noise(imgs, C.MNIST_C_SEVERITY["impulse_noise"], rng=9)
    np.testing.assert_array_equal(x, np.rint(expect).astype(np.uint8))
    x2, _ = datasets.load_corrupted_fashion_mnist("impulse_noise", 4, seed=9, path=tmp_path)
    np.testing.assert_array_equal(x2, x)
    x3, y3 = datasets.load_corrupted_fashion_mnist("identity", path=tmp_path, num=5)
    np.testing.assert_array_equal(x3, imgs[:5])
    assert y3.shape == (5,)
    with pytest.raises(ValueError, match="corruption must be one of"):
        datasets.load_corrupted_fashion_mnist("frost", path=tmp_path)
    with pytest.raises(ValueError, match="num must be a positive integer"):
        datasets.load_corrupted_fashion_mnist("fog", path=tmp_path, num=0)


@needs_fashion
def test_loader_on_fashion_mnist():
    x, y = datasets.load_corrupted_fashion_mnist("shot_noise", seed=1, num=200)
    clean, labels = datasets.load_fashion_mnist("test")
    np.testing.assert_array_equal(y, labels[:200])
    assert x.shape == (200, 28, 28) and not np.array_equal(x, clean[:200])
    assert np.all(x[clean[:200] == 0] == 0)  # shot noise keeps the black background
