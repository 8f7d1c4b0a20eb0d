"""Data sets: the bundled MNIST, readers for IDX, CIFAR-10 and SVHN files, splits and batches.

Every loader returns a :class:`DataSet` in one layout, whatever the file format:

- ``x_train``, ``x_test``: float32 in [0, 1] (pixel / 255), one flattened image per row.
  28x28 grey images (the MNIST family) are (N, 784), row by row.  32x32 colour images
  (CIFAR-10, SVHN) are (N, 3072), channel-major as in CIFAR-10's own files: the 1024 red
  values row by row, then the 1024 green, then the 1024 blue, so that
  ``x.reshape(N, 3, 32, 32)`` is (example, channel, row, column).
- ``y_train``, ``y_test``: int64 class indices in ``0 .. classes - 1``, shape (N,).

Loaders:

========================  =================================================================
``load_mnist()``          the copy of MNIST shipped in ``condnn/data/mnist`` (no download)
``load_idx_dir(dir)``     any directory of MNIST-family IDX files (MNIST, Fashion-MNIST, ...)
``load_cifar10(path)``    CIFAR-10's python batches: a directory, ``cifar-10-batches-py``
                          inside it, or the ``cifar-10-python.tar.gz`` archive itself
``load_svhn(dir)``        SVHN format 2 (``train_32x32.mat``, ``test_32x32.mat``)
``load(spec)``            one of the above from a string: ``mnist``, ``idx:DIR``,
                          ``cifar10:PATH``, ``svhn:DIR``
========================  =================================================================

Any missing or malformed file raises :class:`DataError` (a ValueError) naming the file and
what is wrong with it.

SVHN's ``.mat`` files are MATLAB level-5 files.  They are read by a small reader in this
module (``read_mat_arrays``) that handles the numeric arrays of such files, compressed or
not, so SciPy is not needed.  MATLAB v7.3 files (HDF5 inside) are refused with a clear
error; SVHN is not distributed in that format.

CIFAR-10's batches are Python pickles.  Unpickling can run arbitrary code, so they are read
with an unpickler that only builds dicts, lists, strings, numbers and NumPy arrays and
refuses anything else.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import tarfile
import zlib
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from condnn.download import sha256_of

__all__ = ["DataSet", "DataError", "load", "load_mnist", "load_idx_dir", "load_cifar10",
           "load_svhn", "read_idx", "read_mat_arrays", "train_val_split", "minibatches",
           "MNIST_DIR"]

PathLike = Union[str, "os.PathLike[str]"]

#: Where the bundled MNIST files live.
MNIST_DIR = Path(__file__).resolve().parent / "data" / "mnist"


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and what is wrong."""


@dataclass(frozen=True, eq=False)
class DataSet:
    """Training and test examples of one data set.

    Attributes:
        x_train: (N_train, D) float32 in [0, 1], one flattened image per row.
        y_train: (N_train,) int64 class indices.
        x_test: (N_test, D) float32 in [0, 1].
        y_test: (N_test,) int64 class indices.
        name: a short name ("mnist", "cifar10", "svhn", or the directory read).
        classes: the number of classes; every label is in ``0 .. classes - 1``.
        image_shape: (channels, rows, columns) of one image, with
            ``channels * rows * columns == D``; ``x.reshape(-1, *image_shape)`` restores
            the images.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str = ""
    classes: int = 10
    image_shape: Tuple[int, int, int] = (1, 28, 28)

    def __post_init__(self) -> None:
        if isinstance(self.classes, bool) or not isinstance(self.classes, int) or self.classes < 1:
            raise ValueError(f"classes must be a positive int, got {self.classes!r}")
        features = math.prod(self.image_shape)
        for split in ("train", "test"):
            x, y = getattr(self, "x_" + split), getattr(self, "y_" + split)
            if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2
                    and x.shape[1] == features):
                raise ValueError(f"x_{split} must be a float32 array of shape (N, {features}), "
                                 f"got {_describe(x)}")
            if not (isinstance(y, np.ndarray) and y.dtype == np.int64 and y.shape == x.shape[:1]):
                raise ValueError(f"y_{split} must be an int64 array of shape ({x.shape[0]},), "
                                 f"got {_describe(y)}")
            if y.size and (y.min() < 0 or y.max() >= self.classes):
                raise ValueError(f"y_{split} must hold labels in 0..{self.classes - 1}, "
                                 f"got values from {y.min()} to {y.max()}")

    def __repr__(self) -> str:
        return (f"DataSet(name={self.name!r}, classes={self.classes}, "
                f"image_shape={self.image_shape}, train={self.x_train.shape}, "
                f"test={self.x_test.shape})")


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


def _to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """(N, ...) uint8 -> (N, prod(...)) float32 in [0, 1]."""
    x = pixels.reshape(len(pixels), -1).astype(np.float32)
    x /= np.float32(255)  # in place: the float copy is the large one, make no second
    return x


def _check_labels(labels: np.ndarray, where: Path, low: int, high: int) -> np.ndarray:
    """Labels as int64 after checking they are whole numbers in ``low .. high``."""
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise DataError(f"{where}: labels must be whole numbers, some are fractional")
    elif labels.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
    bad = np.flatnonzero((labels < low) | (labels > high))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where}: {bad.size} label(s) outside {low}..{high}, "
                        f"the first at index {i} is {labels[i]}")
    return labels.astype(np.int64)


# --- IDX (MNIST family) -----------------------------------------------------------------

# The third byte of an IDX magic number gives the element type, the fourth the number
# of dimensions; multi-byte elements are big-endian.
_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path) -> bytes:
    """A file's bytes, decompressed when it is gzip.

    gzip is recognised by its magic bytes, not by the name: browsers often save a
    decompressed copy under the ``.gz`` name.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from e
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from e


