"""Pin a timed benchmark process to one CPU core (not a benchmark: ``run_all.py`` skips ``_*``).

XLA sizes its CPU thread pool from the process's affinity mask, so an unpinned run on a
2-core machine spins a second thread and counts it in the CPU time. Pinning must happen
before JAX is imported; ``intra_op_parallelism_threads`` is not an XLA flag and is never
set here.

The core: ``BAYESNN_PIN_CORE`` when set; else the caller's core when the process is already
restricted to one (``taskset -c 1 python benchmarks/...`` stays on core 1); else core 0, or
the lowest allowed core. Two benchmarks started side by side (the smoke tests under
pytest-xdist) therefore do not share core 0.
"""

import os


def chosen_core() -> int:
    """The core :func:`pin_to_one_core` pins to (module docstring)."""
    allowed = os.sched_getaffinity(0)
    if "BAYESNN_PIN_CORE" in os.environ:
        return int(os.environ["BAYESNN_PIN_CORE"])
    if len(allowed) == 1:
        return next(iter(allowed))
    return 0 if 0 in allowed else min(allowed)


def share_chosen_core() -> int:
    """Export :func:`chosen_core` as ``BAYESNN_PIN_CORE`` so that child processes (JAX or
    PyTorch workers of one benchmark) pin to the same core; return it."""
    core = chosen_core()
    os.environ["BAYESNN_PIN_CORE"] = str(core)
    return core


def pin_to_one_core() -> int:
    """Pin this process to one core before JAX starts; return the core's number.

    Also sets ``--xla_cpu_multi_thread_eigen=false`` in ``XLA_FLAGS`` (Eigen's own thread
    pool, a real XLA flag). Raises ``RuntimeError`` if JAX was imported first, since its
    thread pool would already be sized.
    """
    import sys

    if "jax" in sys.modules:
        raise RuntimeError("pin_to_one_core() must run before jax is imported")
    core = chosen_core()
    os.sched_setaffinity(0, {core})
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    return core
