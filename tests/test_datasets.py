"""Tests for bayesnn.datasets: UCI loading and splits, IDX files, images, toy sets."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from bayesnn import datasets
from bayesnn.datasets import (
    load_digits,
    load_fashion_mnist,
    load_uci,
    make_gap_regression,
    make_linear_regression,
    make_random_gap,
    make_regression_1d,
    num_splits,
    rbf_gp_sample,
    read_idx,
    uci_names,
    unstandardize,
    unstandardize_variance,
    write_idx,
)

SHARED_UCI = Path(__file__).parents[2] / "shared/data/uci"
needs_shared = pytest.mark.skipif(not SHARED_UCI.is_dir(), reason="shared UCI folder absent")
FASHION_DIR = Path(os.environ.get("BAYESNN_FASHION_MNIST") or datasets.DEFAULT_FASHION_MNIST_DIR)


def _raw(name):
    return load_uci(name, 0, standardize=False, dtype=np.float64)


@pytest.mark.parametrize(
    "name, n, d",
    [
        ("yacht", 308, 6),
        ("energy", 768, 8),
        ("concrete", 1030, 8),
        ("wine-quality-red", 1599, 11),
        ("bostonHousing", 506, 13),
    ],
)
def test_shipped_shapes(name, n, d):
    s = load_uci(name, split=0)
    n_test = int(round(0.1 * n))
    assert s.x_train.shape == (n - n_test, d) and s.y_train.shape == (n - n_test, 1)
    assert s.x_test.shape == (n_test, d) and s.y_test.shape == (n_test, 1)
    assert s.x_train.dtype == np.float32 and s.name == name and s.split == 0
    assert s.x_mean.shape == (d,) and s.y_std.shape == (1,)
    assert all(np.isfinite(a).all() for a in s[:8])


def test_no_split_files_shipped():
    root = Path(datasets.uci.__file__).parent / "data"
    shipped = sorted(p.name for p in root.iterdir())
    assert shipped == sorted(datasets.SHIPPED_UCI)
    for folder in root.iterdir():
        names = {p.name for p in folder.iterdir()}
        assert names == {"data.txt", "index_features.txt", "index_target.txt"}
    assert uci_names() == sorted(datasets.SHIPPED_UCI)
    assert "bostonHousing" in uci_names()
    assert "ethical" in load_uci.__doc__


def test_standardisation_uses_training_statistics_only():
    s = load_uci("concrete", split=3)
    raw = load_uci("concrete", split=3, standardize=False, dtype=np.float64)
    np.testing.assert_allclose(s.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(s.y_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.x_mean, raw.x_train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(s.y_std, raw.y_train.std(0), rtol=1e-6)
    # Test part uses the training statistics, so it is not exactly centred.
    np.testing.assert_allclose(
        s.x_test, (raw.x_test - raw.x_train.mean(0)) / raw.x_train.std(0), rtol=1e-4, atol=1e-5
    )
    assert np.abs(s.x_test.mean(0)).max() > 1e-3
    np.testing.assert_allclose(unstandardize(s.y_test, s.y_mean, s.y_std), raw.y_test, rtol=1e-5)
    var = unstandardize_variance(np.ones((2, 5, 1)), s.y_std)
    np.testing.assert_allclose(var, np.broadcast_to(s.y_std**2, (2, 5, 1)), rtol=1e-6)
    assert unstandardize(np.zeros((3, 4, 1)), s.y_mean, s.y_std).shape == (3, 4, 1)


def test_seeded_split_reproducible_disjoint_and_covering():
    a, b = (
        load_uci("yacht", 2, seed=7, standardize=False),
        load_uci("yacht", 2, seed=7, standardize=False),
    )
    for u, v in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(u, v)
    other = load_uci("yacht", 3, seed=7, standardize=False)
    assert not np.array_equal(a.y_test, other.y_test)
    raw = np.loadtxt(Path(datasets.uci.__file__).parent / "data/yacht/data.txt")
    full = np.concatenate([a.x_train, a.x_test])
    full_y = np.concatenate([a.y_train, a.y_test])
    # Train and test partition the data: the multiset of rows is the original one.
    got = np.sort(np.concatenate([full, full_y], 1).view([("", np.float32)] * 7).ravel())
    want = np.sort(raw.astype(np.float32).view([("", np.float32)] * 7).ravel())
    np.testing.assert_array_equal(got, want)
    sa = load_uci("yacht", 0, test_fraction=0.25)
    assert sa.x_test.shape[0] == 77


@needs_shared
def test_standard_split_reading():
    names = uci_names(SHARED_UCI)
    assert len(names) == 9 and "kin8nm" in names
    assert num_splits("protein", SHARED_UCI) == 5 and num_splits("yacht", SHARED_UCI) == 20
    s = load_uci("yacht", 5, root=SHARED_UCI, standardize=False, dtype=np.float64)
    data = np.loadtxt(SHARED_UCI / "yacht/data.txt")
    tr = np.loadtxt(SHARED_UCI / "yacht/index_train_5.txt").astype(int)
    te = np.loadtxt(SHARED_UCI / "yacht/index_test_5.txt").astype(int)
    assert not set(tr) & set(te) and len(tr) + len(te) == data.shape[0]
    np.testing.assert_array_equal(s.x_train, data[tr][:, :6])
    np.testing.assert_array_equal(s.y_test, data[te][:, 6:7])
    # naval has constant columns (one of them constant only up to rounding): std -> 1.
    nav = load_uci("naval", 0, root=SHARED_UCI)
    assert np.isfinite(nav.x_test).all() and np.abs(nav.x_test).max() < 50
    assert np.sum(nav.x_std == 1.0) >= 2


def test_uci_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown UCI data set.*yacht"):
        load_uci("nope")
    with pytest.raises(ValueError, match="split=20 out of range"):
        load_uci("yacht", 20)
    with pytest.raises(ValueError, match="split=-1"):
        load_uci("yacht", -1)
    with pytest.raises(ValueError, match="test_fraction"):
        load_uci("yacht", test_fraction=1.5)
    with pytest.raises(FileNotFoundError, match="root"):
        load_uci("yacht", root=tmp_path / "missing")
    bad = tmp_path / "toy"
    bad.mkdir()
    (bad / "data.txt").write_text("1 2 3\n4 nan 6\n\n7 8 9\n")
    (bad / "index_features.txt").write_text("0\n1\n")
    (bad / "index_target.txt").write_text("2\n")
    (bad / "n_splits.txt").write_text("1\n")
    with pytest.raises(ValueError, match="NaN"):
        load_uci("toy", root=tmp_path)
    (bad / "data.txt").write_text("1 2 3\n4 5 6\n\n7 8 9\n")
    with pytest.raises(FileNotFoundError, match="index_train_0"):
        load_uci("toy", root=tmp_path)
    (bad / "index_train_0.txt").write_text("0\n2\n")
    (bad / "index_test_0.txt").write_text("1\n")
    s = load_uci("toy", root=tmp_path, standardize=False)  # blank row skipped
    np.testing.assert_array_equal(s.y_train[:, 0], [3, 9])
    (bad / "index_test_0.txt").write_text("3\n")
    with pytest.raises(ValueError, match="test indices out of range"):
        load_uci("toy", root=tmp_path)
    (bad / "data.txt").write_text("1 2 3\n4 5\n")
    with pytest.raises(ValueError, match="columns"):
        load_uci("toy", root=tmp_path)


def test_uci_bad_files_and_dtype(tmp_path):
    """Malformed numbers name the file and line; overlapping or repeated split indices and
    integer dtypes (z-scores would be truncated) raise."""
    toy = tmp_path / "toy"
    toy.mkdir()
    (toy / "data.txt").write_text("1 2 3\n4 5 6\n7 8 9\n")
    (toy / "index_features.txt").write_text("0\n1\n")
    (toy / "index_target.txt").write_text("2\n")
    (toy / "n_splits.txt").write_text("1\n")
    (toy / "index_train_0.txt").write_text("0\n1\n")
    (toy / "index_test_0.txt").write_text("1\n2\n")
    with pytest.raises(ValueError, match="overlap in 1 rows"):
        load_uci("toy", root=tmp_path)
    (toy / "index_test_0.txt").write_text("2\n2\n")
    with pytest.raises(ValueError, match="more than once"):
        load_uci("toy", root=tmp_path)
    (toy / "index_test_0.txt").write_text("2\n")
    s = load_uci("toy", root=tmp_path)
    assert s.x_train.dtype == np.float32
    for dtype in (np.int32, int, "int64", np.bool_):
        with pytest.raises(ValueError, match="floating dtype"):
            load_uci("toy", root=tmp_path, dtype=dtype)
    (toy / "data.txt").write_text("1 2 3\n4 5,0 6\n7 8 9\n")
    with pytest.raises(ValueError, match=r"data.txt' line 2: malformed number '5,0'"):
        load_uci("toy", root=tmp_path)
    (toy / "data.txt").write_text("1 2 3\n4 5 6\n7 8 9\n")
    (toy / "index_train_0.txt").write_text("0\nx1\n")
    with pytest.raises(ValueError, match=r"index_train_0.txt' line 2: malformed index 'x1'"):
        load_uci("toy", root=tmp_path)


@pytest.mark.parametrize(
    "dtype, compress", [(np.uint8, True), (np.int32, False), (np.float32, True)]
)
def test_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    arr = (rng.random((5, 3, 4)) * 100).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, arr)
    with open(path, "rb") as fh:
        assert (fh.read(2) == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_idx_errors(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="magic"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x08\x02" + (3).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="payload"):
        read_idx(p)
    with gzip.open(tmp_path / "t.gz", "wb") as fh:
        fh.write(b"\x00\x00")
    with pytest.raises(ValueError, match="too short"):
        read_idx(tmp_path / "t.gz")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.complex64))


def test_fashion_mnist_from_custom_folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    x, y = load_fashion_mnist("test", path=tmp_path)
    np.testing.assert_array_equal(x, imgs)
    assert y.dtype == np.int32 and np.array_equal(y, labels)
    monkeypatch.setenv("BAYESNN_FASHION_MNIST", str(tmp_path))
    assert load_fashion_mnist("test")[0].shape == (7, 28, 28)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train")
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("valid")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:5])
    with pytest.raises(ValueError, match="labels"):
        load_fashion_mnist("test")
    bad_labels = labels.copy()
    bad_labels[3] = 10
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", bad_labels)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.*labels must be in 0..9"):
        load_fashion_mnist("test")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    full = gz.read_bytes()
    gz.write_bytes(full[: len(full) // 2])  # truncated gzip stream
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz.*corrupt or truncated"):
        load_fashion_mnist("test")
    gz.write_bytes(full[:20] + bytes(b ^ 0xFF for b in full[20:40]) + full[40:])  # corrupt
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz.*corrupt or truncated"):
        load_fashion_mnist("test")


@pytest.mark.skipif(
    not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").is_file(), reason="dataset-fashion-mnist"
)
def test_fashion_mnist_installed():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 1000))


def test_digits():
    x, y = load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int32
    assert x.min() == 0 and x.max() == 16 and set(np.unique(y)) == set(range(10))


def test_gap_regression_fixture():
    d = make_gap_regression(seed=1)
    assert d.x_train.shape == (64, 1) and d.y_train.shape == (64, 1)
    assert d.x_test.shape == (100, 1) and d.f_test.shape == (100, 1)
    x = np.sort(d.x_train[:, 0])
    assert -10 <= x.min() and x.max() <= 10
    # A gap of 40% of the sample range has no point.
    assert np.diff(x).max() >= 0.4 * (x.max() - x.min()) - 1e-5
    np.testing.assert_allclose(d.x_test[[0, -1], 0], [-15, 15])
    again = make_gap_regression(seed=1)
    np.testing.assert_array_equal(d.y_train, again.y_train)
    assert not np.array_equal(d.y_train, make_gap_regression(seed=2).y_train)


def test_random_gap_and_gp_sample():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 500)
    x2, (ga, gb) = make_random_gap(x, 0.3, seed=3)
    assert not np.any((x2 > ga) & (x2 < gb))
    assert np.isclose(gb - ga, 0.3 * (x.max() - x.min()))
    outside = ~((x > ga) & (x < gb))
    np.testing.assert_array_equal(x2[outside], x[outside])  # input untouched outside the gap
    # GP draws: empirical covariance of many draws matches the RBF kernel.
    pts = np.array([[0.0], [1.0]])
    draws = np.stack(
        [rbf_gp_sample(pts, amplitude=1.6, lengthscale=1.8, seed=s) for s in range(3000)]
    )
    cov = np.cov(draws[:, :, 0].T)
    want = 1.6**2 * np.exp(-0.5 / 1.8**2)
    se = 1.6**2 * np.sqrt(2 / 3000)
    assert abs(cov[0, 1] - want) < 4 * se and abs(cov[0, 0] - 1.6**2) < 4 * se


def test_simple_regression_sets():
    d = make_regression_1d("cubic", 50, noise_std=0.0, seed=0)
    np.testing.assert_allclose(d.y_train, d.x_train**3 / 8, rtol=1e-5)
    assert d.x_test.shape == (200, 1)
    data, w = make_linear_regression(2000, 3, noise_std=0.5, seed=0)
    w_ls = np.linalg.lstsq(data.x_train, data.y_train, rcond=None)[0]
    np.testing.assert_allclose(w_ls, w, atol=5 * 0.5 / np.sqrt(2000))
    resid = data.y_train - data.x_train @ w
    assert abs(resid.std() - 0.5) < 0.05


def test_toy_errors():
    with pytest.raises(ValueError, match="gap_ratio"):
        make_random_gap(np.arange(5.0), 1.2)
    with pytest.raises(ValueError, match="x holds NaN"):
        make_random_gap(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="kind"):
        make_regression_1d("nope")
    with pytest.raises(ValueError, match="noise_var"):
        make_gap_regression(noise_var=0.0)
    with pytest.raises(ValueError, match="lengthscale"):
        rbf_gp_sample(np.zeros((2, 1)), lengthscale=-1.0)
    with pytest.raises(ValueError, match="seed"):
        make_regression_1d(seed=1.5)
