"""Short masked training of an mDBM on sklearn digits: joint classification and completion."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bayesnn import boltzmann as bm
from bayesnn.datasets import load_digits

NUM_BINS = 4
CONFIG = bm.SolverConfig(fallback=None)  # no fallback branch to compile (not needed here)


def _train_on_digits(tmp_path, num_hidden, learning_rate, bias_init=False, config=None, **kw):
    """Three epochs on 1500 binned digits; returns what the assertions need."""
    images, labels = load_digits()
    pixels = np.asarray(bm.bin_images(images, NUM_BINS, 16.0))
    perm = np.random.default_rng(0).permutation(len(labels))
    tr, te = perm[:1500], perm[1500:]  # steps are cheap; compiling the step is the cost
    spec = bm.fully_connected_spec(64, NUM_BINS, num_hidden=num_hidden, num_classes=10)
    params = bm.init_params(jax.random.key(0), spec)
    if bias_init:  # pixel biases = log bin frequencies: start at the per-pixel marginals
        freq = np.stack([np.bincount(c, minlength=NUM_BINS) for c in pixels[tr].T]) + 1.0
        b0 = np.log(freq / freq.sum(1, keepdims=True))
        params = params._replace(b=(jnp.asarray(b0, jnp.float32),) + params.b[1:])
    ckpt = tmp_path / "mdbm.npz"
    state, hist = bm.fit(
        jax.random.key(1),
        spec,
        params,
        pixels[tr],
        labels[tr],
        num_epochs=3,
        batch_size=50,
        optimizer=optax.adam(learning_rate),
        training=bm.TrainingConfig(m=0.05, **kw),
        config=bm.SolverConfig() if config is None else config,
        checkpoint_path=str(ckpt),
    )
    return state, hist, spec, pixels[te], labels[te], ckpt


def test_quick_training_on_digits_beats_chance(tmp_path):
    """Few images and steps: classification clearly above chance, checkpoint, classify()."""
    state, hist, spec, x_te, y_te, ckpt = _train_on_digits(
        tmp_path,
        24,
        3e-2,
        config=CONFIG,
        focal_gamma=2.0,
        class_weights="balanced",
        hidden_fraction=0.5,
    )
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[0]["pixel_loss"] < hist[0]["pixel_ce"]  # focal (gamma = 2) < CE
    coupling = bm.monotone_coupling(state.params, spec, 0.05)
    assert bm.check_monotone(coupling, spec, 0.05)
    probs, info = bm.classify(coupling, spec, jnp.asarray(x_te), config=CONFIG)
    acc = float(jnp.mean(jnp.argmax(probs, -1) == y_te))
    assert acc > 0.3, acc  # chance 0.1 (s.e. 0.017 on 297 images)
    assert bool(jnp.all(info.converged))
    back = bm.load_checkpoint(ckpt, state)
    np.testing.assert_array_equal(back.params.A[0][0], state.params.A[0][0])


@pytest.mark.slow
def test_short_training_on_digits_beats_chance(tmp_path):
    state, hist, spec, x_te, y_te, ckpt = _train_on_digits(
        tmp_path, 48, 2e-2, bias_init=True, hidden_fraction=(0.0, 0.9)
    )
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["fallback"] == 0.0 and hist[-1]["converged"] == 1.0
    coupling = bm.monotone_coupling(state.params, spec, 0.05)
    assert bm.check_monotone(coupling, spec, 0.05)
    images, _ = load_digits()
    tr = np.random.default_rng(0).permutation(len(images))[:1500]
    tr_pix = np.asarray(bm.bin_images(images, NUM_BINS, 16.0))[tr]
    mode = np.array([np.bincount(c, minlength=NUM_BINS).argmax() for c in tr_pix.T])
    res = bm.evaluate(
        jax.random.key(2), coupling, spec, x_te, y_te, (0.0, 0.5), batch_size=297, baseline=mode
    )
    # the per-pixel-mode baseline is not beaten (0.60-0.65 vs 0.68 bin accuracy): the monotone
    # constraint bounds the mean-field covariance by 1/(1+m) (bm.linear_response; conclusion
    # of benchmarks/results/mdbm.md). Check that the comparison runs and completion is close
    assert res[0.5]["pixel_accuracy"] > res[0.5]["baseline_pixel_accuracy"] - 0.1, res
    assert res[0.0]["accuracy"] > 0.5, res  # chance 0.1
    assert res[0.5]["accuracy"] > 0.35, res
    # completion improves clearly on the untrained model (same masks: same key)
    init = bm.evaluate(
        jax.random.key(2),
        bm.monotone_coupling(bm.init_params(jax.random.key(0), spec), spec, 0.05),
        spec,
        x_te,
        y_te,
        (0.0, 0.5),
        batch_size=297,
    )
    assert res[0.5]["pixel_accuracy"] > init[0.5]["pixel_accuracy"] + 0.05, (res, init)
    assert res[0.5]["mse"] < 0.8 * init[0.5]["mse"], (res, init)
    assert res[0.5]["converged"] == 1.0
    back = bm.load_checkpoint(ckpt, state)
    np.testing.assert_array_equal(back.params.A[0][0], state.params.A[0][0])
    # classify() on fully observed images agrees with the evaluation accuracy
    probs, _ = bm.classify(coupling, spec, jnp.asarray(x_te))
    acc = float(jnp.mean(jnp.argmax(probs, -1) == y_te))
    assert abs(acc - res[0.0]["accuracy"]) < 1e-6
