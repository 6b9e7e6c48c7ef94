"""Image data: scikit-learn's embedded 8x8 digits and Fashion-MNIST from IDX files.

Nothing is downloaded. Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747) is read
from its four IDX files, which Debian installs with ``apt-get install dataset-fashion-mnist``
into ``/usr/share/datasets/fashion-mnist``. The IDX format (LeCun et al., MNIST database) is
a big-endian header ``0x00 0x00 <type> <ndim>``, ``ndim`` uint32 dimensions, then the data.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "FASHION_MNIST_CLASSES",
    "DEFAULT_FASHION_MNIST_DIR",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
]

#: Default folder of the Debian package ``dataset-fashion-mnist``.
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

#: Fashion-MNIST class names, by label.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_TYPES.items()}


def _open(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a numpy array.

    The header is validated: two zero bytes, a known type code (``0x08`` uint8, ``0x09``
    int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64, all
    big-endian), the number of dimensions, and the payload length against the product of
    the dimensions.

    Parameters
    ----------
    path
        File path; gzip is detected from the content, not the name.

    Returns
    -------
    Array of shape given by the header, in native byte order.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"path: IDX file {str(path)!r} does not exist")
    try:
        with _open(path) as fh:
            raw = fh.read()
    except (EOFError, OSError, zlib.error) as err:  # truncated or corrupt gzip stream
        raise ValueError(f"{str(path)!r}: corrupt or truncated gzip data ({err})") from None
    if len(raw) < 4:
        raise ValueError(f"{str(path)!r} is too short to be an IDX file")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(
            f"{str(path)!r}: bad IDX magic number {raw[:4].hex()} "
            "(expected 0000<type><ndim> with type in 08, 09, 0b, 0c, 0d, 0e)"
        )
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{str(path)!r}: IDX header declares {ndim} dimensions, truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{str(path)!r}: IDX payload has {len(raw) - header} bytes, the header's "
            f"shape {shape} needs {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path, array, *, compress: bool | None = None) -> None:
    """Write a numpy array as an IDX file (the inverse of :func:`read_idx`).

    Parameters
    ----------
    path
        Output path; written gzip-compressed when ``compress`` is true or, with
        ``compress=None``, when the name ends in ``.gz``.
    array
        Array of dtype uint8, int8, int16, int32, float32 or float64, with 1 to 255 axes.
    compress
        Force or disable gzip compression.
    """
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"array: dtype {array.dtype} has no IDX type code")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"array: IDX needs 1 to 255 axes, got {array.ndim}")
    path = Path(os.fspath(path))
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=_IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(header + payload)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits embedded in scikit-learn (1797 images, 10 classes).

    Source: UCI "Optical Recognition of Handwritten Digits" (Alpaydin & Kaynak 1998), as
    bundled with ``sklearn.datasets.load_digits``; works offline.

    Returns
    -------
    images
        float32 array ``(1797, 8, 8)`` with values in ``0..16``.
    labels
        int32 array ``(1797,)`` with values in ``0..9``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int32)


_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def load_fashion_mnist(split: str = "train", path=None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images and labels from the IDX files, never downloaded.

    The folder is, in order: ``path``, the environment variable ``BAYESNN_FASHION_MNIST``,
    then ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
    It must hold ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
    ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``.

    Reference: Xiao, Rasul & Vollgraf, "Fashion-MNIST: a novel image dataset for
    benchmarking machine learning algorithms", arXiv:1708.07747 (2017).

    Parameters
    ----------
    split
        ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    path
        Folder holding the IDX files.

    Returns
    -------
    images
        uint8 array ``(n, 28, 28)``.
    labels
        int32 array ``(n,)`` in ``0..9`` (names in :data:`FASHION_MNIST_CLASSES`).
    """
    if split not in _FASHION_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if path is None:
        path = os.environ.get("BAYESNN_FASHION_MNIST") or DEFAULT_FASHION_MNIST_DIR
    folder = Path(os.fspath(path)).expanduser()
    image_stem, label_stem = _FASHION_FILES[split]
    image_file, label_file = _find(folder, image_stem), _find(folder, label_stem)
    if image_file is None or label_file is None:
        missing = image_stem if image_file is None else label_stem
        raise FileNotFoundError(
            f"Fashion-MNIST file {missing}[.gz] not found in {str(folder)!r}. Install it with "
            "`apt-get install dataset-fashion-mnist` (files go to "
            f"{DEFAULT_FASHION_MNIST_DIR}), or pass path=... or set BAYESNN_FASHION_MNIST."
        )
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{str(image_file)!r}: expected uint8 images (n, rows, cols)")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{str(label_file)!r}: {labels.shape} labels for {images.shape[0]} images"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
        raise ValueError(
            f"{str(label_file)!r}: labels must be in 0..{len(FASHION_MNIST_CLASSES) - 1}, "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    return images, labels.astype(np.int32)
