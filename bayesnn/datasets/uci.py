"""UCI regression benchmarks: shipped data files, seeded splits, standard split folders.

Five small sets ship inside the package (``yacht``, ``energy``, ``concrete``,
``wine-quality-red`` and, for comparison with published tables only, ``bostonHousing``).
All nine sets of the standard benchmark (Hernández-Lobato & Adams 2015; Gal & Ghahramani
2016) can be read from a folder in the standard layout::

    <root>/<name>/data.txt              whitespace-separated numbers, one row per example
    <root>/<name>/index_features.txt    0-based input columns
    <root>/<name>/index_target.txt      0-based target column
    <root>/<name>/index_train_K.txt     0-based training rows of split K
    <root>/<name>/index_test_K.txt      0-based test rows of split K
    <root>/<name>/n_splits.txt          number of splits (optional)

Data: UCI Machine Learning Repository (CC BY 4.0); cite the repository and the original
donors. The standard split files are not shipped (their packaging is CC BY-NC 4.0); with
``root=None`` the splits are generated from a seed instead.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "UCISplit",
    "SHIPPED_UCI",
    "STANDARD_UCI",
    "load_uci",
    "uci_names",
    "num_splits",
    "unstandardize",
    "unstandardize_variance",
]

#: Data sets shipped inside the package (``bostonHousing`` for comparison only).
SHIPPED_UCI = ("yacht", "energy", "concrete", "wine-quality-red", "bostonHousing")

#: The nine sets of the standard benchmark and their number of standard splits.
STANDARD_UCI = {
    "bostonHousing": 20,
    "concrete": 20,
    "energy": 20,
    "kin8nm": 20,
    "naval-propulsion-plant": 20,
    "power-plant": 20,
    "protein-tertiary-structure": 5,
    "wine-quality-red": 20,
    "yacht": 20,
}

_ALIASES = {
    "boston": "bostonHousing",
    "boston-housing": "bostonHousing",
    "boston_housing": "bostonHousing",
    "housing": "bostonHousing",
    "wine": "wine-quality-red",
    "wine-red": "wine-quality-red",
    "naval": "naval-propulsion-plant",
    "power": "power-plant",
    "protein": "protein-tertiary-structure",
}


class UCISplit(NamedTuple):
    """One train/test split of a UCI regression set.

    Attributes
    ----------
    x_train, y_train, x_test, y_test
        Inputs ``(n, d)`` and targets ``(n, 1)``; standardised when ``load_uci`` was called
        with ``standardize=True`` (the default), else raw.
    x_mean, x_std, y_mean, y_std
        Training-set statistics ``(d,)`` and ``(1,)`` (zeros/ones when not standardised).
        Original units: ``y = y_std * y_standardised + y_mean``.
    name
        Canonical data set name.
    split
        Split index.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    name: str
    split: int


def _shipped_root() -> Path:
    return Path(str(resources.files("bayesnn.datasets") / "data"))


def _canonical(name: str, available: list[str]) -> str:
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {type(name).__name__}")
    if name in available:
        return name
    alias = _ALIASES.get(name.lower())
    if alias in available:
        return alias
    lowered = {a.lower(): a for a in available}
    if name.lower() in lowered:
        return lowered[name.lower()]
    raise ValueError(
        f"unknown UCI data set name {name!r}; available: {', '.join(sorted(available))}"
    )


def _resolve_root(root) -> Path | None:
    if root is None:
        return None
    root = Path(os.fspath(root)).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"root: UCI data folder {str(root)!r} does not exist")
    return root


def uci_names(root=None) -> list[str]:
    """Names of the UCI regression sets available.

    Parameters
    ----------
    root
        ``None`` for the sets shipped with the package, or a folder in the standard layout
        (one sub-folder per set holding ``data.txt``).

    Returns
    -------
    Sorted list of canonical names (aliases such as ``"boston"`` are also accepted by
    :func:`load_uci`).
    """
    root_path = _resolve_root(root)
    if root_path is None:
        return sorted(SHIPPED_UCI)
    return sorted(p.name for p in root_path.iterdir() if (p / "data.txt").is_file())


def num_splits(name: str, root=None) -> int:
    """Number of train/test splits of a data set.

    With ``root`` in the standard layout this is ``n_splits.txt`` (or the number of
    ``index_train_K.txt`` files); with ``root=None`` the seeded splits mirror the standard
    protocol: 20 splits (5 for ``protein-tertiary-structure``).

    Parameters
    ----------
    name
        Data set name (see :func:`uci_names`).
    root
        ``None`` or a folder in the standard layout.
    """
    root_path = _resolve_root(root)
    name = _canonical(name, uci_names(root))
    if root_path is None:
        return STANDARD_UCI.get(name, 20)
    folder = root_path / name
    n_file = folder / "n_splits.txt"
    if n_file.is_file():
        return int(float(n_file.read_text().split()[0]))
    count = 0
    while (folder / f"index_train_{count}.txt").is_file():
        count += 1
    if count == 0:
        raise FileNotFoundError(
            f"root: no split files (index_train_K.txt / n_splits.txt) in {str(folder)!r}"
        )
    return count


