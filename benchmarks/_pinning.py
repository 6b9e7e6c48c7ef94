"""Pin a timed benchmark process to one CPU core (not a benchmark: ``run_all.py`` skips ``_*``).

XLA sizes its CPU thread pool from the process's affinity mask, so an unpinned run on a
2-core machine spins a second thread and counts it in the CPU time. Pinning must happen
before JAX is imported; ``intra_op_parallelism_threads`` is not an XLA flag and is never
set here. ``BAYESNN_PIN_CORE`` picks the core (default: core 0, or the lowest allowed core).
"""

import os


def pin_to_one_core() -> int:
    """Pin this process to one core before JAX starts; return the core's number.

    Also sets ``--xla_cpu_multi_thread_eigen=false`` in ``XLA_FLAGS`` (Eigen's own thread
    pool, a real XLA flag). Raises ``RuntimeError`` if JAX was imported first, since its
    thread pool would already be sized.
    """
    import sys

    if "jax" in sys.modules:
        raise RuntimeError("pin_to_one_core() must run before jax is imported")
    allowed = os.sched_getaffinity(0)
    core = int(os.environ.get("BAYESNN_PIN_CORE", 0 if 0 in allowed else min(allowed)))
    os.sched_setaffinity(0, {core})
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    return core
