"""Downloading a data file safely: mirrors tried in turn, SHA-256 verified, atomic rename.

``download(mirrors, dest, sha256)`` streams each mirror in turn into a temporary file in
the destination's own directory, hashing as it goes, and renames that file onto ``dest``
only once its SHA-256 digest matches.  A download that fails, is interrupted (Ctrl-C
included) or yields the wrong bytes therefore never leaves a partial or wrong file at
``dest``; at most it leaves nothing.  Only the standard library is used (``urllib``).

``KNOWN_FILES`` lists the official locations of MNIST and CIFAR-10 with their published
SHA-256 digests, and ``fetch(name, dest_dir)`` downloads one of those sets.  SVHN is not
listed: no SHA-256 digest of its ``.mat`` files is recorded here, and a digest is never
guessed.  Add an entry once you have verified one::

    KNOWN_FILES["svhn"] = (RemoteFile("train_32x32.mat", (url,), "<sha256>"), ...)

Nothing in condnn downloads on its own: the default data set (MNIST) ships with the package.
"""
from __future__ import annotations

import hashlib
import http.client
import math
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["download", "fetch", "sha256_of", "DownloadError", "RemoteFile", "KNOWN_FILES"]

_CHUNK_BYTES = 1 << 20
_SCHEMES = ("http", "https", "file")
# Some servers refuse urllib's default User-Agent header; a named one is also more polite.
_USER_AGENT = "condnn-download/1"

PathLike = Union[str, "os.PathLike[str]"]


class DownloadError(OSError):
    """No mirror delivered the file with the expected SHA-256 digest.

    ``failures`` holds one ``(url, reason)`` pair per mirror tried, in order.
    """

    def __init__(self, dest: Path, failures: List[Tuple[str, str]]) -> None:
        self.dest = dest
        self.failures = failures
        lines = "\n".join(f"  {url}: {reason}" for url, reason in failures)
        super().__init__(f"could not download {dest.name} to {dest.parent} "
                         f"({len(failures)} mirror(s) tried; nothing was written at {dest}):\n"
                         f"{lines}")


class _MirrorFailed(Exception):
    """One mirror's failure; its message is the reason listed in DownloadError."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: its name at the destination, its mirrors, its SHA-256 digest."""

    name: str
    mirrors: Tuple[str, ...]
    sha256: str


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "https://storage.googleapis.com/cvdf-datasets/mnist/")


def _mnist(name: str, sha256: str) -> RemoteFile:
    return RemoteFile(name, tuple(m + name for m in _MNIST_MIRRORS), sha256)


