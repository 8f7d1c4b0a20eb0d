"""A small learnable 28x28, ten-class data set, in memory or written as IDX files."""
import struct
from pathlib import Path

import numpy as np

from condnn.datasets import DataSet


def images(n: int, seed: int, classes: int = 10):
    """n noisy 28x28 uint8 images of ``classes`` random smooth prototypes, and labels."""
    prototypes_rng = np.random.default_rng(1234)          # the same classes in every split
    coarse = prototypes_rng.random((classes, 7, 7))
    prototypes = np.kron(coarse, np.ones((4, 4)))          # (classes, 28, 28) in [0, 1]
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    pictures = prototypes[labels] + 0.35 * rng.standard_normal((n, 28, 28))
    return (np.clip(pictures, 0, 1) * 255).astype(np.uint8), labels


def data_set(n_train: int = 1200, n_test: int = 300) -> DataSet:
    """The data set as a DataSet (as condnn.datasets loads it)."""
    (xa, ya), (xb, yb) = images(n_train, 1), images(n_test, 2)
    to_x = lambda a: (a.reshape(len(a), -1) / 255).astype(np.float32)   # noqa: E731
    return DataSet(to_x(xa), ya.astype(np.int64), to_x(xb), yb.astype(np.int64),
                   name="synthetic")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                    *array.shape)
    path.write_bytes(header + array.tobytes())


def write_idx_dir(directory: Path, n_train: int = 1200, n_test: int = 300) -> Path:
    """Writes the four MNIST-named IDX files of the data set into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, (x, y) in (("train", images(n_train, 1)), ("t10k", images(n_test, 2))):
        _write_idx(directory / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte", y)
    return directory
