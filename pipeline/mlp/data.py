"""MNIST in its original IDX format: read (gzipped or raw), verify, download.

Verification: when the directory holds a ``SHA256SUMS`` file (as ``../shared/data/mnist``
does) every listed file must match it; downloaded files must match the MD5 sums published
with the original files. Every file is also checked structurally (magic number, dimensions,
item count), so a truncated or foreign file gets a clear error instead of a reshape failure.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np

from pipeline.core.files import UserError, atomic_write_bytes

log = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
COUNTS = {"train": 60000, "test": 10000}
# MD5 of the originally published .gz files (as torchvision checks them)
ORIGINAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def _find(data_dir: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (data_dir / name).exists():
            return data_dir / name
    return None


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksums(data_dir: Path) -> None:
    """Check every file SHA256SUMS lists (``<64 hex digits>  <name>`` per line).

    Without the file the data is used unverified (and said so); a malformed file is refused
    rather than silently ignored, since it would leave the data unverified without a word.
    """
    sums = data_dir / "SHA256SUMS"
    if not sums.exists():
        log.info("%s has no SHA256SUMS: the MNIST files are used unverified", data_dir)
        return
    fix = "fix it, or delete it to use the files unverified"
    try:
        text = sums.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{sums} is not text (binary or corrupt); {fix}") from None
    except OSError as e:
        raise UserError(f"cannot read {sums}: {e.strerror}; {fix}") from None
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise UserError(f"{sums} line {no} is not '<sha256>  <file name>'; {fix}")
        digest, name = parts
        f = data_dir / name.lstrip("*")
        if f.exists() and _digest(f, "sha256") != digest.lower():
            raise UserError(f"{f} does not match its checksum in {sums}; the file is corrupt: "
                            "replace it with a fresh copy")


MAX_ITEMS = 10_000_000  # far above MNIST's 60,000: a header claiming more is not MNIST


def read_idx(path: Path, expect_dims: int, expect_count: int | None = None) -> np.ndarray:
    """Read one IDX file (gz or raw) of unsigned bytes, checking its header and size.

    The header is read first; then exactly the bytes it announces plus one, so neither a
    truncated file, nor one with extra data, nor a gzip bomb is read whole.
    """
    head_len = 4 + 4 * expect_dims
    try:
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
            head = f.read(head_len)
            if len(head) < head_len:
                raise UserError(f"{path} is too short to be an IDX file; replace it")
            zero, dtype_code, ndim = head[0] << 8 | head[1], head[2], head[3]
            if zero != 0 or dtype_code != 0x08 or ndim != expect_dims:
                raise UserError(f"{path} has a bad IDX header (expected {expect_dims}-D "
                                "unsigned bytes); is it the right file?")
            dims = struct.unpack(">" + "I" * ndim, head[4:])
            if expect_count is not None and dims[0] != expect_count:
                raise UserError(f"{path} holds {dims[0]} items, expected {expect_count}")
            if dims[0] > MAX_ITEMS or math.prod(dims[1:]) > 1 << 20:
                raise UserError(f"{path} claims shape {dims}, far larger than MNIST; replace it")
            need = math.prod(dims)
            body = f.read(need + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise UserError(f"{path} is not a readable MNIST file ({e}); replace it") from e
    if len(body) < need:
        raise UserError(f"{path} is truncated: {len(body):,} bytes of data for shape {dims}; "
                        "replace it")
    if len(body) > need:
        raise UserError(f"{path} has data after the {need:,} bytes its header announces; "
                        "is it the right file?")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_mnist(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train (60000, 784) float32 in [0, 1], y_train, X_test, y_test)."""
    data_dir = Path(data_dir)
    missing = [stem for stem in FILES.values() if _find(data_dir, stem) is None]
    if missing:
        raise UserError(
            f"MNIST not found in {data_dir} (missing {missing[0]}[.gz]); put the four IDX files "
            "there, pass --data-dir, or pass --download to fetch them"
        )
    verify_checksums(data_dir)
    out = []
    for split in ("train", "test"):
        imgs = read_idx(_find(data_dir, FILES[f"{split}_images"]), 3)
        labels = read_idx(_find(data_dir, FILES[f"{split}_labels"]), 1)
        if len(imgs) != len(labels) or imgs.shape[1:] != (28, 28):
            raise UserError(f"MNIST {split} files disagree: {len(imgs)} images of shape "
                            f"{imgs.shape[1:]} and {len(labels)} labels")
        if len(imgs) != COUNTS[split]:
            log.info("MNIST %s: %d images (a subset of the usual %d)", split, len(imgs),
                     COUNTS[split])
        if labels.max() > 9:
            raise UserError(f"{split} labels outside 0-9: the label file is corrupt")
        out += [imgs.reshape(len(imgs), -1).astype(np.float32) / 255.0, labels.astype(np.int64)]
    return tuple(out)  # type: ignore[return-value]


def download_mnist(data_dir: Path, retries: int = 3, show_progress: bool = True) -> None:
    """Fetch the four gz files into ``data_dir``, checking each against its published MD5."""
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    data_dir = Path(data_dir)
    for stem in FILES.values():
        name = stem + ".gz"
        target = data_dir / name
        if target.exists() and _digest(target, "md5") == ORIGINAL_MD5[name]:
            continue
        last = None
        for attempt in range(retries):
            for mirror in MIRRORS:
                try:
                    with urllib.request.urlopen(mirror + name, timeout=30) as r:
                        total = int(r.headers.get("Content-Length") or 0)
                        buf = bytearray()
                        with tqdm(total=total, unit="B", unit_scale=True, desc=name,
                                  disable=not show_progress) as bar:
                            for chunk in iter(lambda r=r: r.read(1 << 16), b""):
                                buf += chunk
                                bar.update(len(chunk))
                    if hashlib.md5(buf).hexdigest() != ORIGINAL_MD5[name]:
                        last = f"checksum mismatch from {mirror}"
                        continue
                    atomic_write_bytes(target, bytes(buf))
                    break
                except (urllib.error.URLError, OSError, TimeoutError) as e:
                    last = f"{type(e).__name__}: {e}"
            else:
                time.sleep(2**attempt)
                continue
            break
        else:
            raise UserError(f"could not download {name} ({last}); without internet, copy the "
                            f"four MNIST IDX files into {data_dir}")
