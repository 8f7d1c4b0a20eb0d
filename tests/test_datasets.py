"""Tests of condnn.datasets: the bundled MNIST, the IDX / CIFAR-10 / SVHN readers on small
files written here, every malformed-file error, load(spec), train_val_split, minibatches."""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest

from condnn import datasets
from condnn.datasets import (DataError, DataSet, load, load_cifar10, load_idx_dir, load_mnist,
                             load_svhn, minibatches, read_idx, read_mat_arrays, train_val_split)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- the bundled MNIST -------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist() -> DataSet:
    return load_mnist()


def test_bundled_mnist_shapes_and_types(mnist: DataSet) -> None:
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
    assert mnist.name == "mnist" and mnist.classes == 10 and mnist.image_shape == (1, 28, 28)
    assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0


def test_bundled_mnist_has_the_canonical_labels(mnist: DataSet) -> None:
    assert np.bincount(mnist.y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_bundled_mnist_pixels_are_bytes_over_255(mnist: DataSet) -> None:
    raw = gzip.decompress((datasets.MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    first = np.frombuffer(raw, np.uint8, count=784, offset=16)
    np.testing.assert_array_equal(mnist.x_test[0], first.astype(np.float32) / np.float32(255))


def test_bundled_mnist_ships_with_licence_and_sums() -> None:
    readme = (datasets.MNIST_DIR / "README.md").read_text()
    assert "CC BY-SA 3.0" in readme and "LeCun" in readme
    sums = (datasets.MNIST_DIR / "SHA256SUMS").read_text().splitlines()
    listed = {line.split()[1] for line in sums if line.strip()}
    assert listed == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}


def test_damaged_bundled_file_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "mnist"
    shutil.copytree(datasets.MNIST_DIR, copy)
    labels = copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(labels.read_bytes())
    data[-20] ^= 0xFF
    labels.write_bytes(bytes(data))
    monkeypatch.setattr(datasets, "MNIST_DIR", copy)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: SHA-256 differs"):
        load_mnist()
    labels.unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: missing"):
        load_mnist()


# --- IDX ---------------------------------------------------------------------------------

_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
              np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of an array: magic, big-endian dimensions, big-endian data."""
    code = _IDX_CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def make_idx_dir(root: Path, *, n_train: int = 6, n_test: int = 4, rows: int = 3,
                 cols: int = 5, suffix: str = "", dotted: bool = False,
                 seed: int = 0) -> Dict[str, np.ndarray]:
    """Writes a small MNIST-like IDX directory; returns the arrays written."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images": rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8),
              "train-labels": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images": rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
              "t10k-labels": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for stem, a in arrays.items():
        kind = f"idx{a.ndim}-ubyte"
        write_idx(root / ((f"{stem}.{kind}" if dotted else f"{stem}-{kind}") + suffix), a)
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dotted", [False, True])
def test_idx_round_trip(tmp_path: Path, suffix: str, dotted: bool) -> None:
    arrays = make_idx_dir(tmp_path / "d", suffix=suffix, dotted=dotted)
    ds = load_idx_dir(tmp_path / "d")
    assert ds.image_shape == (1, 3, 5) and ds.x_train.shape == (6, 15) and ds.name == "d"
    np.testing.assert_array_equal(ds.x_train * 255, arrays["train-images"].reshape(6, 15))
    np.testing.assert_array_equal(ds.x_test * 255, arrays["t10k-images"].reshape(4, 15))
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels"])


def test_idx_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    arrays = make_idx_dir(tmp_path)
    # A browser that saved the decompressed bytes under the .gz name, for one file.
    plain = tmp_path / "train-labels-idx1-ubyte"
    plain.rename(tmp_path / "train-labels-idx1-ubyte.gz")
    ds = load_idx_dir(tmp_path)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels"])


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_element_types(tmp_path: Path, dtype: str) -> None:
    a = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", a))
    assert got.dtype == np.dtype(dtype) and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, a)


def test_idx_classes_argument_widens_the_label_range(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 26, 3, 4], np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: 1 label\(s\) outside 0\.\.9, "
                                        r"the first at index 1 is 26"):
        load_idx_dir(tmp_path)
    assert load_idx_dir(tmp_path, classes=27).y_test.tolist() == [1, 26, 3, 4]