# The digests are those of the original gzip files as published by their authors' sites
# and recorded by the major frameworks; the copy bundled with condnn was recompressed and
# has other digests (see condnn/data/mnist/SHA256SUMS).
KNOWN_FILES: Dict[str, Tuple[RemoteFile, ...]] = {
    "mnist": (
        _mnist("train-images-idx3-ubyte.gz",
               "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        _mnist("train-labels-idx1-ubyte.gz",
               "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        _mnist("t10k-images-idx3-ubyte.gz",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        _mnist("t10k-labels-idx1-ubyte.gz",
               "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
    "cifar10": (
        RemoteFile("cifar-10-python.tar.gz",
                   ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                   "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    ),
}


def sha256_of(path: PathLike) -> str:
    """The SHA-256 digest of a file's bytes, as 64 lower-case hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(sha256: object) -> str:
    if not isinstance(sha256, str):
        raise TypeError(f"sha256 must be a str of 64 hex digits, got {type(sha256).__name__}")
    s = sha256.strip().lower()
    if len(s) != 64 or any(ch not in "0123456789abcdef" for ch in s):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return s


def _check_mirrors(url_or_mirrors: object) -> Tuple[str, ...]:
    if isinstance(url_or_mirrors, str):
        mirrors: Tuple[object, ...] = (url_or_mirrors,)
    elif isinstance(url_or_mirrors, Sequence) and not isinstance(url_or_mirrors, bytes):
        mirrors = tuple(url_or_mirrors)
    else:  # bytes are a Sequence too, but of ints, not of URLs
        raise TypeError("url_or_mirrors must be a URL string or a sequence of them, "
                        f"got {type(url_or_mirrors).__name__}")
    if not mirrors:
        raise ValueError("url_or_mirrors must name at least one URL, got an empty sequence")
    for url in mirrors:
        if not isinstance(url, str):
            raise TypeError(f"url_or_mirrors must hold strings, got {type(url).__name__}: {url!r}")
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(f"url_or_mirrors: {url!r} has scheme {scheme!r}; "
                             f"expected one of {', '.join(_SCHEMES)}")
    return mirrors  # type: ignore[return-value]


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive finite number of seconds, got {timeout}")
    return float(timeout)


def _stream(url: str, out: BinaryIO, timeout: float) -> str:
    """Copies ``url`` into ``out``; returns the SHA-256 of the bytes received.

    Raises _MirrorFailed for anything that goes wrong on the way.
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.sha256()
    received = 0
    length: Optional[str] = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            while True:
                chunk = response.read(_CHUNK_BYTES)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as e:
        raise _MirrorFailed(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise _MirrorFailed(f"cannot connect: {e.reason}") from e
    except http.client.IncompleteRead as e:
        raise _MirrorFailed(f"connection closed after {received + len(e.partial)} bytes of "
                            f"the {length} announced") from e
    except (http.client.HTTPException, OSError) as e:  # timeouts and resets are OSErrors
        raise _MirrorFailed(f"transfer failed after {received} bytes: "
                            f"{type(e).__name__}: {e}") from e
    # http.client's read(n) returns b"" rather than raising when the connection closes
    # early, so a short body is caught here.
    if length is not None and length.isdigit() and received != int(length):
        raise _MirrorFailed(f"connection closed after {received} bytes of the {length} announced")
    return digest.hexdigest()


def download(url_or_mirrors: Union[str, Sequence[str]], dest_path: PathLike, sha256: str,
             *, timeout: float = 30.0) -> Path:
    """Downloads a file to ``dest_path``, trying each mirror until one gives the right bytes.

    Args:
        url_or_mirrors: one URL or a sequence of URLs of the same file (http, https or
            file), tried in order.
        dest_path: where the file goes.  Its directory is created if need be.  If a file
            with the expected digest is already there, nothing is downloaded.
        sha256: the expected SHA-256 digest, 64 hex digits.
        timeout: seconds to wait on each network step (connecting, each read), not a
            limit on the whole transfer.

    Returns:
        ``dest_path`` as a Path.

    Raises:
        DownloadError: every mirror failed; the message lists each mirror's reason
            (HTTP status, connection error, short body, checksum mismatch).  Nothing is
            written at ``dest_path``: a file already there (with another digest) is left
            as it was, and no temporary file remains.
        TypeError, ValueError: an argument is malformed (checked before any network use).
    """
    mirrors = _check_mirrors(url_or_mirrors)
    expected = _check_sha256(sha256)
    timeout = _check_timeout(timeout)
    dest = Path(os.fspath(dest_path)).expanduser()
    if dest.is_dir():
        raise ValueError(f"dest_path must be a file path, {dest} is a directory")
    if dest.is_file() and sha256_of(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)

    failures: List[Tuple[str, str]] = []
    for url in mirrors:
        # The temporary file lives beside dest so that the final rename stays on one file
        # system, where os.replace is atomic; its leading dot keeps it out of listings.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        renamed = False
        try:
            with os.fdopen(fd, "wb") as out:
                got = _stream(url, out, timeout)
                if got != expected:
                    raise _MirrorFailed(f"SHA-256 mismatch: got {got}, expected {expected}")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared data file private
            os.replace(tmp, dest)
            renamed = True
            return dest
        except _MirrorFailed as e:
            failures.append((url, str(e)))
        finally:
            # On any failure, KeyboardInterrupt included, this keeps partial files from
            # piling up. After the rename the name is free and may be another's by now.
            if not renamed:
                tmp.unlink(missing_ok=True)
    raise DownloadError(dest, failures)


def fetch(name: str, dest_dir: PathLike, *, timeout: float = 30.0) -> List[Path]:
    """Downloads every file of the set ``KNOWN_FILES[name]`` into ``dest_dir``.

    Files already present with the right digest are not downloaded again.  The result
    is ready for the loaders: ``load_idx_dir(dest_dir)`` for ``"mnist"``,
    ``load_cifar10(dest_dir)`` for ``"cifar10"`` (which reads the .tar.gz directly).

    Returns:
        The paths of the files, in the order of ``KNOWN_FILES[name]``.
    """
    if name not in KNOWN_FILES:
        raise ValueError(f"name must be one of {', '.join(sorted(KNOWN_FILES))}, got {name!r}")
    dest = Path(os.fspath(dest_dir)).expanduser()
    return [download(f.mirrors, dest / f.name, f.sha256, timeout=timeout)
            for f in KNOWN_FILES[name]]
