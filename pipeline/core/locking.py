"""Exclusive locks on outputs, so two runs on one output cannot interleave their writes.

A lock is a file holding its owner's pid and host, locked with ``flock``. The kernel drops a
``flock`` when its process dies, so a lock file that is present but not locked was left by a
process that crashed: it is taken over, and the takeover is reported. A lock file is removed on
release. Workers are never forked while a lock is held (they would inherit it).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from pathlib import Path

from pipeline.core.files import UserError, ensure_dir

log = logging.getLogger(__name__)


NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems


def lock_path_for(target: Path) -> Path:
    """The lock file of a file or directory: a hidden sibling, ``.<name>.lock``, of the real
    path, so that every alias (a symbolic link to it, or to a folder above it) takes one lock.
    A name too long for that (a 250-character --out) is locked as ``.<its start>-<hash>.lock``."""
    real = Path(target).resolve()
    if not real.name:
        raise UserError(f"{target} is the root directory; choose another --out")
    name = f".{real.name}.lock"
    if len(name.encode()) > NAME_MAX:
        digest = hashlib.sha256(real.name.encode()).hexdigest()[:16]
        start = real.name.encode()[:100].decode(errors="ignore")
        name = f".{start}-{digest}.lock"
    return real.with_name(name)


def _owner_of(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8"))
        return f"{info.get('command', 'qa')} (pid {info['pid']} on {info['host']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


class FileLock:
    """``with FileLock(path, what):`` holds an exclusive lock on ``path`` for the block.

    Parameters
    ----------
    path : the lock file (created if missing)
    what : how the error and the log name the locked thing, e.g. "run dir output/runs/x"
    wait : False: fail at once with a one-line error naming the owner; True: wait for it
    command : written into the lock file so that others can say who holds it
    """

    def __init__(self, path: Path, what: str, wait: bool = False, command: str = "qa") -> None:
        self.path, self.what, self.wait, self.command = Path(path), what, wait, command
        self.fd: int | None = None

    def acquire(self) -> None:
        said_waiting = False
        while True:
            ensure_dir(self.path.parent)  # one-line errors for a parent that is a file, etc.
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise UserError(f"cannot create the lock file {self.path}: {e.strerror}; "
                                "choose another --out") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner_of(fd) or "another process"
                os.close(fd)
                if not self.wait:
                    raise UserError(f"{self.what} is in use by {owner}; wait for it to finish "
                                    "or stop it, then rerun") from None
                if not said_waiting:
                    log.info("waiting for %s, in use by %s", self.what, owner)
                    said_waiting = True
                time.sleep(0.05)
                continue
            # the holder may have released (and unlinked) the file between our open and our
            # flock: then we hold a lock on a file nobody else will see; start over
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            stale = _owner_of(fd)
            if stale:
                log.warning("took over a stale lock on %s left by %s, which is no longer running",
                            self.what, stale)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
            except OSError as e:
                # a full disk: the flock holds all the same (the owner line only informs), and
                # the holder can then remove what a run killed by that full disk left behind
                log.debug("could not write the owner of %s: %s", self.path, e)
            self.fd = fd
            return

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