def read_idx(path: PathLike) -> np.ndarray:
    """Reads one IDX file (gzip-compressed or not) into an array of its declared shape.

    Returns:
        An array with the dimensions of the file's header and its element type
        (uint8 for the MNIST family), in native byte order.

    Raises:
        DataError: bad magic number, truncated header or data, or bytes beyond the data.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file: magic number 0x{data[:4].hex()}, expected "
                        "0x0000TTDD with TT an IDX type code (08 for unsigned bytes)")
    ndim = data[3]
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise DataError(f"{path}: truncated IDX header: {len(data)} bytes, "
                        f"{ndim} dimensions need {header_bytes}")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    dtype = _IDX_TYPES[data[2]]
    count = math.prod(shape)
    have, need = len(data) - header_bytes, count * dtype.itemsize
    if have < need:
        raise DataError(f"{path}: truncated IDX data: the header declares shape {shape}, "
                        f"{need} bytes, but only {have} follow it")
    if have > need:
        raise DataError(f"{path}: {have - need} bytes beyond the data of shape {shape} that "
                        "the IDX header declares (a wrong or damaged file?)")
    array = np.frombuffer(data, dtype, count=count, offset=header_bytes).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


# (role, canonical stem, IDX dimension count); both "-idx3-ubyte" and ".idx3-ubyte"
# spellings are in use, each plain or gzip-compressed.
_IDX_ROLES = (("train images", "train-images", 3), ("train labels", "train-labels", 1),
              ("test images", "t10k-images", 3), ("test labels", "t10k-labels", 1))


def _idx_candidates(stem: str, ndim: int) -> List[str]:
    names = [f"{stem}-idx{ndim}-ubyte", f"{stem}.idx{ndim}-ubyte"]
    # The uncompressed file first: it reads faster and, if both exist, holds the same data.
    return names + [n + ".gz" for n in names]


def _check_dir(path: PathLike, what: str) -> Path:
    directory = Path(os.fspath(path)).expanduser()
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory (expected the {what})")
    return directory


def load_idx_dir(path: PathLike, *, classes: int = 10, name: Optional[str] = None) -> DataSet:
    """Loads an MNIST-family data set from a directory of IDX files.

    The directory must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or gzip-compressed
    (``.gz``), or named in the dotted spelling (``train-images.idx3-ubyte``, ...).

    Args:
        path: the directory.
        classes: the number of classes; labels must lie in ``0 .. classes - 1``.
        name: the DataSet's name; by default the directory's name.

    Returns:
        A DataSet with x of shape (N, rows * cols) float32 in [0, 1], image_shape
        (1, rows, cols).

    Raises:
        DataError: a file is missing (all missing ones are named), is not IDX, has the wrong
            number of dimensions or element type, is truncated, has a label count that
            differs from its image count, or a label outside ``0 .. classes - 1``.
    """
    if isinstance(classes, bool) or not isinstance(classes, Integral) or classes < 1:
        raise ValueError(f"classes must be a positive int, got {classes!r}")
    directory = _check_dir(path, "IDX files")
    found: Dict[str, Path] = {}
    missing: List[str] = []
    for role, stem, ndim in _IDX_ROLES:
        candidates = _idx_candidates(stem, ndim)
        hit = next((directory / c for c in candidates if (directory / c).is_file()), None)
        if hit is None:
            missing.append(f"{role} ({' or '.join(candidates)})")
        else:
            found[role] = hit
    if missing:
        raise DataError(f"{directory}: missing IDX file(s): {'; '.join(missing)}")

    splits = {}
    for split in ("train", "test"):
        images_path, labels_path = found[f"{split} images"], found[f"{split} labels"]
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{images_path}: expected 3-D unsigned-byte images "
                            f"(count, rows, columns), got {images.dtype} of shape {images.shape}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise DataError(f"{labels_path}: expected 1-D unsigned-byte labels, "
                            f"got {labels.dtype} of shape {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{images_path} holds {len(images)} images but {labels_path} "
                            f"holds {len(labels)} labels")
        splits[split] = (images, _check_labels(labels, labels_path, 0, int(classes) - 1))
    train_hw, test_hw = splits["train"][0].shape[1:], splits["test"][0].shape[1:]
    if train_hw != test_hw:
        raise DataError(f"{directory}: training images are {train_hw[0]}x{train_hw[1]} but "
                        f"test images are {test_hw[0]}x{test_hw[1]}")
    return DataSet(_to_unit_float(splits["train"][0]), splits["train"][1],
                   _to_unit_float(splits["test"][0]), splits["test"][1],
                   name=directory.name if name is None else name, classes=int(classes),
                   image_shape=(1, int(train_hw[0]), int(train_hw[1])))


def _verify_sums(directory: Path) -> None:
    """Checks every file listed in ``directory/SHA256SUMS`` against its digest."""
    sums_path = directory / "SHA256SUMS"
    try:
        lines = sums_path.read_text().splitlines()
    except OSError as e:
        raise DataError(f"{sums_path}: cannot read the checksum list: {e.strerror or e}") from e
    for line in filter(str.strip, lines):
        digest, _, file_name = line.partition("  ")
        target = directory / file_name.strip()
        if not target.is_file():
            raise DataError(f"{target}: missing (listed in {sums_path}); reinstall condnn")
        if sha256_of(target) != digest.strip().lower():
            raise DataError(f"{target}: SHA-256 differs from {sums_path}: the file is damaged; "
                            "reinstall condnn")


def load_mnist() -> DataSet:
    """The MNIST digits shipped with condnn: 60,000 training and 10,000 test images.

    The files are checked against their SHA-256 digests first (about 11 MB to hash).

    Returns:
        DataSet "mnist": x (N, 784) float32 in [0, 1], y int64 in 0..9, image_shape (1, 28, 28).
    """
    _verify_sums(MNIST_DIR)
    return load_idx_dir(MNIST_DIR, name="mnist")


# --- CIFAR-10 (python pickles) ----------------------------------------------------------

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_SUBDIR = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_FEATURES = 3 * 32 * 32

# What a CIFAR batch, written by Python 2 or 3 with any protocol, needs to rebuild its
# NumPy array; _codecs.encode is how protocols 0-2 store bytes. Nothing here runs code.
_PICKLE_ALLOWED = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a class or function outside _PICKLE_ALLOWED."""


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, numbers, strings and NumPy arrays."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_ALLOWED:
            raise _RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _parse_cifar_batch(raw: bytes, where: str) -> Tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> ((n, 3072) uint8 pixels, (n,) int64 labels)."""
    try:
        # encoding="bytes": the official batches were written by Python 2, whose str
        # holds the array data; decoding it as text would corrupt it.
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _RefusedGlobal as e:
        raise DataError(f"{where}: refusing to load {e}: a CIFAR-10 batch holds only a dict "
                        "of arrays, lists and strings, and unpickling anything else could "
                        "run code") from e
    except Exception as e:  # a damaged pickle fails in many ways; all mean the same here
        raise DataError(f"{where}: not a readable CIFAR-10 batch (corrupt pickle: "
                        f"{type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(batch).__name__}")
    entries = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in entries:
            hint = " (a CIFAR-100 file?)" if "fine_labels" in entries else ""
            raise DataError(f"{where}: no {key!r} entry in the batch{hint}; "
                            f"found {sorted(map(str, entries))}")
    data = entries["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _CIFAR_FEATURES):
        raise DataError(f"{where}: 'data' must be a uint8 array of shape (n, {_CIFAR_FEATURES}), "
                        f"got {_describe(data)}")
    try:
        labels = np.asarray(entries["labels"])
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: 'labels' is not a list of integers ({e})") from e
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {len(data)} images but 'labels' has shape {labels.shape}")
    return data, _check_labels(labels, Path(where), 0, 9)


def _cifar_from_archive(archive: Path) -> Dict[str, bytes]:
    wanted = set(_CIFAR_TRAIN) | {_CIFAR_TEST}
    raw: Dict[str, bytes] = {}
    try:
        # One pass in archive order: seeking back in a gzip stream would decompress again.
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in raw:
                    f = tar.extractfile(member)
                    if f is not None:
                        raw[base] = f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive}: not a readable tar archive ({e})") from e
    missing = sorted(wanted - set(raw))
    if missing:
        raise DataError(f"{archive}: missing CIFAR-10 batch(es) in the archive: "
                        f"{', '.join(missing)}")
    return raw


def _cifar_from_dir(directory: Path) -> Dict[str, bytes]:
    names = _CIFAR_TRAIN + (_CIFAR_TEST,)
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise DataError(f"{directory}: missing CIFAR-10 batch file(s): {', '.join(missing)}")
    raw = {}
    for n in names:
        try:
            raw[n] = (directory / n).read_bytes()
        except OSError as e:
            raise DataError(f"{directory / n}: cannot read: {e.strerror or e}") from e
    return raw


def load_cifar10(path: PathLike) -> DataSet:
    """Loads CIFAR-10 from its python-pickle batches (50,000 training, 10,000 test images).

    Args:
        path: a directory holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``;
            or a directory holding the extracted ``cifar-10-batches-py`` folder, or the
            ``cifar-10-python.tar.gz`` archive; or the archive itself (read without
            extracting it).

    Returns:
        DataSet "cifar10": x (N, 3072) float32 in [0, 1], channel-major (1024 red values row
        by row, then green, then blue) as in the batches; y int64 in 0..9; image_shape
        (3, 32, 32).

    Raises:
        DataError: a batch is missing (all missing ones are named), is not a readable
            pickle, lacks 'data' or 'labels', has the wrong shape, or a label outside 0..9.
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or directory (expected CIFAR-10's batches)")
    if p.is_dir() and not (p / _CIFAR_TRAIN[0]).exists():
        # Not the batches' own directory: look for them one level down, then for the archive.
        if (p / _CIFAR_SUBDIR).is_dir():
            p = p / _CIFAR_SUBDIR
        elif (p / _CIFAR_ARCHIVE).is_file():
            p = p / _CIFAR_ARCHIVE
    if p.is_file():
        raw, where = _cifar_from_archive(p), f"{p}:"
    else:
        raw, where = _cifar_from_dir(p), f"{p}{os.sep}"
    train = [_parse_cifar_batch(raw[n], where + n) for n in _CIFAR_TRAIN]
    x_test, y_test = _parse_cifar_batch(raw[_CIFAR_TEST], where + _CIFAR_TEST)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return DataSet(_to_unit_float(x_train), y_train, _to_unit_float(x_test), y_test,
                   name="cifar10", classes=10, image_shape=(3, 32, 32))


# --- MATLAB level-5 .mat files (SVHN) ---------------------------------------------------
# Layout (MATLAB's "MAT-File Format" manual): a 128-byte header, then data elements, each
# an 8-byte tag (type, byte count) and its bytes. A variable is an miMATRIX element,
# possibly wrapped in a zlib-compressed miCOMPRESSED element, whose sub-elements are the
# array flags, the dimensions, the name and the real part, column-major. A sub-element of
# at most 4 bytes may be packed into its tag ("small data element"); other sub-elements
# are padded to 8 bytes.

_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
             12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_NUMERIC = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
               14: "i8", 15: "u8"}