def _read_table(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"UCI data file {str(path)!r} is missing")
    rows = []
    width = None
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if width is None:
                width = len(fields)
            elif len(fields) != width:
                raise ValueError(
                    f"{str(path)!r} line {lineno}: {len(fields)} columns, expected {width}"
                )
            try:
                rows.append([float(v) for v in fields])
            except ValueError:
                bad = next(v for v in fields if not _is_number(v))
                raise ValueError(
                    f"{str(path)!r} line {lineno}: malformed number {bad!r}"
                ) from None
    if not rows:
        raise ValueError(f"{str(path)!r} holds no data rows")
    return np.asarray(rows, dtype=np.float64)


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _read_indices(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"UCI index file {str(path)!r} is missing")
    values = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            for v in line.split():
                if not _is_number(v):
                    raise ValueError(f"{str(path)!r} line {lineno}: malformed index {v!r}")
                values.append(float(v))
    values = np.asarray(values, dtype=np.float64)
    if values.size and not np.all(np.isfinite(values)):
        raise ValueError(f"{str(path)!r} holds NaN or inf indices")
    idx = values.astype(np.int64)
    if values.size and not np.array_equal(idx, values):
        raise ValueError(f"{str(path)!r} holds non-integer indices")
    return idx


def unstandardize(y, mean, std):
    r"""Map standardised values back to original units: :math:`y = \sigma z + \mu`.

    Works on predictions of any leading shape, e.g. per-sample predictive means
    ``(S, n, 1)``, as long as the trailing axis matches ``mean``/``std`` ``(d,)``.

    Parameters
    ----------
    y
        Standardised values ``(..., d)``.
    mean, std
        The statistics returned in :class:`UCISplit` (``y_mean``, ``y_std``).
    """
    mean = np.asarray(mean)
    std = np.asarray(std)
    if np.ndim(y) < 1 or np.shape(y)[-1] != std.shape[-1]:
        raise ValueError(
            f"y: trailing axis {np.shape(y)} does not match the statistics' shape {std.shape}"
        )
    pad = (None,) * (np.ndim(y) - 1)
    return y * std[pad] + mean[pad]


def unstandardize_variance(var, std):
    r"""Map a variance in standardised units back to original units: :math:`\sigma^2 v`.

    Parameters
    ----------
    var
        Variances ``(..., d)`` in standardised units.
    std
        ``y_std`` of :class:`UCISplit`, shape ``(d,)``.
    """
    std = np.asarray(std)
    pad = (None,) * (np.ndim(var) - 1)
    return var * (std**2)[pad]


