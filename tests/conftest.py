import os

# Several simulated CPU devices, so sharding code paths run on CPU; set before jax imports.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# The tests check float32 arithmetic; on GPUs XLA's default float32 matmul is TF32 (~1e-3).
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def rng_key():
    return jax.random.key(0)