def test_idx_missing_files_are_all_named(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing IDX file") as e:
        load_idx_dir(tmp_path)
    message = str(e.value)
    assert "train labels (train-labels-idx1-ubyte or" in message
    assert "test images (t10k-images-idx3-ubyte or" in message
    assert "train images" not in message and "test labels" not in message


def test_idx_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such directory"):
        load_idx_dir(tmp_path / "nowhere")


def _idx_error(tmp_path: Path, file_name: str, content: bytes) -> str:
    make_idx_dir(tmp_path)
    (tmp_path / file_name).write_bytes(content)
    with pytest.raises(DataError) as e:
        load_idx_dir(tmp_path)
    assert str(tmp_path / file_name) in str(e.value)
    return str(e.value)


def test_idx_bad_magic(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((6, 3, 5), np.uint8))
    message = _idx_error(tmp_path, "train-images-idx3-ubyte", b"\x00\x01" + good[2:])
    assert "not an IDX file: magic number 0x00010803" in message


def test_idx_unknown_type_code(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros(6, np.uint8))
    message = _idx_error(tmp_path, "train-labels-idx1-ubyte", b"\x00\x00\x07" + good[3:])
    assert "not an IDX file" in message


def test_idx_wrong_dimension_count(tmp_path: Path) -> None:
    message = _idx_error(tmp_path, "train-images-idx3-ubyte",
                         idx_bytes(np.zeros((6, 15), np.uint8)))
    assert "expected 3-D unsigned-byte images" in message and "(6, 15)" in message
    message = _idx_error(tmp_path, "t10k-labels-idx1-ubyte",
                         idx_bytes(np.zeros((4, 1), np.uint8)))
    assert "expected 1-D unsigned-byte labels" in message


def test_idx_wrong_element_type(tmp_path: Path) -> None:
    message = _idx_error(tmp_path, "train-images-idx3-ubyte",
                         idx_bytes(np.zeros((6, 3, 5), np.float32)))
    assert "expected 3-D unsigned-byte images" in message and "float32" in message


def test_idx_truncated_data(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((6, 3, 5), np.uint8))
    message = _idx_error(tmp_path, "train-images-idx3-ubyte", good[:-7])
    assert "truncated IDX data" in message and "90 bytes, but only 83" in message


def test_idx_truncated_header(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((6, 3, 5), np.uint8))
    message = _idx_error(tmp_path, "train-images-idx3-ubyte", good[:10])
    assert "truncated IDX header" in message


def test_idx_extra_bytes(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros(6, np.uint8))
    message = _idx_error(tmp_path, "train-labels-idx1-ubyte", good + b"\0\0\0")
    assert "3 bytes beyond the data" in message


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    whole = gzip.compress(idx_bytes(np.arange(6, dtype=np.uint8)))
    message = _idx_error(tmp_path, "train-labels-idx1-ubyte", whole[:len(whole) // 2])
    assert "corrupt or truncated gzip data" in message


def test_idx_counts_that_disagree(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte holds 4 images but .*"
                                        r"t10k-labels-idx1-ubyte holds 3 labels"):
        load_idx_dir(tmp_path)


def test_idx_image_sizes_that_disagree(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(DataError, match="training images are 3x5 but test images are 5x3"):
        load_idx_dir(tmp_path)


# --- CIFAR-10 ----------------------------------------------------------------------------

CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_batch(n: int, seed: int, *, str_keys: bool = False) -> dict:
    """A batch dict shaped like CIFAR-10's (keys are bytes, as Python 2 wrote them)."""
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"batch %d" % seed,
             b"labels": rng.integers(0, 10, n).tolist(),
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [b"img_%d.png" % i for i in range(n)]}
    return {k.decode(): v for k, v in batch.items()} if str_keys else batch


def write_cifar_dir(root: Path, *, n: int = 3, protocol: int = 2,
                    str_keys: bool = False) -> Dict[str, dict]:
    root.mkdir(parents=True, exist_ok=True)
    batches = {name: cifar_batch(n + (name == "test_batch"), seed, str_keys=str_keys)
               for seed, name in enumerate(CIFAR_NAMES)}
    for name, batch in batches.items():
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return batches


def check_cifar(ds: DataSet, batches: Dict[str, dict], key: object = b"data") -> None:
    label_key = b"labels" if key == b"data" else "labels"
    train = np.concatenate([batches[n][key] for n in CIFAR_NAMES[:5]])
    assert ds.name == "cifar10" and ds.image_shape == (3, 32, 32)
    assert ds.x_train.shape == (15, 3072) and ds.x_test.shape == (4, 3072)
    np.testing.assert_array_equal(ds.x_train * 255, train)
    np.testing.assert_array_equal(ds.x_test * 255, batches["test_batch"][key])
    assert ds.y_train.tolist() == sum((batches[n][label_key] for n in CIFAR_NAMES[:5]), [])
    assert ds.y_test.tolist() == batches["test_batch"][label_key]


def test_cifar_round_trip_directory(tmp_path: Path) -> None:
    batches = write_cifar_dir(tmp_path)
    check_cifar(load_cifar10(tmp_path), batches)


def test_cifar_round_trip_str_keys_and_newest_protocol(tmp_path: Path) -> None:
    batches = write_cifar_dir(tmp_path, protocol=pickle.HIGHEST_PROTOCOL, str_keys=True)
    check_cifar(load_cifar10(tmp_path), batches, key="data")


def python2_batch_pickle(data: np.ndarray, labels: list) -> bytes:
    """A batch pickled the way CIFAR-10's own files were: by Python 2, protocol 2, with the
    array's bytes in a Python 2 str and its reconstructor under numpy.core."""
    def text(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else \
            (b"T" + struct.pack("<I", len(b)) + b)

    def small(i: int) -> bytes:
        return b"K" + bytes([i])

    n, d = data.shape
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + small(0)
             + b"\x85" + text(b"b") + b"\x87R"
             + b"(" + small(1) + b"J" + struct.pack("<i", n) + b"J" + struct.pack("<i", d)
             + b"\x86" + b"cnumpy\ndtype\n" + text(b"u1") + small(0) + small(1) + b"\x87R"
             + b"(" + small(3) + text(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
             + small(0) + b"tb" + b"\x89" + text(data.tobytes()) + b"tb")
    return (b"\x80\x02}(" + text(b"batch_label") + text(b"training batch") + text(b"data")
            + array + text(b"labels") + b"](" + b"".join(small(v) for v in labels) + b"eu.")


def test_cifar_round_trip_python2_pickles(tmp_path: Path) -> None:
    batches = {}
    for seed, name in enumerate(CIFAR_NAMES):
        batch = cifar_batch(3 + (name == "test_batch"), seed)
        (tmp_path / name).write_bytes(python2_batch_pickle(batch[b"data"], batch[b"labels"]))
        batches[name] = batch
    check_cifar(load_cifar10(tmp_path), batches)


def test_cifar_round_trip_extracted_folder(tmp_path: Path) -> None:
    batches = write_cifar_dir(tmp_path / "cifar-10-batches-py")
    check_cifar(load_cifar10(tmp_path), batches)


def _write_cifar_archive(tmp_path: Path, names=CIFAR_NAMES) -> tuple:
    src = tmp_path / "src" / "cifar-10-batches-py"
    batches = write_cifar_dir(src)
    (src / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"]}))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in names:
            tar.add(src / name, arcname=f"cifar-10-batches-py/{name}")
        tar.add(src / "batches.meta", arcname="cifar-10-batches-py/batches.meta")
    return archive, batches


def test_cifar_round_trip_archive(tmp_path: Path) -> None:
    archive, batches = _write_cifar_archive(tmp_path)
    check_cifar(load_cifar10(archive), batches)
    check_cifar(load_cifar10(tmp_path), batches)  # the directory that holds the archive


def test_cifar_archive_missing_batches(tmp_path: Path) -> None:
    archive, _ = _write_cifar_archive(tmp_path, CIFAR_NAMES[:4])
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: missing CIFAR-10 batch\(es\)"
                                        r" in the archive: data_batch_5, test_batch"):
        load_cifar10(archive)


def test_cifar_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "cifar.tar.gz"
    junk.write_bytes(b"not a tar file at all" * 10)
    with pytest.raises(DataError, match=r"cifar\.tar\.gz: not a readable tar archive"):
        load_cifar10(junk)


def test_cifar_missing_batches_are_all_named(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path)
    (tmp_path / "data_batch_2").unlink()
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 batch file\(s\): data_batch_2, "
                                        r"test_batch$"):
        load_cifar10(tmp_path)


def test_cifar_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        load_cifar10(tmp_path / "absent")


def _cifar_error(tmp_path: Path, name: str, content: bytes) -> str:
    write_cifar_dir(tmp_path)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path)
    assert str(tmp_path / name) in str(e.value)
    return str(e.value)


def test_cifar_truncated_pickle(tmp_path: Path) -> None:
    whole = pickle.dumps(cifar_batch(3, 9), protocol=2)
    message = _cifar_error(tmp_path, "data_batch_3", whole[:len(whole) // 2])
    assert "corrupt pickle" in message


def test_cifar_garbage_pickle(tmp_path: Path) -> None:
    assert "corrupt pickle" in _cifar_error(tmp_path, "test_batch", b"\x00garbage\xff" * 5)


class _Sneaky:
    """Unpickles into a call of os.mkdir: the loader must refuse it, not run it."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.target),))


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    batch = cifar_batch(3, 1)
    batch[b"extra"] = _Sneaky(tmp_path / "created-by-unpickling")
    message = _cifar_error(tmp_path, "data_batch_1", pickle.dumps(batch, protocol=2))
    assert f"refusing to load {os.mkdir.__module__}.mkdir" in message
    assert not (tmp_path / "created-by-unpickling").exists()


def test_cifar_pickle_not_a_dict(tmp_path: Path) -> None:
    message = _cifar_error(tmp_path, "data_batch_4", pickle.dumps([1, 2, 3]))
    assert "expected a pickled dict, got list" in message


def test_cifar_batch_without_labels(tmp_path: Path) -> None:
    batch = cifar_batch(3, 1)
    del batch[b"labels"]
    assert "no 'labels' entry" in _cifar_error(tmp_path, "data_batch_1", pickle.dumps(batch))
    batch[b"fine_labels"] = [0, 1, 2]
    assert "CIFAR-100" in _cifar_error(tmp_path, "data_batch_1", pickle.dumps(batch))


def test_cifar_batch_with_wrong_data_shape(tmp_path: Path) -> None:
    batch = cifar_batch(3, 1)
    batch[b"data"] = batch[b"data"][:, :1024]
    message = _cifar_error(tmp_path, "data_batch_5", pickle.dumps(batch))
    assert "'data' must be a uint8 array of shape (n, 3072), got uint8 array of shape (3, 1024)" \
        in message


def test_cifar_batch_label_count_mismatch(tmp_path: Path) -> None:
    batch = cifar_batch(3, 1)
    batch[b"labels"] = batch[b"labels"][:2]
    message = _cifar_error(tmp_path, "data_batch_2", pickle.dumps(batch))
    assert "3 images but 'labels' has shape (2,)" in message


def test_cifar_label_out_of_range(tmp_path: Path) -> None:
    batch = cifar_batch(3, 1)
    batch[b"labels"] = [0, 10, 3]
    message = _cifar_error(tmp_path, "test_batch", pickle.dumps(batch))
    assert "1 label(s) outside 0..9, the first at index 1 is 10" in message


# --- SVHN (.mat level 5) -----------------------------------------------------------------

_MI = {np.dtype("i1"): 1, np.dtype("u1"): 2, np.dtype("i2"): 3, np.dtype("u2"): 4,
       np.dtype("i4"): 5, np.dtype("u4"): 6, np.dtype("f4"): 7, np.dtype("f8"): 9,
       np.dtype("i8"): 12, np.dtype("u8"): 13}
_MX = {np.dtype("f8"): 6, np.dtype("f4"): 7, np.dtype("i1"): 8, np.dtype("u1"): 9,
       np.dtype("i2"): 10, np.dtype("u2"): 11, np.dtype("i4"): 12, np.dtype("u4"): 13,
       np.dtype("i8"): 14, np.dtype("u8"): 15}


def _element(mtype: int, payload: bytes, order: str) -> bytes:
    """A sub-element: packed into its tag when it fits in 4 bytes, else padded to 8."""
    if len(payload) <= 4:
        # Small data element: one 32-bit word, byte count in the upper half, type below.
        return struct.pack(order + "I", (len(payload) << 16) | mtype) + payload.ljust(4, b"\0")
    padded = payload.ljust(-(-len(payload) // 8) * 8, b"\0")
    return struct.pack(order + "II", mtype, len(payload)) + padded


def mat_variable(name: str, array: np.ndarray, *, order: str = "<", mclass: Optional[int] = None,
                 flags: int = 0, stored: Optional[np.dtype] = None,
                 shape: Optional[tuple] = None) -> bytes:
    """One miMATRIX element (the tag included) in MATLAB's level-5 layout.

    ``mclass`` overrides the MATLAB class, ``stored`` the type the data is written in
    (MATLAB stores, say, a double array of small integers as bytes), ``shape`` the
    dimensions declared.
    """
    array = np.asarray(array)
    shape = array.shape if shape is None else shape
    stored = np.dtype(stored or array.dtype)
    mclass = _MX[array.dtype] if mclass is None else mclass
    body = (_element(6, struct.pack(order + "II", mclass | flags, 0), order)
            + _element(5, struct.pack(f"{order}{len(shape)}i", *shape), order)
            + _element(1, name.encode(), order)
            + _element(_MI[stored], array.astype(stored.newbyteorder(order)).tobytes(order="F"),
                       order))
    return struct.pack(order + "II", 14, len(body)) + body


def mat_file(variables: bytes, *, order: str = "<") -> bytes:
    text = b"MATLAB 5.0 MAT-file, written by condnn's tests".ljust(116, b" ")
    version_and_mark = struct.pack(order + "H", 0x0100) + (b"IM" if order == "<" else b"MI")
    return text + b"\0" * 8 + version_and_mark + variables


def compressed(element: bytes, order: str = "<") -> bytes:
    data = zlib.compress(element)
    return struct.pack(order + "II", 15, len(data)) + data


def svhn_arrays(n: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    labels = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    labels[0, 0] = 10  # make sure the digit 0 appears
    return images, labels


def write_svhn(path: Path, images: np.ndarray, labels: np.ndarray, *, compress: bool = True,
               order: str = "<", **label_options: object) -> Path:
    elements = [mat_variable("X", images, order=order),
                mat_variable("y", labels, order=order, **label_options),
                mat_variable("note", np.frombuffer(b"hi", np.uint8).astype(np.uint16),
                             order=order, mclass=4)]  # a char array: to be skipped
    if compress:
        elements = [compressed(e, order) for e in elements]
    path.write_bytes(mat_file(b"".join(elements), order=order))
    return path


def make_svhn_dir(root: Path, *, n_train: int = 5, n_test: int = 3, **options: object) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"train": svhn_arrays(n_train, 1), "test": svhn_arrays(n_test, 2)}
    for split, (images, labels) in arrays.items():
        write_svhn(root / f"{split}_32x32.mat", images, labels, **options)
    return arrays


def check_svhn_split(x: np.ndarray, y: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    n = images.shape[3]
    digits = labels[:, 0].astype(np.int64) % 10
    assert y.dtype == np.int64 and y.tolist() == digits.tolist() and 0 in y.tolist()
    assert x.shape == (n, 3072) and x.dtype == np.float32
    # Channel-major: feature c*1024 + r*32 + col is pixel (r, col) of channel c.
    for i, r, col, c in [(0, 0, 0, 0), (n - 1, 31, 0, 2), (1, 5, 17, 1), (n - 1, 2, 31, 0)]:
        assert x[i, c * 1024 + r * 32 + col] * 255 == images[r, col, c, i]
    np.testing.assert_array_equal(x.reshape(n, 3, 32, 32) * 255, images.transpose(3, 2, 0, 1))


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("order", ["<", ">"])
def test_svhn_round_trip(tmp_path: Path, compress: bool, order: str) -> None:
    arrays = make_svhn_dir(tmp_path, compress=compress, order=order)
    ds = load_svhn(tmp_path)
    assert ds.name == "svhn" and ds.image_shape == (3, 32, 32) and ds.classes == 10
    check_svhn_split(ds.x_train, ds.y_train, *arrays["train"])
    check_svhn_split(ds.x_test, ds.y_test, *arrays["test"])


def test_svhn_labels_stored_narrower_than_their_class(tmp_path: Path) -> None:
    images, labels = svhn_arrays(4, 3)
    write_svhn(tmp_path / "train_32x32.mat", images, labels.astype(np.float64),
               stored=np.dtype("u1"))
    write_svhn(tmp_path / "test_32x32.mat", images, labels.astype(np.float64),
               stored=np.dtype("u1"))
    assert read_mat_arrays(tmp_path / "test_32x32.mat", ["y"])["y"].dtype == np.float64
    ds = load_svhn(tmp_path)
    check_svhn_split(ds.x_test, ds.y_test, images, labels)


def test_svhn_extra_is_appended_to_training(tmp_path: Path) -> None:
    arrays = make_svhn_dir(tmp_path)
    extra_images, extra_labels = svhn_arrays(2, 7)
    write_svhn(tmp_path / "extra_32x32.mat", extra_images, extra_labels)
    assert len(load_svhn(tmp_path).x_train) == 5
    ds = load_svhn(tmp_path, extra=True)
    assert len(ds.x_train) == 7
    check_svhn_split(ds.x_train[:5], ds.y_train[:5], *arrays["train"])
    check_svhn_split(ds.x_train[5:], ds.y_train[5:], extra_images, extra_labels)


def test_mat_reader_skips_variables_of_other_kinds(tmp_path: Path) -> None:
    images, labels = svhn_arrays(2, 4)
    # A MATLAB object (opaque class): flags, then its name, then data this reader never parses.
    opaque_body = (_element(6, struct.pack("<II", 17, 0), "<") + _element(1, b"obj", "<")
                   + _element(1, b"MCOS", "<") + _element(2, b"\x07" * 40, "<"))
    opaque = struct.pack("<II", 14, len(opaque_body)) + opaque_body
    cell = mat_variable("cel", np.zeros((1, 1)), mclass=1)
    path = tmp_path / "m.mat"
    path.write_bytes(mat_file(opaque + compressed(cell) + mat_variable("X", images)
                              + compressed(mat_variable("y", labels))))
    got = read_mat_arrays(path, ["X", "y"])
    np.testing.assert_array_equal(got["X"], images)
    np.testing.assert_array_equal(got["y"], labels)
    with pytest.raises(DataError, match="variable 'obj' is a MATLAB opaque array"):
        read_mat_arrays(path, ["obj"])


def test_mat_reader_agrees_with_scipy(tmp_path: Path) -> None:
    sio = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(5)
    variables = {"X": rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8),
                 "y": np.array([[10], [1], [5], [9]], np.uint8),
                 "w": rng.standard_normal((3, 2)), "k": np.int16(-3), "s": "text"}
    for compression in (False, True):
        path = tmp_path / f"s{compression}.mat"
        sio.savemat(path, variables, do_compression=compression)
        got = read_mat_arrays(path, ["X", "y", "w", "k"])
        for name in ("X", "y", "w", "k"):
            np.testing.assert_array_equal(got[name], np.atleast_2d(variables[name]))


def test_svhn_missing_files_are_all_named(tmp_path: Path) -> None:
    make_svhn_dir(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"missing SVHN file\(s\): test_32x32\.mat$"):
        load_svhn(tmp_path)
    with pytest.raises(DataError, match=r"test_32x32\.mat, extra_32x32\.mat$"):
        load_svhn(tmp_path, extra=True)
    with pytest.raises(DataError, match="no such directory"):
        load_svhn(tmp_path / "absent")


def _svhn_error(tmp_path: Path, content: bytes) -> str:
    make_svhn_dir(tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(content)
    with pytest.raises(DataError) as e:
        load_svhn(tmp_path)
    assert str(tmp_path / "train_32x32.mat") in str(e.value)
    return str(e.value)


def test_svhn_not_a_mat_file(tmp_path: Path) -> None:
    message = _svhn_error(tmp_path, b"\x01\x02" * 100)
    assert "not a MATLAB level-5 .mat file" in message
    assert "not a MATLAB level-5" in _svhn_error(tmp_path, b"short")


def test_svhn_v73_file_is_named_as_such(tmp_path: Path) -> None:
    header = b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x0200) + b"IM"
    content = header.ljust(512, b"\0") + b"\x89HDF\r\n\x1a\n" + b"\0" * 100
    assert "MATLAB v7.3 (HDF5) file" in _svhn_error(tmp_path, content)


def test_svhn_truncated_file(tmp_path: Path) -> None:
    whole = (tmp_path / "t.mat")
    images, labels = svhn_arrays(3, 0)
    content = write_svhn(whole, images, labels, compress=False).read_bytes()
    assert "truncated" in _svhn_error(tmp_path, content[:len(content) // 2])


def test_svhn_truncated_compressed_variable(tmp_path: Path) -> None:
    images, labels = svhn_arrays(3, 0)
    cut = mat_variable("X", images)[:-1000]  # its tag still declares the full length
    bad = mat_file(compressed(cut) + compressed(mat_variable("y", labels)))
    assert "truncated compressed variable" in _svhn_error(tmp_path, bad)


def test_svhn_truncated_sub_element(tmp_path: Path) -> None:
    images, labels = svhn_arrays(3, 0)
    element = mat_variable("X", images)
    body = element[8:-1000]  # the variable's length is consistent, its data element's is not
    bad = mat_file(struct.pack("<II", 14, len(body)) + body + mat_variable("y", labels))
    assert "truncated variable: its data of 'X' needs 9216 bytes" in _svhn_error(tmp_path, bad)


def test_svhn_data_shorter_than_its_dimensions(tmp_path: Path) -> None:
    images, labels = svhn_arrays(3, 0)
    bad = mat_file(mat_variable("X", images, shape=(32, 32, 3, 4)) + mat_variable("y", labels))
    assert "variable 'X' of shape (32, 32, 3, 4) needs 12288 values, its data holds 9216" in \
        _svhn_error(tmp_path, bad)


def test_svhn_corrupt_compression(tmp_path: Path) -> None:
    images, labels = svhn_arrays(3, 0)
    packed = bytearray(compressed(mat_variable("X", images)))
    packed[20:40] = b"\xff" * 20
    message = _svhn_error(tmp_path, mat_file(bytes(packed)))
    assert "corrupt compressed variable" in message


def test_svhn_missing_variable(tmp_path: Path) -> None:
    images, _ = svhn_arrays(3, 0)
    message = _svhn_error(tmp_path, mat_file(compressed(mat_variable("X", images))
                                             + compressed(mat_variable("z", np.ones((3, 1))))))
    assert "no variable(s) 'y'; the file holds 'X', 'z'" in message


def test_svhn_variable_of_the_wrong_kind(tmp_path: Path) -> None:
    images, labels = svhn_arrays(3, 0)
    as_cell = mat_file(mat_variable("X", images, mclass=1) + mat_variable("y", labels))
    assert "variable 'X' is a MATLAB cell array, expected a numeric one" in \
        _svhn_error(tmp_path, as_cell)
    as_complex = mat_file(mat_variable("X", images) + mat_variable("y", labels, flags=0x0800))
    assert "variable 'y' is complex" in _svhn_error(tmp_path, as_complex)


def test_svhn_images_of_the_wrong_shape(tmp_path: Path) -> None:
    images, labels = svhn_arrays(3, 0)
    bad = mat_file(mat_variable("X", images[:28, :28, :1]) + mat_variable("y", labels))
    assert "'X' must be uint8 of shape (32, 32, 3, N), got uint8 of shape (28, 28, 1, 3)" in \
        _svhn_error(tmp_path, bad)
    bad = mat_file(mat_variable("X", images.astype(np.float64)) + mat_variable("y", labels))
    assert "got float64" in _svhn_error(tmp_path, bad)


def test_svhn_label_count_mismatch(tmp_path: Path) -> None:
    images, labels = svhn_arrays(3, 0)
    bad = mat_file(mat_variable("X", images) + mat_variable("y", labels[:2]))
    assert "'y' must hold one label per image (3), got shape (2, 1)" in _svhn_error(tmp_path, bad)


@pytest.mark.parametrize("value", [0, 11])
def test_svhn_label_out_of_range(tmp_path: Path, value: int) -> None:
    images, labels = svhn_arrays(3, 0)
    labels[2, 0] = value
    bad = mat_file(mat_variable("X", images) + mat_variable("y", labels))
    assert f"1 label(s) outside 1..10, the first at index 2 is {value}" in \
        _svhn_error(tmp_path, bad)


def test_svhn_fractional_label(tmp_path: Path) -> None:
    images, _ = svhn_arrays(3, 0)
    bad = mat_file(mat_variable("X", images) + mat_variable("y", np.array([[1.0], [2.5], [3.0]])))
    assert "labels must be whole numbers" in _svhn_error(tmp_path, bad)


# --- load(spec) --------------------------------------------------------------------------

def test_load_dispatches_on_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = object()
    monkeypatch.setattr(datasets, "load_mnist", lambda: sentinel)
    assert load("mnist") is sentinel and load(" MNIST") is sentinel
    make_idx_dir(tmp_path / "with:colon")
    assert load(f"idx:{tmp_path / 'with:colon'}").x_train.shape == (6, 15)
    assert load(f"IDX:{tmp_path / 'with:colon'}").name == "with:colon"
    write_cifar_dir(tmp_path / "c")
    assert load(f"cifar10:{tmp_path / 'c'}").name == "cifar10"
    make_svhn_dir(tmp_path / "s")
    assert load(f"svhn:{tmp_path / 's'}").name == "svhn"


@pytest.mark.parametrize("spec", ["", "mnist:", "mnist:/tmp", "idx:", "cifar100:/x", "svhn"])
def test_load_rejects_malformed_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="spec must be 'mnist', 'idx:DIR'"):
        load(spec)


def test_load_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="spec must be a str"):
        load(Path("mnist"))  # type: ignore[arg-type]


def test_load_reports_errors_of_the_loader(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        load(f"idx:{tmp_path / 'absent'}")


# --- DataSet -----------------------------------------------------------------------------

def _arrays(n: int = 4, d: int = 784) -> tuple:
    return np.zeros((n, d), np.float32), np.zeros(n, np.int64)


def test_dataset_validates_its_arrays() -> None:
    x, y = _arrays()
    ds = DataSet(x, y, x, y, name="t")
    assert "train=(4, 784)" in repr(ds) and ds.classes == 10
    with pytest.raises(ValueError, match=r"x_train must be a float32 array of shape \(N, 784\), "
                                         r"got float64"):
        DataSet(x.astype(np.float64), y, x, y)
    with pytest.raises(ValueError, match=r"x_test must be a float32 array of shape \(N, 3072\)"):
        DataSet(np.zeros((4, 3072), np.float32), y, x, y, image_shape=(3, 32, 32))
    with pytest.raises(ValueError, match=r"y_test must be an int64 array of shape \(4,\)"):
        DataSet(x, y, x, y.astype(np.int32))
    with pytest.raises(ValueError, match=r"y_train must hold labels in 0\.\.9, got values from "
                                         r"0 to 10"):
        DataSet(x, np.array([0, 1, 2, 10]), x, y)
    with pytest.raises(ValueError, match="classes must be a positive int"):
        DataSet(x, y, x, y, classes=0)


# --- train_val_split ---------------------------------------------------------------------

def test_split_partitions_the_examples() -> None:
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25)
    x_tr, y_tr, x_val, y_val = train_val_split(x, y, 7, seed=3)
    assert len(x_tr) == 18 and len(x_val) == 7
    assert sorted(np.concatenate([y_tr, y_val]).tolist()) == list(range(25))
    np.testing.assert_array_equal(x_tr[:, 0], 2 * y_tr)  # rows stay with their labels
    np.testing.assert_array_equal(x_val[:, 0], 2 * y_val)
    assert y_val.tolist() != list(range(7)) and y_val.tolist() != list(range(18, 25))


def test_split_is_reproducible_by_seed() -> None:
    x, y = np.arange(100.0), np.arange(100)
    first = train_val_split(x, y, 10, seed=11)
    again = train_val_split(x, y, 10, seed=11)
    other = train_val_split(x, y, 10, seed=12)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert first[3].tolist() != other[3].tolist()


def test_split_with_no_validation() -> None:
    x_tr, y_tr, x_val, y_val = train_val_split(np.arange(5.0), np.arange(5), 0, seed=0)
    assert sorted(y_tr.tolist()) == [0, 1, 2, 3, 4] and x_val.shape == (0,) and y_val.size == 0


@pytest.mark.parametrize("n_val, error, message", [
    (5, ValueError, r"n_val must be in 0\.\.4 for 5 examples, got 5"),
    (-1, ValueError, r"n_val must be in 0\.\.4"),
    (2.0, TypeError, "n_val must be an int, got float"),
    (True, TypeError, "n_val must be an int, got bool"),
])
def test_split_validates_n_val(n_val: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        train_val_split(np.arange(5.0), np.arange(5), n_val, seed=0)  # type: ignore[arg-type]


def test_split_validates_its_arrays_and_seed() -> None:
    with pytest.raises(ValueError, match="same number of examples, got 5 and 4"):
        train_val_split(np.arange(5.0), np.arange(4), 1, seed=0)
    with pytest.raises(TypeError, match="x must be a numpy array"):
        train_val_split([1, 2, 3], np.arange(3), 1, seed=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int, got NoneType"):
        train_val_split(np.arange(5.0), np.arange(5), 1, seed=None)  # type: ignore[arg-type]


# --- minibatches -------------------------------------------------------------------------

def test_minibatches_in_order_with_a_partial_last_batch() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    batches = list(minibatches(x, y, 4))
    assert [len(yb) for _, yb in batches] == [4, 4, 2]
    assert np.concatenate([yb for _, yb in batches]).tolist() == list(range(10))
    np.testing.assert_array_equal(batches[2][0], x[8:])
    assert np.shares_memory(batches[0][0], x)  # in order: views, no copy


def test_minibatches_shuffled_cover_each_example_once_per_epoch() -> None:
    x = np.arange(23, dtype=np.float32)[:, None] * 10
    y = np.arange(23)
    rng = np.random.default_rng(4)
    epochs = []
    for _ in range(3):
        batches = list(minibatches(x, y, 5, rng))
        assert [len(yb) for _, yb in batches] == [5, 5, 5, 5, 3]
        for xb, yb in batches:
            np.testing.assert_array_equal(xb[:, 0], yb * 10)
        seen = np.concatenate([yb for _, yb in batches]).tolist()
        assert sorted(seen) == list(range(23))
        epochs.append(seen)
    assert epochs[0] != list(range(23)) and epochs[0] != epochs[1]


def test_minibatches_are_reproducible_by_seed() -> None:
    x, y = np.arange(30.0), np.arange(30)

    def order(seed: int) -> list:
        rng = np.random.default_rng(seed)
        return [yb.tolist() for _ in range(2) for _, yb in minibatches(x, y, 7, rng)]

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_minibatches_edge_sizes() -> None:
    x, y = np.arange(3.0), np.arange(3)
    assert [yb.tolist() for _, yb in minibatches(x, y, 10)] == [[0, 1, 2]]
    assert list(minibatches(x[:0], y[:0], 4)) == []


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, "batch_size must be at least 1, got 0"),
    ({"batch_size": 2.5}, TypeError, "batch_size must be an int, got float"),
    ({"batch_size": 2, "rng": 7}, TypeError, "rng must be a numpy.random.Generator"),
    ({"batch_size": 2, "rng": np.random.RandomState(0)}, TypeError, "got RandomState"),
])
def test_minibatches_validate_at_the_call(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        minibatches(np.arange(4.0), np.arange(4), **kwargs)  # no next(): checked eagerly


def test_minibatches_reject_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="same number of examples, got 4 and 3"):
        minibatches(np.arange(4.0), np.arange(3), 2)
