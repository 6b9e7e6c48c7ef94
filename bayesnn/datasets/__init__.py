"""Data sets, never downloaded: UCI regression, Fashion-MNIST (IDX), digits, toy sets, MNIST-C
corruptions."""

from bayesnn.datasets.corruptions import (
    CORRUPTIONS,
    MNIST_C_SEVERITY,
    corrupt,
    load_corrupted_fashion_mnist,
)
from bayesnn.datasets.images import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    load_digits,
    load_fashion_mnist,
    read_idx,
    write_idx,
)
from bayesnn.datasets.toy import (
    ToyRegression,
    make_gap_regression,
    make_linear_regression,
    make_random_gap,
    make_regression_1d,
    rbf_gp_sample,
)
from bayesnn.datasets.uci import (
    SHIPPED_UCI,
    STANDARD_UCI,
    UCISplit,
    load_uci,
    num_splits,
    uci_names,
    unstandardize,
    unstandardize_variance,
)

__all__ = [
    "CORRUPTIONS",
    "MNIST_C_SEVERITY",
    "corrupt",
    "load_corrupted_fashion_mnist",
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "SHIPPED_UCI",
    "STANDARD_UCI",
    "ToyRegression",
    "UCISplit",
    "load_digits",
    "load_fashion_mnist",
    "load_uci",
    "make_gap_regression",
    "make_linear_regression",
    "make_random_gap",
    "make_regression_1d",
    "num_splits",
    "rbf_gp_sample",
    "read_idx",
    "uci_names",
    "unstandardize",
    "unstandardize_variance",
    "write_idx",
]