def _seeded_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def load_uci(
    name: str,
    split: int = 0,
    *,
    root=None,
    test_fraction: float = 0.1,
    seed: int = 0,
    standardize: bool = True,
    dtype=np.float32,
) -> UCISplit:
    """Load one train/test split of a UCI regression set.

    With ``root=None`` the data come from the files shipped in the package and the split is
    a seeded random permutation (seed ``seed + split``), ``test_fraction`` of the rows held
    out. With ``root`` a folder in the standard layout (for example ``../shared/data/uci``
    in development), any of the nine standard sets is read with its standard
    ``index_train_K``/``index_test_K`` split files (``test_fraction`` and ``seed`` are then
    ignored), for comparison with published tables (Hernández-Lobato & Adams, "Probabilistic
    backpropagation", ICML 2015; Gal & Ghahramani, "Dropout as a Bayesian approximation",
    ICML 2016).

    Standardisation (``standardize=True``) is z-scoring fitted on the training part only:
    :math:`\\tilde x = (x - \\bar x_{train}) / s_{train}` with the population standard
    deviation; constant columns (:math:`s \\le 10^{-9} |\\bar x|`, rounding) get
    :math:`s = 1`. Use :func:`unstandardize` and
    ``y_std`` to report errors in original units.

    ``bostonHousing`` is kept for comparison with published tables only and is never a
    default: one of its features (``B``) was constructed from the proportion of Black
    residents under an assumption of racial self-segregation, an ethical problem documented
    by the data's critics; do not use it to develop new methods.

    Parameters
    ----------
    name
        Data set name (see :func:`uci_names`); aliases such as ``"boston"``, ``"wine"``,
        ``"naval"``, ``"power"``, ``"protein"`` are accepted.
    split
        Split index, ``0 <= split < num_splits(name, root)``.
    root
        ``None`` (shipped data, seeded splits) or a folder in the standard layout.
    test_fraction
        Fraction of rows held out for seeded splits, in ``(0, 1)``.
    seed
        Base seed of the seeded splits.
    standardize
        Z-score inputs and targets with training statistics.
    dtype
        Floating dtype of the returned arrays (statistics are computed in float64).

    Returns
    -------
    :class:`UCISplit` with ``y`` arrays of shape ``(n, 1)``.

    Examples
    --------
    >>> from bayesnn.datasets import load_uci
    >>> data = load_uci("yacht", split=0)
    >>> data.x_train.shape, data.y_test.shape
    ((277, 6), (31, 1))
    """
    root_path = _resolve_root(root)
    available = uci_names(root)
    name = _canonical(name, available)
    n_splits = num_splits(name, root)
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)):
        raise ValueError(f"split must be an integer, got {split!r}")
    if not 0 <= split < n_splits:
        raise ValueError(f"split={split} out of range: {name!r} has splits 0..{n_splits - 1}")
    if not (isinstance(test_fraction, (float, int)) and 0.0 < test_fraction < 1.0):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"dtype must be a floating dtype, got {dtype!r}") from err
    if dtype.kind != "f":
        raise ValueError(
            f"dtype must be a floating dtype (z-scores would be truncated), got {dtype}"
        )

    folder = (_shipped_root() if root_path is None else root_path) / name
    data = _read_table(folder / "data.txt")
    features = _read_indices(folder / "index_features.txt")
    target = _read_indices(folder / "index_target.txt")
    if target.size != 1:
        raise ValueError(f"{name!r}: index_target.txt must hold one column, got {target.size}")
    ncol = data.shape[1]
    if features.size == 0 or np.any(features < 0) or np.any(features >= ncol) or target[0] >= ncol:
        raise ValueError(f"{name!r}: feature/target column indices out of range 0..{ncol - 1}")
    x = data[:, features]
    y = data[:, target]
    bad = ~np.isfinite(data[:, np.concatenate([features, target])]).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name!r}: NaN/inf in data.txt at rows {np.flatnonzero(bad)[:10].tolist()}"
        )

    if root_path is None:
        train_idx, test_idx = _seeded_split(data.shape[0], float(test_fraction), seed + split)
    else:
        train_idx = _read_indices(folder / f"index_train_{split}.txt")
        test_idx = _read_indices(folder / f"index_test_{split}.txt")
        for label, idx in (("train", train_idx), ("test", test_idx)):
            if idx.size == 0 or idx.min() < 0 or idx.max() >= data.shape[0]:
                raise ValueError(
                    f"{name!r} split {split}: {label} indices out of range 0..{data.shape[0] - 1}"
                )
            if np.unique(idx).size != idx.size:
                raise ValueError(
                    f"{name!r} split {split}: index_{label}_{split}.txt lists rows more than once"
                )
        both = np.intersect1d(train_idx, test_idx)
        if both.size:
            raise ValueError(
                f"{name!r} split {split}: index_train_{split}.txt and index_test_{split}.txt "
                f"overlap in {both.size} rows (e.g. {both[:5].tolist()})"
            )

    x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    if standardize:
        x_mean, x_std = x_train.mean(axis=0), x_train.std(axis=0)
        y_mean, y_std = y_train.mean(axis=0), y_train.std(axis=0)
        x_std, y_std = _safe_std(x_std, x_mean), _safe_std(y_std, y_mean)
        x_train, x_test = _z(x_train, x_mean, x_std), _z(x_test, x_mean, x_std)
        y_train, y_test = _z(y_train, y_mean, y_std), _z(y_test, y_mean, y_std)
    else:
        x_mean, x_std = np.zeros(x.shape[1]), np.ones(x.shape[1])
        y_mean, y_std = np.zeros(1), np.ones(1)
    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)
    return UCISplit(
        cast(x_train),
        cast(y_train),
        cast(x_test),
        cast(y_test),
        cast(x_mean),
        cast(x_std),
        cast(y_mean),
        cast(y_std),
        name,
        int(split),
    )


def _safe_std(std, mean):
    # Constant columns (up to float64 rounding of the mean, as in naval) get std 1.
    constant = std <= 1e-9 * np.abs(mean)
    return np.where(constant | (std == 0), 1.0, std)


def _z(a, mean, std):
    return (a - mean[None, :]) / std[None, :]
