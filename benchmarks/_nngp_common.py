"""Shared by the NNGP benchmark scripts (not a benchmark itself: ``run_all.py`` skips ``_*``)."""

import math

import numpy as np
from threadpoolctl import threadpool_limits

from bayesnn.nn import stax

#: The kernel of the scale-mixture experiments (Lee et al., ICLR 2022): ReLU MLP with two
#: hidden layers, W_std = 1.5, b_std = 0.05, unit readout without bias.
ARCH = stax.serial(
    stax.Dense(512, 1.5, 0.05),
    stax.Relu(),
    stax.Dense(512, 1.5, 0.05),
    stax.Relu(),
    stax.Dense(1, 1.0, None),
)


def add_blas_threads_argument(parser):
    """Add ``--blas-threads`` (default 1) to an ``argparse`` parser."""
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="OpenBLAS/LAPACK threads (CPU Cholesky/eigh); more threads spin and slow down "
        "a shared, loaded machine by 10-100x",
    )


def limit_blas_threads(args):
    """Apply ``--blas-threads`` for the rest of the process."""
    threadpool_limits(args.blas_threads, user_api="blas")


def gp_type2(K, Y, etas):
    """Profile type-II ML of ``N(Y; 0, s (K + eta I))`` over ``eta`` in ``etas``.

    ``Y`` is ``(n,)`` or ``(n, C)`` (the columns share ``s`` and ``eta``); for each ``eta``
    the scale has its closed-form maximiser ``s = tr(Y^T (K + eta I)^-1 Y) / (nC)``. One
    eigendecomposition of ``K`` serves the whole grid. Returns ``(s, eta)``.
    """
    Y = np.asarray(Y).reshape(len(Y), -1)
    lam, U = np.linalg.eigh(np.asarray(K))
    r2 = np.sum((U.T @ Y) ** 2, axis=1)
    n, c = Y.shape
    best = None
    for eta in etas:
        s = np.sum(r2 / (lam + eta)) / (n * c)
        ll = -0.5 * n * c * math.log(2 * math.pi * s) - 0.5 * c * np.sum(np.log(lam + eta))
        if best is None or ll > best[0]:
            best = (ll, s, eta)
    return best[1], best[2]