_MX_OTHER = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse",
             16: "function handle", 17: "opaque"}
_MX_OPAQUE = 17
_MX_COMPLEX_FLAG = 0x0800
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class _MatElements:
    """Sequential reader of the sub-elements of one miMATRIX element."""

    def __init__(self, body: memoryview, order: str, where: Path) -> None:
        self.body, self.order, self.where, self.pos = body, order, where, 0

    def take(self, what: str) -> Tuple[int, memoryview]:
        """The next sub-element as (data type, payload bytes)."""
        if self.pos + 8 > len(self.body):
            raise DataError(f"{self.where}: truncated variable: no {what}")
        (first,) = struct.unpack_from(self.order + "I", self.body, self.pos)
        if first >> 16:  # small data element: the byte count sits in the tag's upper half
            mtype, nbytes, start, step = first & 0xFFFF, first >> 16, self.pos + 4, 8
            if nbytes > 4:
                raise DataError(f"{self.where}: malformed {what}: packed element of {nbytes} "
                                "bytes (at most 4 fit)")
        else:
            mtype, nbytes = struct.unpack_from(self.order + "II", self.body, self.pos)
            start, step = self.pos + 8, 8 + -(-nbytes // 8) * 8
        if start + nbytes > len(self.body):
            raise DataError(f"{self.where}: truncated variable: its {what} needs {nbytes} "
                            f"bytes, {max(len(self.body) - start, 0)} remain")
        self.pos += step
        return mtype, self.body[start:start + nbytes]


def _parse_mat_variable(body: memoryview, order: str, where: Path,
                        wanted: Sequence[str]) -> Tuple[str, Optional[np.ndarray]]:
    """One miMATRIX body -> (name, array), the array None when the name is not wanted."""
    elements = _MatElements(body, order, where)
    mtype, flags = elements.take("array flags")
    if mtype != 6 or len(flags) != 8:
        raise DataError(f"{where}: malformed variable: bad array-flags element")
    (flag_word,) = struct.unpack_from(order + "I", flags, 0)
    mclass = flag_word & 0xFF
    dims: Tuple[int, ...] = ()
    if mclass != _MX_OPAQUE:  # MATLAB objects go straight from flags to name
        mtype, dims_bytes = elements.take("dimensions")
        if mtype != 5 or len(dims_bytes) % 4:
            raise DataError(f"{where}: malformed variable: bad dimensions element")
        dims = tuple(int(d) for d in np.frombuffer(dims_bytes, np.dtype("i4").newbyteorder(order)))
    _, name_bytes = elements.take("name")
    name = bytes(name_bytes).decode("ascii", "replace")
    if name not in wanted:
        return name, None
    if mclass not in _MX_NUMERIC:
        kind = _MX_OTHER.get(mclass, f"class {mclass}")
        raise DataError(f"{where}: variable {name!r} is a MATLAB {kind} array, expected a "
                        "numeric one")
    if flag_word & _MX_COMPLEX_FLAG:
        raise DataError(f"{where}: variable {name!r} is complex, expected real numbers")
    if any(d < 0 for d in dims):
        raise DataError(f"{where}: variable {name!r} has negative dimensions {dims}")
    mtype, real = elements.take(f"data of {name!r}")
    if mtype not in _MI_TYPES:
        raise DataError(f"{where}: variable {name!r} stores its data as type {mtype}, "
                        "which is not numeric")
    # MATLAB may store values in a narrower type than their class (a double array of
    # small integers as bytes, say): read the stored type, then convert to the class.
    stored = np.dtype(_MI_TYPES[mtype]).newbyteorder(order)
    count = math.prod(dims)
    if len(real) != count * stored.itemsize:
        raise DataError(f"{where}: variable {name!r} of shape {dims} needs {count} values, "
                        f"its data holds {len(real) // stored.itemsize}")
    values = np.frombuffer(real, stored).astype(_MX_NUMERIC[mclass], copy=False)
    return name, values.reshape(dims, order="F")


def read_mat_arrays(path: PathLike, names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Reads the named real numeric arrays from a MATLAB level-5 .mat file.

    Handles the files MATLAB writes with ``-v6`` and ``-v7`` (the default before 7.3):
    either byte order, zlib-compressed variables or not.  Other variables of the file may
    be of any kind; they are skipped.

    Args:
        path: the .mat file.
        names: the variables wanted.

    Returns:
        name -> array with MATLAB's dimensions (column-major order kept by the strides), the
        dtype of the variable's MATLAB class (uint8, double, ...), possibly read-only.

    Raises:
        DataError: not a level-5 file (a v7.3/HDF5 file is named as such), truncated or
            corrupt data, a wanted variable that is missing (all missing ones are named)
            or is not a real numeric array.
    """
    path = Path(os.fspath(path)).expanduser()
    try:
        data = memoryview(path.read_bytes())
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(data) >= 520 and bytes(data[512:520]) == _HDF5_SIGNATURE:
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file, which this reader does not "
                        "handle; save it in MATLAB with -v7, or read it with h5py")
    endian = bytes(data[126:128]) if len(data) >= 128 else b""
    if endian not in (b"IM", b"MI"):
        raise DataError(f"{path}: not a MATLAB level-5 .mat file (no 128-byte header with the "
                        "'MI' byte-order mark)")
    order = "<" if endian == b"IM" else ">"
    found: Dict[str, np.ndarray] = {}
    seen: List[str] = []
    pos = 128
    while pos + 8 <= len(data):
        mtype, nbytes = struct.unpack_from(order + "II", data, pos)
        body = data[pos + 8:pos + 8 + nbytes]
        if len(body) < nbytes:
            raise DataError(f"{path}: truncated: an element at byte {pos} declares {nbytes} "
                            f"bytes, {len(body)} remain")
        pos += 8 + nbytes  # top-level elements are not padded (compressed ones cannot be)
        if mtype == _MI_COMPRESSED:
            try:
                inner = memoryview(zlib.decompress(body))
            except zlib.error as e:
                raise DataError(f"{path}: corrupt compressed variable at byte "
                                f"{pos - 8 - nbytes} ({e})") from e
            if len(inner) < 8:
                raise DataError(f"{path}: empty compressed variable")
            mtype, nbytes = struct.unpack_from(order + "II", inner, 0)
            body = inner[8:8 + nbytes]
            if len(body) < nbytes:
                raise DataError(f"{path}: truncated compressed variable")
        if mtype != _MI_MATRIX:
            continue  # not a variable (MATLAB writes none such; skip rather than fail)
        name, array = _parse_mat_variable(body, order, path, names)
        seen.append(name)
        if array is not None:
            found[name] = array
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{path}: no variable(s) {', '.join(map(repr, missing))}; "
                        f"the file holds {', '.join(map(repr, seen)) or 'none'}")
    return found


_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def _svhn_split(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """One SVHN format-2 file -> ((N, 3072) float32 channel-major, (N,) int64 labels)."""
    arrays = read_mat_arrays(path, ("X", "y"))
    images, labels = arrays["X"], arrays["y"]
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8:
        raise DataError(f"{path}: 'X' must be uint8 of shape (32, 32, 3, N), "
                        f"got {images.dtype} of shape {images.shape}")
    n = images.shape[3]
    if labels.size != n or labels.ndim > 2 or (labels.ndim == 2 and 1 not in labels.shape):
        raise DataError(f"{path}: 'y' must hold one label per image ({n}), "
                        f"got shape {labels.shape}")
    # SVHN numbers its classes 1..10, 10 standing for the digit 0.
    digits = _check_labels(labels.reshape(n), path, 1, 10)
    digits[digits == 10] = 0
    x = np.empty((n, 3 * 32 * 32), np.float32)
    # X is (row, column, channel, example); write it straight into the (example, channel,
    # row, column) layout to avoid an intermediate uint8 copy.
    x.reshape(n, 3, 32, 32)[...] = images.transpose(3, 2, 0, 1)
    x /= np.float32(255)
    return x, digits


def load_svhn(path: PathLike, *, extra: bool = False) -> DataSet:
    """Loads SVHN's cropped digits (format 2): 73,257 training and 26,032 test images.

    Args:
        path: the directory holding ``train_32x32.mat`` and ``test_32x32.mat``.
        extra: also read ``extra_32x32.mat`` (531,131 images) and append it to the
            training set.

    Returns:
        DataSet "svhn": x (N, 3072) float32 in [0, 1], channel-major like CIFAR-10
        (``x.reshape(N, 3, 32, 32)`` is example, channel, row, column); y int64 in 0..9,
        the file's label 10 (digit 0) mapped to 0; image_shape (3, 32, 32).

    Raises:
        DataError: a file is missing (all missing ones are named), is not a level-5 .mat
            file, lacks 'X' or 'y', has other shapes than SVHN's, or a label outside 1..10.
    """
    directory = _check_dir(path, "SVHN .mat files")
    wanted = ["train", "test"] + (["extra"] if extra else [])
    missing = [_SVHN_FILES[s] for s in wanted if not (directory / _SVHN_FILES[s]).is_file()]
    if missing:
        raise DataError(f"{directory}: missing SVHN file(s): {', '.join(missing)}")
    x_train, y_train = _svhn_split(directory / _SVHN_FILES["train"])
    x_test, y_test = _svhn_split(directory / _SVHN_FILES["test"])
    if extra:
        x_extra, y_extra = _svhn_split(directory / _SVHN_FILES["extra"])
        x_train, y_train = np.concatenate([x_train, x_extra]), np.concatenate([y_train, y_extra])
    return DataSet(x_train, y_train, x_test, y_test, name="svhn", classes=10,
                   image_shape=(3, 32, 32))


# --- choosing a data set by name --------------------------------------------------------

_SPEC_LOADERS: Dict[str, Callable[[str], DataSet]] = {
    "idx": load_idx_dir, "cifar10": load_cifar10, "svhn": load_svhn}
_SPEC_FORMS = "'mnist', 'idx:DIR', 'cifar10:PATH' or 'svhn:DIR'"


def load(spec: str) -> DataSet:
    """Loads the data set a command-line style string names.

    Args:
        spec: ``mnist`` (the bundled copy), ``idx:DIR`` (:func:`load_idx_dir`),
            ``cifar10:PATH`` (:func:`load_cifar10`) or ``svhn:DIR`` (:func:`load_svhn`).
            The part before the first colon is case-insensitive; the rest is a path
            (``~`` expanded), which may itself contain colons.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str such as {_SPEC_FORMS}, got {type(spec).__name__}")
    kind, colon, where = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "mnist" and not colon:
        return load_mnist()
    if kind in _SPEC_LOADERS and where:
        return _SPEC_LOADERS[kind](where)
    raise ValueError(f"spec must be {_SPEC_FORMS}, got {spec!r}")


# --- splitting and batching -------------------------------------------------------------

def _check_pair(x: np.ndarray, y: np.ndarray) -> int:
    for arg, a in (("x", x), ("y", y)):
        if not isinstance(a, np.ndarray) or a.ndim < 1:
            raise TypeError(f"{arg} must be a numpy array with a leading example axis, "
                            f"got {_describe(a)}")
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of examples, "
                         f"got {len(x)} and {len(y)}")
    return len(x)


def train_val_split(x: np.ndarray, y: np.ndarray, n_val: int,
                    seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splits examples at random into a training part and a validation part.

    Args:
        x: (N, ...) examples.
        y: (N, ...) their targets.
        n_val: the number of validation examples, ``0 <= n_val < N`` (at least one
            example stays for training).
        seed: the seed of the shuffle; the same seed gives the same split.

    Returns:
        ``(x_train, y_train, x_val, y_val)``: copies, with ``N - n_val`` and ``n_val``
        examples, in shuffled order.  Together they hold every example exactly once.
    """
    n = _check_pair(x, y)
    if isinstance(n_val, bool) or not isinstance(n_val, Integral):
        raise TypeError(f"n_val must be an int, got {type(n_val).__name__}")
    if not 0 <= n_val < n:
        raise ValueError(f"n_val must be in 0..{n - 1} for {n} examples, got {n_val}")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    order = np.random.default_rng(int(seed)).permutation(n)
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def minibatches(x: np.ndarray, y: np.ndarray, batch_size: int,
                rng: Optional[np.random.Generator] = None
                ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Iterates over the examples in minibatches, one pass (one epoch) per call.

    Args:
        x: (N, ...) examples.
        y: (N, ...) their targets.
        batch_size: examples per batch, positive.  The last batch holds the
            ``N % batch_size`` remaining examples when N is not a multiple of it; it is
            included, not dropped.
        rng: a NumPy Generator to shuffle the examples, drawing a new order each call; None
            keeps the stored order.

    Yields:
        ``(xb, yb)`` of shapes (B, ...) and (B, ...), B = batch_size except maybe last.
        In stored order they are views of x and y; shuffled, they are copies.

    The arguments are checked when minibatches is called, not at the first batch.
    """
    n = _check_pair(x, y)
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (np.random.default_rng(seed)) "
                        f"or None, got {type(rng).__name__}")
    return _batches(x, y, int(batch_size), None if rng is None else rng.permutation(n))


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int,
             order: Optional[np.ndarray]) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(x), batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
