"""Shared by the NNGP benchmark scripts (not a benchmark itself: ``run_all.py`` skips ``_*``)."""

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
