import os

# Tests are dominated by XLA:CPU compilation of small programs: compile with less
# optimisation, with the classic elemental emitters instead of the fusion emitters, and without
# splitting the LLVM module for parallel codegen (benchmarks/compile_flags.py measures what the
# last two buy; the flags change code generation, not semantics).
COMPILE_FAST_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
    "--xla_cpu_parallel_codegen_split_count=1"
)
# Several simulated CPU devices, so sharding code paths run on CPU; set before jax imports.
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {COMPILE_FAST_XLA_FLAGS}"
)
os.environ.setdefault("MPLBACKEND", "Agg")
# One BLAS thread per test process: pytest-xdist already runs a process per core, and
# OpenBLAS threads spinning against each other made small Choleskys ~80x slower on 2 cores.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402
import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(1, user_api="blas")  # in case numpy was imported before this file
jax.config.update("jax_numpy_rank_promotion", "raise")
# The tests check float32 arithmetic; on GPUs XLA's default float32 matmul is TF32 (~1e-3).
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def rng_key():
    return jax.random.key(0)


# The longest tests (each a fresh process or a long run, 10-45 s CPU) go first, so that
# pytest-xdist's load scheduling packs them at the start and the run does not end on one busy
# worker. Only modules without module-scoped fixtures are moved (a moved item would set them
# up twice).
_LONG_FIRST = (
    "test_notebooks.py::test_notebook_executes",
    "test_gold_standard.py::",
    "test_benchmarks_smoke.py::test_benchmark_smoke",
    "test_boltzmann_train.py::test_quick_training",
)


def _rank(item):
    """Index of the first pattern of ``_LONG_FIRST`` in the item's id (longest first), or
    ``len(_LONG_FIRST)``: the other items keep their order after them (a stable sort)."""
    return next((i for i, p in enumerate(_LONG_FIRST) if p in item.nodeid), len(_LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)
